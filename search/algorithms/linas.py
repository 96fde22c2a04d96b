"""LINAS: lightweight iterative NAS with real evaluations in the loop (DyNAS-T, Cummings et al., "A Hardware-Aware
System for Accelerating Deep Neural Network Optimization", 2022).

The search's accuracy model is the *measured* top-1 of a trained supernet (:class:`search.measured.MeasuredAccuracy`);
every arch the loop hands to ``ctx.evaluate`` is one real evaluation. The loop:

1. measure ``n_init`` archs spread from small to large (:func:`search.operators.sample_ladder`);
2. fit a light predictor on every arch measured so far (``predictor`` may list several ``configs/predictor`` recipes:
   the one with the lowest out-of-fold error on the measured archs is used, and that error is the predictor's
   uncertainty);
3. run the multi-objective search (the lean NSGA-II) on the predictor and the device's cost models, started from the
   measured archs; every arch it visited is a candidate;
4. measure the next ``batch_size`` archs (``select``):

   * ``hvi`` (two objectives: accuracy and one cost): greedily, the candidate with the largest *expected*
     hypervolume improvement over the **measured** front, its accuracy drawn around the prediction with the
     predictor's uncertainty (the cost models are exact); then the pick joins the front at its predicted value
     ("believer"), so the next pick fills another gap. This spends real evaluations where the measured front can
     still move: gaps along it, and archs predicted just under it (a 1-point evaluation noise can lift them);
   * ``spread``: unmeasured archs of the predicted fronts, front by front, spread evenly along the cost;
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

__all__ = ["LINAS", "expected_hvi_pick", "fit_best_predictor", "hv_improvement", "spread_pick"]


def hv_improvement(P: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Hypervolume each row of ``P`` (n, 2; minimised) adds to ``front`` (m, 2) against ``ref``, vectorised.

    The front's dominated region is a staircase: for x in [a_j, a_{j+1}) (front sorted by the first objective) its
    upper edge is b_j, the smallest second objective at or left of x (``ref[1]`` left of the first point). A point p
    adds, in each such column, the width inside [p_0, ref_0] times how far p_1 sits below that edge."""
    P = np.atleast_2d(np.asarray(P, dtype=np.float64))
    front = np.asarray(front, dtype=np.float64).reshape(-1, 2)
    front = front[(front < ref).all(axis=1)]
    front = front[np.lexsort((front[:, 1], front[:, 0]))]
    edge = np.minimum.accumulate(front[:, 1]) if len(front) else front[:, 1]  # b_j (dominated points drop out)
    lo = np.concatenate([[-np.inf], front[:, 0]])
    hi = np.concatenate([front[:, 0], [ref[0]]])
    level = np.minimum(np.concatenate([[ref[1]], edge]), ref[1])
    width = np.clip(np.minimum(hi[None, :], ref[0]) - np.maximum(lo[None, :], P[:, :1]), 0.0, None)
    return (width * np.clip(level[None, :] - P[:, 1:2], 0.0, None)).sum(axis=1)


def expected_hvi_pick(F: np.ndarray, sigma: float, front: np.ndarray, ref: np.ndarray, k: int,
                      n_draws: int = 16) -> np.ndarray:
    """``k`` row indices of predicted objectives ``F`` (n, 2: 1 - top1, cost), picked greedily by the expected
    hypervolume improvement over ``front`` (measured), the first objective drawn ~ N(F[:, 0], sigma) at ``n_draws``
    fixed quantiles. Each pick joins the front at its predicted value before the next. Rows that improve nothing
    even in expectation are left; the caller tops up the batch."""
    from statistics import NormalDist

    z = np.array([NormalDist().inv_cdf((i + 0.5) / n_draws) for i in range(n_draws)]) if sigma > 0 else np.zeros(1)
    F = np.asarray(F, dtype=np.float64)
    draws = np.repeat(F[:, None, :], len(z), axis=1)
    draws[:, :, 0] += sigma * z[None, :]
    draws = draws.reshape(-1, 2)
    front = np.asarray(front, dtype=np.float64).reshape(-1, 2)
    picked: list[int] = []
    free = np.ones(len(F), dtype=bool)
    for _ in range(min(k, len(F))):
        gain = hv_improvement(draws, front, ref).reshape(len(F), len(z)).mean(axis=1)
        gain[~free] = -1.0
        best = int(np.argmax(gain))
        if gain[best] <= 0.0:
            break
        picked.append(best)
        free[best] = False
        front = np.concatenate([front, F[best:best + 1]])
    return np.asarray(picked, dtype=np.int64)


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


def fit_best_predictor(recipes: list[Mapping[str, Any]], space, X: np.ndarray, y: np.ndarray, *, folds: int = 5,
                       seed: int = 0, supernet: str | None = None):
    """The recipe (``configs/predictor`` contents) with the lowest ``folds``-fold out-of-fold RMSE on ``(X, y)``,
    fitted on all rows, and that RMSE (``inf`` with fewer than 2 rows: the first recipe, unscored)."""
    from predictors.accuracy.metrics import out_of_fold
    from predictors.accuracy.models import build_predictor

    folds = min(folds, len(y))
    best = (np.inf, recipes[0])
    if folds >= 2:
        for recipe in recipes:
            oof = out_of_fold(lambda r=recipe: build_predictor(r, space, supernet=supernet), X, y, folds=folds,
                              seed=seed)
            rmse = float(np.sqrt(np.mean((oof - y) ** 2)))
            if rmse < best[0]:
                best = (rmse, recipe)
    return build_predictor(dict(best[1]), space, supernet=supernet).fit(X, y), best[0]


