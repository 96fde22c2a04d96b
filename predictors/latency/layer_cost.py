"""Layer-cost latency model: per-layer latency as a non-negative combination of shape-derived costs.

Fitted on one device's per-layer table (every row a layer signature with its measured latency), it
predicts layers the table does not hold — other widths (w1.0 from a w1.2 table), other resolutions
(140..260 from a 160..224 table) — so a device's table extends to any network of the same family.
Features: each family's layers report them (:data:`supernets.measurable.FEATURE_NAMES`: MACs by operator
(dense conv, 1x1, depthwise 3/5/7, fully connected), activation elements read/written, SE work, h-swish
elements and a per-layer constant). The fit is non-negative least squares on *relative* errors (scipy ``nnls``), so
small and large layers count alike and every cost term stays physical (no negative prices).

Few-shot transfer (:func:`fit_few_shot`) keeps a source device's coefficients and re-fits only a scale
for its compute terms and one for its memory/overhead terms on a few whole networks of the target device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import nnls

from predictors.latency.models import DenseLatencyModel
from predictors.latency.table import LatencyTable
from supernets.measurable import FEATURE_NAMES, Layer, MeasurableLayers
from supernets.space import Arch

__all__ = ["COMPUTE_FEATURES", "LayerCostModel", "fit_few_shot", "loo_errors"]

#: Terms scaled together by few-shot transfer as "compute"; the rest are "memory/overhead".
COMPUTE_FEATURES = ("macs_conv", "macs_pw", "macs_dw3", "macs_dw5", "macs_dw7", "macs_fc")


@dataclass
class LayerCostModel:
    """``latency(layer) = sum_j coef[j] * feature_j(layer)`` (ms), optionally with group scales.

    Attributes:
        coef: one non-negative coefficient per name in ``FEATURE_NAMES``.
        scales: multipliers ``(compute, other)`` applied on top (1, 1 for the source device).
        offset: ms added once per network (few-shot intercept; 0 for a fitted table).
    """

    coef: dict[str, float]
    scales: tuple[float, float] = (1.0, 1.0)
    offset: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, table: LatencyTable, geometry: MeasurableLayers) -> LayerCostModel:
        """Fit on every row of ``table`` whose key the family can produce at the row's resolution."""
        specs = geometry.distinct_layers(table.resolutions)
        rows = [(spec, table.entries[k]) for k, spec in specs.items() if k in table.entries]
        if len(rows) < len(FEATURE_NAMES):
            raise ValueError(f"layer-cost fit needs at least {len(FEATURE_NAMES)} table rows matching the geometry, "
                             f"found {len(rows)} in {table.name}")
        F = np.array([[s.features().get(n, 0.0) for n in FEATURE_NAMES] for s, _ in rows])
        y = np.array([v for _, v in rows])
        w = 1.0 / y
        coef, _ = nnls(F * w[:, None], y * w)
        pred = F @ coef
        rel = np.abs(pred - y) / y
        info = {"fitted_on": table.name, "n_layers": len(rows), "layer_mape": float(rel.mean()),
                "layer_max_rel_err": float(rel.max())}
        return cls(coef=dict(zip(FEATURE_NAMES, (float(c) for c in coef))), info=info)

    def parts(self, spec: Layer) -> tuple[float, float]:
        """(compute, other) ms of one layer before scaling."""
        f = spec.features()
        comp = sum(self.coef[n] * f.get(n, 0.0) for n in COMPUTE_FEATURES)
        other = sum(self.coef[n] * f.get(n, 0.0) for n in FEATURE_NAMES if n not in COMPUTE_FEATURES)
        return comp, other

    def layer_ms(self, spec: Layer) -> float:
        comp, other = self.parts(spec)
        return self.scales[0] * comp + self.scales[1] * other

    def network_parts(self, geometry: MeasurableLayers, arch: Arch) -> tuple[float, float]:
        comp = other = 0.0
        for spec in geometry.layers(arch):
            c, o = self.parts(spec)
            comp += c
            other += o
        return comp, other

    def network_ms(self, geometry: MeasurableLayers, arch: Arch) -> float:
        comp, other = self.network_parts(geometry, arch)
        return self.scales[0] * comp + self.scales[1] * other + self.offset

    def dense(self, geometry: MeasurableLayers, *, name: str = "layer_cost", supernet: str | None = None,
              device: str | None = None) -> DenseLatencyModel:
        """The vectorised model over every resolution of ``geometry.space``."""
        return DenseLatencyModel.from_cost(geometry, lambda r, spec: self.layer_ms(spec),
                                           calibration=(1.0, 0.0, self.offset), name=name, supernet=supernet,
                                           device=device)

    def with_scales(self, scales: Sequence[float], offset: float = 0.0, **info: Any) -> LayerCostModel:
        return LayerCostModel(coef=dict(self.coef), scales=(float(scales[0]), float(scales[1])), offset=float(offset),
                              info={**self.info, **info})

    def to_dict(self) -> dict[str, Any]:
        return {"coef": dict(self.coef), "scales": list(self.scales), "offset": self.offset}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerCostModel:
        try:
            coef = {n: float(d["coef"][n]) for n in FEATURE_NAMES}
            scales = tuple(float(v) for v in d.get("scales", (1.0, 1.0)))
            offset = float(d.get("offset", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"layer-cost coefficients need 'coef' with keys {list(FEATURE_NAMES)} (+ optional "
                             f"'scales', 'offset'); got {d!r} ({exc})") from None
        if len(scales) != 2:
            raise ValueError(f"layer-cost 'scales' needs two numbers (compute, other), got {scales}")
        return cls(coef=coef, scales=scales, offset=offset)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MeasuredNet:
    """A whole network measured on a device: its family's layers (``geometry``), arch and latency."""

    name: str
    geometry: MeasurableLayers
    arch: Arch
    latency_ms: float

    @property
    def r(self) -> int:
        return int(self.arch.r)


def _design(source: LayerCostModel, nets: Iterable[MeasuredNet]) -> tuple[np.ndarray, np.ndarray]:
    nets = list(nets)
    P = np.array([source.network_parts(n.geometry, n.arch) for n in nets])
    y = np.array([n.latency_ms for n in nets])
    return P, y


def _fit_parts(P: np.ndarray, y: np.ndarray, method: str) -> tuple[tuple[float, float], float]:
    """Fit scales (and offset) on part matrix ``P`` (n, 2) by relative least squares, non-negative."""
    w = 1.0 / y
    if method == "scale":  # one common multiplier: the source's mix of compute and memory costs
        s = float(np.sum(P.sum(1) * y * w**2) / np.sum((P.sum(1) * w) ** 2))
        return (s, s), 0.0
    if method == "two_scales":
        coef, _ = nnls(P * w[:, None], y * w)
        return (float(coef[0]), float(coef[1])), 0.0
    raise ValueError(f"unknown few-shot method {method!r}; expected 'scale' or 'two_scales'")


def fit_few_shot(source: LayerCostModel, nets: Sequence[MeasuredNet], method: str = "two_scales") -> LayerCostModel:
    """Re-fit ``source``'s group scales on a target device's measured whole networks."""
    P, y = _design(source, nets)
    scales, offset = _fit_parts(P, y, method)
    return source.with_scales(scales, offset, few_shot_method=method, few_shot_n=len(nets))


def loo_errors(source: LayerCostModel, nets: Sequence[MeasuredNet], method: str = "two_scales") -> np.ndarray:
    """Leave-one-out relative errors ``(pred - true) / true`` of :func:`fit_few_shot`."""
    P, y = _design(source, nets)
    out = np.zeros(len(nets))
    for i in range(len(nets)):
        keep = np.arange(len(nets)) != i
        scales, offset = _fit_parts(P[keep], y[keep], method)
        pred = scales[0] * P[i, 0] + scales[1] * P[i, 1] + offset
        out[i] = (pred - y[i]) / y[i]
    return out
