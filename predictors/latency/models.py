"""Latency models over encoded archs of any family (milliseconds), all vectorised.

Every model here reduces, once at construction, to a dense grid ``blocks[r, slot, choice]`` of per-layer
latencies over the family's slots (:class:`~supernets.measurable.MeasurableLayers`; for OFA-MobileNetV3
``choice = kernel_index * n_expands + expand_index``) plus ``fixed[r]`` (layers every subnet runs) and an
affine correction ``a * sum + b * n_blocks + c``. ``predict`` maps the encoded matrix to slot choices
(``-1`` = unused) and does one gather and a masked sum, so 10,000 archs take a few milliseconds.

* :class:`TableLatencyModel` — the plain table sum (``a=1, b=0, c=0``).
* calibrated table — the same grid with ``(a, b, c)`` fitted on whole subnets measured end to end
  (:func:`fit_calibration`).
* layer-cost / few-shot models — the grid filled by :class:`~predictors.latency.layer_cost.LayerCostModel`
  (see that module), built with :meth:`DenseLatencyModel.from_cost`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from predictors.base import ArchModel
from predictors.latency.table import LatencyTable, MissingLatencyKeyError
from supernets.measurable import Layer, MeasurableLayers

__all__ = ["DenseLatencyModel", "TableLatencyModel", "fit_calibration"]


class DenseLatencyModel(ArchModel):
    """Sum of per-block latencies from a dense grid, with an optional affine calibration.

    Args:
        geometry: the family's measurable layers over a space (its resolutions index the grid's first axis).
        blocks: ``(n_resolutions, n_slots, n_choices)`` ms; NaN rows mark resolutions the model does not cover.
        fixed: ``(n_resolutions,)`` ms of the fixed layers.
        calibration: ``(a, b, c)`` for ``a * sum + b * n_blocks + c``.
        name: what the model is (reported in errors and benchmarks).
    """

    target = "latency_ms"

    def __init__(self, geometry: MeasurableLayers, blocks: np.ndarray, fixed: np.ndarray, *,
                 calibration: Sequence[float] = (1.0, 0.0, 0.0), name: str = "table", supernet: str | None = None,
                 device: str | None = None) -> None:
        super().__init__(geometry.space, supernet=supernet)
        sp = geometry.space
        expected = (len(sp.resolutions), geometry.n_slots, geometry.n_choices)
        if blocks.shape != expected or fixed.shape != (expected[0],):
            raise ValueError(f"dense latency grid has shape {blocks.shape}/{fixed.shape}, expected {expected}/"
                             f"({expected[0]},) for space {sp.name!r}")
        self.geometry = geometry
        self.blocks = np.ascontiguousarray(blocks, dtype=np.float64)
        self.fixed = np.asarray(fixed, dtype=np.float64)
        self.calibration = tuple(float(v) for v in calibration)
        self.name = name
        self.device = device
        # Flattened (slot, choice) offsets so the gather is a single take() on a 2-D view.
        self._slot_off = (np.arange(geometry.n_slots) * expected[2])[None, :]
        self._elastic = np.asarray(geometry.slot_elastic, dtype=bool)[None, :]
        # one zero entry after the grid: unused slots gather it, so the sum needs no mask
        self._flat = np.concatenate([self.blocks.reshape(expected[0], -1), np.zeros((expected[0], 1))], axis=1)
        self._unused = expected[1] * expected[2]
        self.covered = ~np.isnan(self.fixed) & ~np.isnan(self.blocks).reshape(expected[0], -1).any(axis=1)

    @classmethod
    def from_cost(cls, geometry: MeasurableLayers, cost: Callable[[int, Layer], float],
                  resolutions: Sequence[int] | None = None, **kwargs: Any) -> DenseLatencyModel:
        """Fill the grid with ``cost(resolution, layer)`` for ``resolutions`` (default: all of the space)."""
        sp = geometry.space
        res = list(sp.resolutions) if resolutions is None else list(resolutions)
        sub_blocks, sub_fixed = geometry.dense_grid(res, cost)
        blocks = np.full((len(sp.resolutions), geometry.n_slots, geometry.n_choices), np.nan)
        fixed = np.full(len(sp.resolutions), np.nan)
        for i, r in enumerate(res):
            j = sp.resolutions.index(r)
            blocks[j], fixed[j] = sub_blocks[i], sub_fixed[i]
        return cls(geometry, blocks, fixed, **kwargs)

    def block_sums(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated per-arch sum (ms) and number of active elastic blocks."""
        r = encoded[:, 0]
        choice = self.geometry.slot_choices(encoded)
        used = choice >= 0
        at = np.where(used, self._slot_off + choice, self._unused) + (r * self._flat.shape[1])[:, None]
        total = np.take(self._flat, at).sum(axis=1) + self.fixed[r]  # take: on the flattened grid
        if np.isnan(total).any():
            bad = int(r[np.isnan(total)][0])
            covered = [res for res, c in zip(self.space.resolutions, self.covered) if c]
            raise MissingLatencyKeyError(
                f"latency model {self.name!r} (device {self.device!r}, supernet {self.supernet!r}) has no "
                f"entries at resolution {self.space.resolutions[bad]}; it covers {covered}. Build a table for "
                f"that resolution or use a layer-cost model"
            )
        return total, (used & self._elastic).sum(axis=1)

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        total, n_blocks = self.block_sums(encoded)
        a, b, c = self.calibration
        return a * total + b * n_blocks + c

    def with_calibration(self, calibration: Sequence[float], name: str) -> DenseLatencyModel:
        return DenseLatencyModel(self.geometry, self.blocks, self.fixed, calibration=calibration, name=name,
                                 supernet=self.supernet, device=self.device)

    def fill_missing(self, other: DenseLatencyModel) -> DenseLatencyModel:
        """A model using this grid where it is covered and ``other``'s grid (affine-corrected) elsewhere."""
        a, b, c = other.calibration
        miss = ~self.covered
        blocks, fixed = self.blocks.copy(), self.fixed.copy()
        blocks[miss] = a * other.blocks[miss] + b * self._elastic[..., None]  # b is per elastic block
        fixed[miss] = a * other.fixed[miss] + c
        return DenseLatencyModel(self.geometry, blocks, fixed, calibration=self.calibration,
                                 name=f"{self.name}+{other.name}", supernet=self.supernet, device=self.device)


