"""Learned latency predictor over per-block features, for devices known only by whole-network timings.

Features of an arch (vectorised through dense grids, no per-arch Python): for each elastic stage, the
sums over its active blocks of the layer-cost terms (MACs by operator, activation traffic, SE, h-swish,
block count), plus the fixed layers' terms at the arch's resolution. A latency is additive over layers,
so a linear model on these sums is the natural learner; it is fitted by ridge regression
(``sklearn.linear_model.Ridge``) on standardised features and relative errors, and shipped as a few
hundred numbers in ``model.yaml`` beside ``meta.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from predictors.base import ArchModel
from predictors.latency.geometry import FEATURE_NAMES, MBv3Geometry
from predictors.latency.models import DenseLatencyModel
from predictors.latency.table import LatencyTableError, atomic_write_text, load_meta

__all__ = ["BlockFeaturizer", "LearnedLatencyModel"]


class BlockFeaturizer:
    """Per-stage sums of block cost terms + fixed-layer terms, from an encoded matrix."""

    def __init__(self, geometry: MBv3Geometry) -> None:
        self.geometry = geometry
        sp = geometry.space
        nf = len(FEATURE_NAMES)
        self.n_features_block = nf
        grid = np.zeros((len(sp.resolutions), sp.n_slots, len(sp.kernel_sizes), len(sp.expand_ratios), nf))
        fixed = np.zeros((len(sp.resolutions), nf))
        for i, r in enumerate(sp.resolutions):
            for spec in geometry.fixed_layers(r):
                f = spec.features()
                fixed[i] += [f[n] for n in FEATURE_NAMES]
            for slot, ki, ei, spec in geometry.block_grid(r):
                f = spec.features()
                grid[i, slot, ki, ei] = [f[n] for n in FEATURE_NAMES]
        self.grid = grid
        self.fixed = fixed
        self._ks, self._es = sp.group_slices["ks"], sp.group_slices["e"]
        self.n_stages, self.max_depth = sp.n_stages, sp.max_depth

    @property
    def names(self) -> list[str]:
        return [f"s{s}.{n}" for s in range(self.n_stages) for n in FEATURE_NAMES] + [f"fixed.{n}" for n in FEATURE_NAMES]

    def __call__(self, encoded: np.ndarray) -> np.ndarray:
        x = encoded
        r = x[:, 0]
        k, e = x[:, self._ks], x[:, self._es]
        used = k >= 0
        slots = np.arange(k.shape[1])[None, :]
        vals = self.grid[r[:, None], slots, np.where(used, k, 0), np.where(used, e, 0)]  # (n, slots, nf)
        vals = vals * used[:, :, None]
        per_stage = vals.reshape(len(x), self.n_stages, self.max_depth, -1).sum(axis=2).reshape(len(x), -1)
        return np.concatenate([per_stage, self.fixed[r]], axis=1)


class LearnedLatencyModel(ArchModel):
    """``latency = w · standardise(features) + b`` over :class:`BlockFeaturizer` features (ms)."""

    target = "latency_ms"

    def __init__(self, geometry: MBv3Geometry, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray,
                 intercept: float, *, name: str = "learned", supernet: str | None = None,
                 device: str | None = None) -> None:
        super().__init__(geometry.space, supernet=supernet)
        self.featurizer = BlockFeaturizer(geometry)
        n = len(self.featurizer.names)
        for label, v in (("mean", mean), ("scale", scale), ("weights", weights)):
            if np.shape(v) != (n,):
                raise LatencyTableError(f"learned latency model: {label} has shape {np.shape(v)}, expected ({n},) "
                                        f"for this geometry; was it trained for another supernet?")
        self.mean, self.scale = np.asarray(mean, float), np.asarray(scale, float)
        self.weights, self.intercept = np.asarray(weights, float), float(intercept)
        self.name, self.device = name, device
        # The model is linear in per-block sums, so it folds into a dense per-block grid once: predict is
        # then the same single gather as a table (no feature matrix on the hot path).
        fz = self.featurizer
        w = self.weights / self.scale
        nf = fz.n_features_block
        w_stage = w[: fz.n_stages * nf].reshape(fz.n_stages, nf)
        slot_stage = np.arange(geometry.space.n_slots) // fz.max_depth
        blocks = np.einsum("rskef,sf->rske", fz.grid, w_stage[slot_stage])
        fixed = fz.fixed @ w[fz.n_stages * nf:] + self.intercept - float(self.mean @ w)
        self.dense = DenseLatencyModel(geometry, blocks, fixed, name=name, supernet=supernet, device=device)

    @classmethod
    def fit(cls, geometry: MBv3Geometry, encoded: np.ndarray, latency_ms: np.ndarray, *, alpha: float = 1e-3,
            **kwargs: Any) -> LearnedLatencyModel:
        """Ridge on standardised features, weighted by 1/latency² (relative squared error)."""
        from sklearn.linear_model import Ridge

        F = BlockFeaturizer(geometry)(encoded)
        mean, scale = F.mean(axis=0), F.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        y = np.asarray(latency_ms, dtype=float)
        ridge = Ridge(alpha=alpha).fit((F - mean) / scale, y, sample_weight=1.0 / y**2)
        return cls(geometry, mean, scale, ridge.coef_, float(ridge.intercept_), **kwargs)

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        return self.dense._predict(encoded)

    def predict_from_features(self, encoded: np.ndarray) -> np.ndarray:
        """Reference path through the explicit feature matrix (tests check it equals ``predict``)."""
        F = self.featurizer(self.space.normalize(encoded))
        return ((F - self.mean) / self.scale) @ self.weights + self.intercept

    # ------------------------------------------------------------------------------------- io
    def save(self, folder: Path | str, meta: dict[str, Any]) -> None:
        folder = Path(folder)
        doc = {"features": self.featurizer.names, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
               "weights": self.weights.tolist(), "intercept": self.intercept}
        atomic_write_text(folder / "model.yaml", yaml.safe_dump(doc, sort_keys=False))
        atomic_write_text(folder / "meta.yaml", yaml.safe_dump({**meta, "model": "learned"}, sort_keys=False))

    @classmethod
    def load(cls, folder: Path | str, geometry: MBv3Geometry, *, device: str | None = None) -> LearnedLatencyModel:
        folder = Path(folder)
        meta = load_meta(folder)
        path = folder / "model.yaml"
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            feats = list(doc["features"])
            mean, scale, w = (np.asarray(doc[k], dtype=float) for k in ("mean", "scale", "weights"))
            b = float(doc["intercept"])
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise LatencyTableError(f"learned latency model {path} is missing or malformed (needs features, mean, "
                                    f"scale, weights, intercept): {exc}") from None
        names = BlockFeaturizer(geometry).names
        if feats != names:
            raise LatencyTableError(f"{path} was trained on features {feats[:3]}... that differ from this geometry's "
                                    f"{names[:3]}...; retrain it for supernet {meta.get('supernet')!r}")
        return cls(geometry, mean, scale, w, b, name="learned", supernet=meta.get("supernet"), device=device)