@register_algorithm
class LINAS(SearchAlgorithm):
    """Real evaluations in the loop, predictor-guided batches.

    Args:
        n_evals: budget of real evaluations (distinct archs measured by this search, the reference-point extremes
            included).
        batch_size: archs measured per iteration.
        n_init: archs measured before the first predictor fit.
        predictor: predictor recipe (``configs/predictor/<name>.yaml`` contents: ``kind`` + hyper-parameters), or a
            list of them: each iteration uses the one with the lowest ``cv_folds``-fold error on the measured archs.
        select: ``hvi`` (expected hypervolume improvement over the measured front; two objectives) or ``spread``
            (along the predicted front); ``hvi`` falls back to ``spread`` with more than two objectives.
        noise: floor of the predictor's uncertainty (top-1 fraction): at least the evaluation's own noise (about
            0.01 for 2,000 held-out images at 40 %).
        cv_folds: folds of the out-of-fold error (the uncertainty, and the choice among listed predictors).
        inner: the NSGA-II run on the predictor each iteration (``pop_size``, ``n_gen``, ...).
        calib_batches / eval_batches: data of each real evaluation (as the accuracy builder).
    """

    name = "linas"
    exact_resume = False
    #: the runner builds the accuracy model from ``ckpt=`` (:meth:`real_accuracy`) instead of loading a predictor
    measures_accuracy = True

    def __init__(self, *, n_evals: int = 200, batch_size: int = 20, n_init: int = 20,
                 predictor: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
                 inner: Mapping[str, Any] | None = None, select: str = "hvi", noise: float = 0.01, cv_folds: int = 5,
                 calib_batches: int = 4, eval_batches: int | None = None, threads: int | None = 1) -> None:
        if batch_size < 1 or n_init < 0 or n_evals < n_init:
            raise ValueError(f"linas needs batch_size >= 1, n_init >= 0 and n_evals >= n_init; got batch_size="
                             f"{batch_size}, n_init={n_init}, n_evals={n_evals}")
        if select not in ("hvi", "spread"):
            raise ValueError(f"linas select={select!r}; allowed: 'hvi', 'spread'")
        if noise < 0 or cv_folds < 2:
            raise ValueError(f"linas needs noise >= 0 and cv_folds >= 2; got noise={noise}, cv_folds={cv_folds}")
        self.n_evals, self.batch_size, self.n_init = int(n_evals), int(batch_size), int(n_init)
        super().__init__(n_gen=-(-(self.n_evals - self.n_init) // self.batch_size))
        recipes = predictor if isinstance(predictor, (list, tuple)) else [predictor] if predictor else []
        self.predictors = [dict(p) for p in recipes] or [{"kind": "ridge", "features": "onehot_stats", "alpha": 1.0}]
        self.select, self.noise, self.cv_folds = str(select), float(noise), int(cv_folds)
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
        X = self._new(ctx, sample_ladder(layout, ctx.rng, 2 * n0 + 2))  # spread from small to large archs
        if n0:  # evenly along the ladder: its two ends are mostly the (measured) extremes again
            ctx.evaluate(X[np.unique(np.rint(np.linspace(0, len(X) - 1, n0)).astype(np.int64))])
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

    def _fit(self, ev, ids: np.ndarray, seed: int):
        """The listed predictor with the lowest out-of-fold RMSE on the measured archs, refit on all of them, and
        that RMSE (floored at ``noise``): the uncertainty of its predictions."""
        model, rmse = fit_best_predictor(self.predictors, ev.space, ev.encoded(ids), ev.top1[ids], folds=self.cv_folds,
                                         seed=seed, supernet=ev.accuracy.supernet)
        return model, max(rmse if np.isfinite(rmse) else 0.0, self.noise)

    def _propose(self, ctx: SearchContext, k: int, it: int) -> tuple[np.ndarray, np.ndarray]:
        """Fit the predictor on every measured arch, search on it, return ``k`` unmeasured archs (and their
        predicted top-1): by expected hypervolume improvement over the measured front (``select=hvi``), topped up
        by (or, ``select=spread``, all) spread along the predicted fronts."""
        from search.algorithms.nsga2 import NSGA2, rank_and_crowding
        from search.evaluator import ArchEvaluator
        from search.pareto import non_dominated, reference_point
        from search.problem import ArchProblem

        ev, obj = ctx.problem.ev, ctx.problem.obj
        ids = np.arange(ev.n)
        model, sigma = self._fit(ev, ids, ctx.seed + it)
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
        F, CV = obj.F(inner_ev, cand), obj.violation(inner_ev, cand)
        pick = np.zeros(0, dtype=np.int64)
        if self.select == "hvi" and F.shape[1] == 2:
            ok = np.flatnonzero(CV <= 0)
            Fm = obj.F(ev, ids)[obj.violation(ev, ids) <= 0]
            pick = ok[expected_hvi_pick(F[ok], sigma, Fm[non_dominated(Fm)], reference_point(ev, obj), k)]
        if len(pick) < k:  # nothing left to improve in expectation: spread along the predicted fronts
            rest = np.setdiff1d(np.arange(len(cand)), pick)
            rank, _ = rank_and_crowding(F[rest], CV[rest])
            pick = np.concatenate([pick, rest[spread_pick(F[rest], rank, k - len(pick))]])
        return cand_x[pick], inner_ev.top1[cand[pick]]
