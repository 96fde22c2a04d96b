"""LINAS: lightweight iterative NAS with real evaluations in the loop (DyNAS-T, Cummings et al., "A Hardware-Aware
System for Accelerating Deep Neural Network Optimization", 2022).

The search's accuracy model is the *measured* top-1 of a trained supernet (:class:`search.measured.MeasuredAccuracy`);
every arch the loop hands to ``ctx.evaluate`` is one real evaluation. The loop:

1. measure ``n_init`` archs spread from small to large (:func:`search.operators.sample_ladder`);
2. fit a light predictor (any ``configs/predictor`` recipe) on every arch measured so far;
3. run the multi-objective search (the lean NSGA-II) on the predictor and the device's cost models;
4. measure the next ``batch_size`` archs: unmeasured archs of the predicted fronts, taken front by front and spread
   evenly along the cost axis within a front (diversity along the front, not only its best-predicted end);
5. repeat until ``n_evals`` archs are measured.

The runner reads the front from measured accuracies only; the top-1 each arch was *predicted* when proposed is kept
alongside (``top1_predicted``). Resuming replays the loop: the predictor fits and inner searches are deterministic
in the seed and every measured arch is a cache hit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from search.algorithms.base import SearchAlgorithm, SearchContext
from search.algorithms.registry import register_algorithm
from search.operators import sample_ladder

__all__ = ["LINAS", "spread_pick"]


def spread_pick(F: np.ndarray, rank: np.ndarray, k: int) -> np.ndarray:
    """``k`` row indices of ``F`` (minimised objectives), front by front (``rank`` 0 first); within the front that
    does not fit whole, rows evenly spaced along its last objective (the cost), so the batch covers the front."""
    picked: list[int] = []
    for r in np.unique(rank):
        if len(picked) >= k:
            break
        rows = np.flatnonzero(rank == r)
        need = k - len(picked)
        if len(rows) <= need:
            picked.extend(rows.tolist())
            continue
        rows = rows[np.argsort(F[rows, -1], kind="stable")]
        at = np.unique(np.rint(np.linspace(0, len(rows) - 1, need)).astype(np.int64))
        picked.extend(rows[at].tolist())
    return np.asarray(picked[:k], dtype=np.int64)


@register_algorithm
class LINAS(SearchAlgorithm):
    """Real evaluations in the loop, predictor-guided batches.

    Args:
        n_evals: budget of real evaluations (distinct archs measured by this search, the reference-point extremes
            included).
        batch_size: archs measured per iteration.
        n_init: archs measured before the first predictor fit.
        predictor: predictor recipe (``configs/predictor/<name>.yaml`` contents: ``kind`` + hyper-parameters).
        inner: the NSGA-II run on the predictor each iteration (``pop_size``, ``n_gen``, ...).
        calib_batches / eval_batches: data of each real evaluation (as the accuracy builder).
    """

    name = "linas"
    exact_resume = False
    #: the runner builds the accuracy model from ``ckpt=`` (:meth:`real_accuracy`) instead of loading a predictor
    measures_accuracy = True

    def __init__(self, *, n_evals: int = 200, batch_size: int = 20, n_init: int = 20,
                 predictor: Mapping[str, Any] | None = None, inner: Mapping[str, Any] | None = None,
                 calib_batches: int = 4, eval_batches: int | None = None, threads: int | None = 1) -> None:
        if batch_size < 1 or n_init < 2 or n_evals < n_init:
            raise ValueError(f"linas needs batch_size >= 1, n_init >= 2 and n_evals >= n_init; got batch_size="
                             f"{batch_size}, n_init={n_init}, n_evals={n_evals}")
        self.n_evals, self.batch_size, self.n_init = int(n_evals), int(batch_size), int(n_init)
        super().__init__(n_gen=-(-(self.n_evals - self.n_init) // self.batch_size))
        self.predictor = dict(predictor or {"kind": "ridge", "features": "onehot_stats", "alpha": 1.0})
        self.inner = dict(inner or {"pop_size": 100, "n_gen": 40})
        self.calib_batches, self.eval_batches, self.threads = int(calib_batches), eval_batches, threads
        #: arch string -> top-1 the predictor gave it when it was proposed
        self.predicted: dict[str, float] = {}

    def real_accuracy(self, ckpt: str | None, cache: str | None):
        """The measured accuracy model of ``ckpt`` (required), caching measurements in ``cache``."""
        if not ckpt:
            raise ValueError("algorithm=linas evaluates subnets for real: pass ckpt=<train.py checkpoint>")
        from search.measured import measured_from_checkpoint

        return measured_from_checkpoint(ckpt, calib_batches=self.calib_batches, eval_batches=self.eval_batches,
                                        cache=cache, threads=self.threads)

    def extra_columns(self, archs: list[str]) -> dict[str, list[float]]:
        return {"top1_predicted": [self.predicted.get(a, float("nan")) for a in archs]}

    # ------------------------------------------------------------------------------------ loop
    def _measured(self, ctx: SearchContext) -> np.ndarray:
        return np.fromiter(sorted(ctx.seen), dtype=np.int64)

    def _left(self, ctx: SearchContext) -> int:
        return self.n_evals - ctx.problem.ev.n

    def run(self, ctx: SearchContext) -> None:
        ev, layout = ctx.problem.ev, ctx.layout
        n0 = min(self.n_init, max(self._left(ctx), 0))
        X = sample_ladder(layout, ctx.rng, 2 * n0 + 2)  # spread from small to large archs
        if n0:
            ctx.evaluate(self._new(ctx, X)[:n0])
        ctx.seen.update(range(ev.n))  # the runner's reference-point extremes are measured archs too
        ctx.end_generation(0, None)
        for it in range(1, self.n_gen + 1):
            k = min(self.batch_size, self._left(ctx))
            if k <= 0:
                break
            batch, pred = self._propose(ctx, k, it)
            if len(batch) == 0:
                break
            for a, p in zip(ev.space.decode(batch), pred):
                self.predicted.setdefault(str(a), float(p))
            ctx.evaluate(batch)
            ctx.end_generation(it, None)

    def _new(self, ctx: SearchContext, X: np.ndarray) -> np.ndarray:
        """Rows of ``X`` that are neither measured nor repeated within ``X``."""
        ev = ctx.problem.ev
        keys = ev.keys(ev.space.normalize(X))
        known = ev.lookup(keys) >= 0
        keep, seen = [], set()
        for i, key in enumerate(keys):
            if not known[i] and key not in seen:
                seen.add(key)
                keep.append(i)
        return X[keep]

    def _propose(self, ctx: SearchContext, k: int, it: int) -> tuple[np.ndarray, np.ndarray]:
        """Fit the predictor on every measured arch, search on it, return ``k`` unmeasured archs (and their
        predicted top-1) spread along the predicted fronts."""
        from predictors.accuracy.models import build_predictor
        from search.algorithms.nsga2 import NSGA2, rank_and_crowding
        from search.evaluator import ArchEvaluator
        from search.problem import ArchProblem

        ev, obj = ctx.problem.ev, ctx.problem.obj
        ids = np.arange(ev.n)
        model = build_predictor(self.predictor, ev.space, supernet=ev.accuracy.supernet)
        model.fit(ev.encoded(ids), ev.top1[ids])
        inner_ev = ArchEvaluator(ev.space, model, ev.latency, macs_params=ev.macs_params)
        problem = ArchProblem(inner_ev, obj)
        inner_ctx = SearchContext(problem=problem, layout=ctx.layout, rng=ctx.rng, seed=ctx.seed + it,
                                  end_generation=lambda gen, state_fn: None)
        # the search starts from the measured archs (where the predictor is best informed), topped up at random
        algo = NSGA2(**{"seed_extremes": True, **self.inner})
        algo.initial_genomes = ev.encoded(ids)
        algo.run(inner_ctx)
        cand = np.arange(inner_ev.n)
        cand_x = inner_ev.encoded(cand)
        fresh = ev.lookup(ev.keys(ev.space.normalize(cand_x))) < 0
        cand, cand_x = cand[fresh], cand_x[fresh]
        if len(cand) == 0:
            return cand_x, np.zeros(0)
        F = obj.F(inner_ev, cand)
        rank, _ = rank_and_crowding(F, obj.violation(inner_ev, cand))
        pick = spread_pick(F, rank, k)
        return cand_x[pick], inner_ev.top1[cand[pick]]
