"""Pareto fronts: non-dominated filtering, an archive of every non-dominated arch, hypervolume.

NSGA-II's final population drops non-dominated points it once held, so the reported front is read
from :class:`ParetoArchive`, which keeps every feasible non-dominated arch ever evaluated.
Non-dominated sorting and hypervolume are pymoo's (moocore underneath).
"""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import find_non_dominated

from search.evaluator import ArchEvaluator
from search.objectives import DeviceObjectives

__all__ = ["ParetoArchive", "hypervolume", "non_dominated", "reference_point"]


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``F`` (minimised) no other row dominates (ties are all kept)."""
    F = np.asarray(F, dtype=np.float64)
    if len(F) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(find_non_dominated(F), dtype=np.int64)


def hypervolume(F: np.ndarray, ref_point: np.ndarray) -> float:
    """Hypervolume of ``F`` (minimised) against ``ref_point`` (points beyond it count zero)."""
    F = np.asarray(F, dtype=np.float64)
    if len(F) == 0:
        return 0.0
    return float(HV(ref_point=np.asarray(ref_point, dtype=np.float64))(F))


def extreme_archs(space) -> np.ndarray:
    """The smallest and the largest arch at every resolution, encoded (smallest first): what the reference point
    and the runner's feasibility probe evaluate."""
    r_col = space.group_slices["r"].start
    rows = []
    for base in (np.zeros(space.n_columns, dtype=np.int64), space.n_choices - 1):
        x = np.repeat(base[None, :], space.n_choices[r_col], axis=0)
        x[:, r_col] = np.arange(space.n_choices[r_col])
        rows.append(x)
    return np.concatenate(rows)


def reference_point(ev: ArchEvaluator, obj: DeviceObjectives, margin: float = 0.05) -> np.ndarray:
    """A fixed hypervolume reference point for one device: the worst value of each objective over the
    smallest and largest arch at every resolution, widened by ``margin`` (so runs of different
    algorithms are compared on the same scale)."""
    ids = ev.evaluate(extreme_archs(ev.space))
    if obj.needs_macs_params:
        ev.ensure_macs_params(ids, None)
    F = obj.F(ev, ids)
    worst = F.max(axis=0)
    best = F.min(axis=0)
    return worst + margin * np.maximum(worst - best, 1e-12)


class ParetoArchive:
    """Every feasible non-dominated arch (store id) seen by one device's search."""

    def __init__(self, ev: ArchEvaluator, obj: DeviceObjectives) -> None:
        self.ev = ev
        self.obj = obj
        self.ids = np.zeros(0, dtype=np.int64)
        self._set: set[int] = set()
        #: the evaluated arch with the smallest violation while nothing is feasible
        self.closest: int | None = None
        self._closest_cv = np.inf

    def update(self, ids: np.ndarray) -> None:
        # new ids only, order kept (a set beats np.unique/union1d at ~100 ids per generation)
        ids = np.fromiter((i for i in dict.fromkeys(np.asarray(ids, dtype=np.int64).tolist()) if i not in self._set),
                          dtype=np.int64)
        if len(ids) == 0:
            return
        cv = self.obj.violation(self.ev, ids)
        k = int(np.argmin(cv))
        if cv[k] < self._closest_cv:
            self._closest_cv, self.closest = float(cv[k]), int(ids[k])
        feasible = ids[cv <= 0]
        if len(feasible) == 0:
            return
        cand = np.concatenate([self.ids, feasible])
        self.ids = cand[non_dominated(self.obj.F(self.ev, cand))]
        self._set = set(self.ids.tolist())

    @property
    def closest_violation(self) -> float:
        return self._closest_cv

    def F(self) -> np.ndarray:
        return self.obj.F(self.ev, self.ids)

    def sorted_ids(self) -> np.ndarray:
        """Archive ids sorted by the second objective (latency, usually), then the first."""
        if len(self.ids) == 0:
            return self.ids
        F = self.F()
        key = F[:, 1] if F.shape[1] > 1 else F[:, 0]
        return self.ids[np.lexsort((F[:, 0], key))]
