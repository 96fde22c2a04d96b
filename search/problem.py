"""The search as a vectorised pymoo :class:`~pymoo.core.problem.Problem`.

One ``_evaluate`` call gets a whole population as an integer matrix; the evaluator normalises it and
queries each model once for the archs it has never seen. Observers (the archive, the progress bar) are
told the store ids of every evaluated batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pymoo.core.problem import Problem

from search.evaluator import ArchEvaluator
from search.objectives import DeviceObjectives

__all__ = ["ArchProblem"]


class ArchProblem(Problem):
    """Minimise ``obj.F`` subject to ``obj.G <= 0`` over integer genomes of ``ev.space``."""

    def __init__(self, ev: ArchEvaluator, obj: DeviceObjectives,
                 observers: list[Callable[[np.ndarray], None]] | None = None) -> None:
        space = ev.space
        super().__init__(n_var=space.n_columns, n_obj=obj.n_obj, n_ieq_constr=obj.n_constr,
                         xl=np.zeros(space.n_columns), xu=(space.n_choices - 1).astype(float), vtype=int)
        self.ev = ev
        self.obj = obj
        self.observers = list(observers or [])

    def evaluate_ids(self, X: np.ndarray) -> np.ndarray:
        ids = self.ev.evaluate(np.asarray(X, dtype=np.int64))
        if self.obj.needs_macs_params:
            self.ev.ensure_macs_params(ids, None)
        for fn in self.observers:
            fn(ids)
        return ids

    def _evaluate(self, X, out, *args, **kwargs):
        ids = self.evaluate_ids(np.rint(X).astype(np.int64))
        out["F"] = self.obj.F(self.ev, ids)
        if self.obj.n_constr:
            out["G"] = self.obj.G(self.ev, ids)
