"""Learned latency predictor over per-block features, for devices known only by whole-network timings.

Features of an arch (vectorised through dense grids, no per-arch Python): for each elastic stage, the
sums over its active blocks of the layer-cost terms (MACs by operator, activation traffic, SE, h-swish,
block count), plus the fixed layers' terms at the arch's resolution. A latency is additive over layers,
so a linear model on these sums is the natural learner; it is fitted by ridge regression
(``sklearn.linear_model.Ridge``) on standardised features and relative errors, and shipped as a few
hundred numbers in ``model.yaml`` beside ``meta.yaml``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from predictors.base import ArchModel
from predictors.latency.models import DenseLatencyModel
from predictors.latency.table import LatencyTableError, atomic_write_text, load_meta
from supernets.measurable import FEATURE_NAMES, MeasurableLayers, feature_vector

__all__ = ["BlockFeaturizer", "LearnedLatencyModel"]


class BlockFeaturizer:
    """Per-stage sums of layer cost terms + fixed-layer terms, from an encoded matrix.

    Stages are the family's slot groups (:attr:`~supernets.measurable.MeasurableLayers.slot_group`). With
    ``per_slot`` it also gives, for every slot, one-hot indicators of the slot's choice tags (for
    OFA-MobileNetV3 the block's kernel and expand ratio; zero when the slot is unused) and a one-hot of the
    resolution: per-block terms a model can weigh slot by slot (a GPU's kernel choice differs per shape),
    still additive over slots, so a linear model on them folds into the same dense per-slot grid.
    """

    def __init__(self, geometry: MeasurableLayers, *, per_slot: bool = False) -> None:
        self.geometry = geometry
        self.per_slot = per_slot
        sp = geometry.space
        nf = len(FEATURE_NAMES)
        self.n_features_block = nf
        self.n_slots, self.n_c, self.n_r = geometry.n_slots, geometry.n_choices, len(sp.resolutions)
        self.grid, self.fixed = _feature_grid(geometry)
        self.slot_group = np.asarray(geometry.slot_group)
        if np.any(np.diff(self.slot_group) < 0):
            raise ValueError(f"slot groups must be contiguous and increasing, got {geometry.slot_group}")
        self.n_stages = int(self.slot_group.max()) + 1
        self._starts = np.searchsorted(self.slot_group, np.arange(self.n_stages))
        self.tags = geometry.choice_tags

    @property
    def names(self) -> list[str]:
        sp = self.geometry.space
        out = [f"s{s}.{n}" for s in range(self.n_stages) for n in FEATURE_NAMES] + [f"fixed.{n}" for n in FEATURE_NAMES]
        if self.per_slot:
            for labels, _ in self.tags:
                out += [f"slot{i}.{label}" for i in range(self.n_slots) for label in labels]
            out += [f"r{r:g}" for r in sp.resolutions]
        return out

    @property
    def n_base(self) -> int:
        """Number of per-stage + fixed features (the per-slot one-hots follow them)."""
        return (self.n_stages + 1) * self.n_features_block

    def __call__(self, encoded: np.ndarray) -> np.ndarray:
        x = encoded
        r = x[:, 0]
        choice = self.geometry.slot_choices(x)
        used = choice >= 0
        c = np.where(used, choice, 0)
        slots = np.arange(self.n_slots)[None, :]
        vals = self.grid[r[:, None], slots, c] * used[:, :, None]  # (n, slots, nf)
        per_stage = np.add.reduceat(vals, self._starts, axis=1).reshape(len(x), -1)
        parts = [per_stage, self.fixed[r]]
        if self.per_slot:
            # An unused slot matches no label, so its one-hots are all zero.
            for labels, label_of in self.tags:
                lab = np.where(used, np.asarray(label_of)[c], -1)
                parts.append((lab[:, :, None] == np.arange(len(labels))).reshape(len(x), -1))
            parts.append(r[:, None] == np.arange(self.n_r))
        return np.concatenate(parts, axis=1, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _feature_grid(geometry: MeasurableLayers) -> tuple[np.ndarray, np.ndarray]:
    """Cost features of every (resolution, slot, choice) and the fixed layers' sums (cached: a dozen learned
    devices share one geometry). Read-only arrays."""
    sp = geometry.space
    grid = np.zeros((len(sp.resolutions), geometry.n_slots, geometry.n_choices, len(FEATURE_NAMES)))
    fixed = np.zeros((len(sp.resolutions), len(FEATURE_NAMES)))
    for i, r in enumerate(sp.resolutions):
        for spec in geometry.fixed_layers(r):
            fixed[i] += feature_vector(spec)
        for slot, choices in enumerate(geometry.slot_layers(r)):
            for c, spec in enumerate(choices):
                if spec is not None:
                    grid[i, slot, c] = feature_vector(spec)
    grid.flags.writeable = fixed.flags.writeable = False
    return grid, fixed


class LearnedLatencyModel(ArchModel):
    """``latency = w · standardise(features) + b`` over :class:`BlockFeaturizer` features (ms)."""

    target = "latency_ms"

    def __init__(self, geometry: MeasurableLayers, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray,
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
        blocks = np.einsum("rscf,sf->rsc", fz.grid, w_stage[fz.slot_group])
        fixed = fz.fixed @ w[fz.n_stages * nf: fz.n_base] + self.intercept - float(self.mean @ w)
        if per_slot:
            o = fz.n_base
            for labels, label_of in fz.tags:
                w_t = w[o: o + fz.n_slots * len(labels)].reshape(fz.n_slots, len(labels))
                o += fz.n_slots * len(labels)
                blocks = blocks + w_t[None, :, np.asarray(label_of)]
            fixed = fixed + w[o: o + fz.n_r]
        self.dense = DenseLatencyModel(geometry, blocks, fixed, name=name, supernet=supernet, device=device)

    @classmethod
    def fit(cls, geometry: MeasurableLayers, encoded: np.ndarray, latency_ms: np.ndarray, *, alpha: float = 1e-3,
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
    def load(cls, folder: Path | str, geometry: MeasurableLayers, *, device: str | None = None) -> LearnedLatencyModel:
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
