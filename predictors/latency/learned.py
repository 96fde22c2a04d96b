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
    """Per-stage sums of block cost terms + fixed-layer terms, from an encoded matrix.

    With ``per_slot`` it also gives, for every block slot, one-hot indicators of the block's kernel and
    expand ratio (zero when the slot is unused) and a one-hot of the resolution: per-block terms a model
    can weigh slot by slot (a GPU's kernel choice differs per shape), still additive over blocks, so a
    linear model on them folds into the same dense per-block grid.
    """

    def __init__(self, geometry: MBv3Geometry, *, per_slot: bool = False) -> None:
        self.geometry = geometry
        self.per_slot = per_slot
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
        self.n_slots, self.n_k, self.n_e, self.n_r = sp.n_slots, len(sp.kernel_sizes), len(sp.expand_ratios), \
            len(sp.resolutions)

    @property
    def names(self) -> list[str]:
        sp = self.geometry.space
        out = [f"s{s}.{n}" for s in range(self.n_stages) for n in FEATURE_NAMES] + [f"fixed.{n}" for n in FEATURE_NAMES]
        if self.per_slot:
            out += [f"slot{i}.k{k:g}" for i in range(self.n_slots) for k in sp.kernel_sizes]
            out += [f"slot{i}.e{e:g}" for i in range(self.n_slots) for e in sp.expand_ratios]
            out += [f"r{r:g}" for r in sp.resolutions]
        return out

    @property
    def n_base(self) -> int:
        """Number of per-stage + fixed features (the per-slot one-hots follow them)."""
        return (self.n_stages + 1) * self.n_features_block

    def __call__(self, encoded: np.ndarray) -> np.ndarray:
        x = encoded
        r = x[:, 0]
        k, e = x[:, self._ks], x[:, self._es]
        used = k >= 0
        slots = np.arange(k.shape[1])[None, :]
        vals = self.grid[r[:, None], slots, np.where(used, k, 0), np.where(used, e, 0)]  # (n, slots, nf)
        vals = vals * used[:, :, None]
        per_stage = vals.reshape(len(x), self.n_stages, self.max_depth, -1).sum(axis=2).reshape(len(x), -1)
        parts = [per_stage, self.fixed[r]]
        if self.per_slot:
            # -1 (unused slot) matches no choice, so an unused slot's one-hots are all zero.
            parts += [(k[:, :, None] == np.arange(self.n_k)).reshape(len(x), -1),
                      (e[:, :, None] == np.arange(self.n_e)).reshape(len(x), -1),
                      r[:, None] == np.arange(self.n_r)]
        return np.concatenate(parts, axis=1, dtype=np.float64)


class LearnedLatencyModel(ArchModel):
    """``latency = w · standardise(features) + b`` over :class:`BlockFeaturizer` features (ms)."""

    target = "latency_ms"

    def __init__(self, geometry: MBv3Geometry, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray,
                 intercept: float, *, per_slot: bool = False, name: str = "learned", supernet: str | None = None,
                 device: str | None = None, alpha: float | None = None) -> None:
        super().__init__(geometry.space, supernet=supernet)
        self.featurizer = BlockFeaturizer(geometry, per_slot=per_slot)
        self.alpha = alpha
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
        fixed = fz.fixed @ w[fz.n_stages * nf: fz.n_base] + self.intercept - float(self.mean @ w)
        if per_slot:
            o = fz.n_base
            w_k = w[o: o + fz.n_slots * fz.n_k].reshape(fz.n_slots, fz.n_k)
            o += fz.n_slots * fz.n_k
            w_e = w[o: o + fz.n_slots * fz.n_e].reshape(fz.n_slots, fz.n_e)
            o += fz.n_slots * fz.n_e
            blocks = blocks + w_k[None, :, :, None] + w_e[None, :, None, :]
            fixed = fixed + w[o: o + fz.n_r]
        self.dense = DenseLatencyModel(geometry, blocks, fixed, name=name, supernet=supernet, device=device)

    @classmethod
    def fit(cls, geometry: MBv3Geometry, encoded: np.ndarray, latency_ms: np.ndarray, *, alpha: float = 1e-3,
            alphas: np.ndarray | None = None, per_slot: bool = False, **kwargs: Any) -> LearnedLatencyModel:
        """Ridge on standardised features, weighted by 1/latency² (relative squared error).

        Args:
            alpha: the ridge penalty, unless ``alphas`` is given.
            alphas: candidate penalties; the one with the lowest leave-one-out error on the given rows is
                used (``sklearn.linear_model.RidgeCV``), so no held-out data is consulted.
            per_slot: add :class:`BlockFeaturizer`'s per-slot kernel/expand and resolution one-hots.
        """
        from sklearn.linear_model import Ridge, RidgeCV

        F = BlockFeaturizer(geometry, per_slot=per_slot)(geometry.space.normalize(encoded))
        mean, scale = F.mean(axis=0), F.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        y = np.asarray(latency_ms, dtype=float)
        ridge = Ridge(alpha=alpha) if alphas is None else RidgeCV(alphas=np.asarray(alphas, dtype=float))
        ridge.fit((F - mean) / scale, y, sample_weight=1.0 / y**2)
        chosen = float(alpha if alphas is None else ridge.alpha_)
        return cls(geometry, mean, scale, ridge.coef_, float(ridge.intercept_), per_slot=per_slot, alpha=chosen,
                   **kwargs)

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
        variants = {ps: BlockFeaturizer(geometry, per_slot=ps).names for ps in (False, True)}
        per_slot = next((ps for ps, names in variants.items() if feats == names), None)
        if per_slot is None:
            names = variants[False]
            raise LatencyTableError(f"{path} was trained on features {feats[:3]}... that differ from this geometry's "
                                    f"{names[:3]}...; retrain it for supernet {meta.get('supernet')!r}")
        return cls(geometry, mean, scale, w, b, per_slot=per_slot, name="learned", supernet=meta.get("supernet"),
                   device=device)