class TableLatencyModel(DenseLatencyModel):
    """Plain table sum: every layer of the subnet looked up in a :class:`LatencyTable`.

    The grid is filled once at construction; a layer missing at a covered resolution raises
    :class:`MissingLatencyKeyError` naming the block and the table.
    """

    def __init__(self, geometry: MeasurableLayers, table: LatencyTable, *, resolutions: Sequence[int] | None = None,
                 calibration: Sequence[float] = (1.0, 0.0, 0.0), name: str = "table", supernet: str | None = None,
                 device: str | None = None) -> None:
        res = [r for r in geometry.space.resolutions if r in set(table.resolutions)] if resolutions is None \
            else list(resolutions)
        if not res:
            raise MissingLatencyKeyError(
                f"latency table {table.name} covers resolutions {table.resolutions}, none of which is in the "
                f"space's {list(geometry.space.resolutions)}"
            )
        proto = DenseLatencyModel.from_cost(geometry, table_cost(table), res)
        self.table = table
        super().__init__(geometry, proto.blocks, proto.fixed, calibration=calibration, name=name, supernet=supernet,
                         device=device)


def table_cost(table: LatencyTable) -> Callable[[int, Layer], float]:
    return lambda r, spec: table.lookup(r, spec.key)


def fit_relative(A: np.ndarray, measured: np.ndarray, *, robust: bool = True,
                 scale_floor: Sequence[float] | float = 1e-3) -> np.ndarray:
    """Coefficients ``p`` of ``measured ≈ A @ p`` fitted on relative errors (latencies span an order of magnitude).

    With ``robust`` the relative residuals go through a soft-L1 loss (scipy ``least_squares``, scale 5 %), started
    from the weighted least-squares solution: on a shared host a few end-to-end timings are inflated several-fold by
    other processes, and plain least squares would bend the whole fit towards them. ``scale_floor``: the smallest
    parameter scale per coefficient (``x_scale`` is ``max(|p0|, floor)``).
    """
    from scipy.optimize import least_squares

    A, measured = np.asarray(A, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    w = 1.0 / measured
    coef, *_ = np.linalg.lstsq(A * w[:, None], measured * w, rcond=None)
    if robust:
        scale = np.maximum(np.abs(coef), np.broadcast_to(np.asarray(scale_floor, dtype=np.float64), coef.shape))
        coef = least_squares(lambda p: (A @ p - measured) * w, coef, loss="soft_l1", f_scale=0.05, x_scale=scale).x
    return coef


def fit_calibration(sums: np.ndarray, n_blocks: np.ndarray, measured: np.ndarray,
                    *, robust: bool = True) -> tuple[float, float, float]:
    """Fit ``measured ≈ a * sum + b * n_blocks + c`` on relative errors (:func:`fit_relative`; robust by default)."""
    sums, n_blocks, measured = (np.asarray(v, dtype=np.float64) for v in (sums, n_blocks, measured))
    if len(measured) < 3:
        raise ValueError(f"calibration needs at least 3 measured subnets, got {len(measured)}")
    A = np.stack([sums, n_blocks, np.ones_like(sums)], axis=1)
    coef = fit_relative(A, measured, robust=robust, scale_floor=(1e-3, 1e-4, 1e-3))
    return float(coef[0]), float(coef[1]), float(coef[2])
