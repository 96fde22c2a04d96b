"""OFA's constrained evolution (Cai et al., *Once-for-All*, the tutorial's ``EvolutionFinder``), vectorised.

Single objective: maximise predicted top-1 under the search's constraints (e.g. ``latency_ms <= 25``).
Each generation keeps the best ``parent_ratio * pop_size`` archs as parents and adds
``mutation_ratio * pop_size`` mutated parents (each block, stage depth and the resolution resampled with ``mutate_prob``) and
``(1 - mutation_ratio) * pop_size`` gene-wise uniform crossovers of two parents (so, as in OFA, the
parents plus ``pop_size`` children); children that break a constraint are discarded and redrawn. Unlike the
original, candidates are drawn and evaluated in batches, and redrawing stops after ``max_tries``
batches instead of looping forever when the constraint is hard to meet.
"""

from __future__ import annotations

import numpy as np

from search.algorithms.base import SearchAlgorithm, SearchContext
from search.algorithms.registry import register_algorithm
from search.operators import sample_genomes

__all__ = ["OFAEvolution"]


@register_algorithm
class OFAEvolution(SearchAlgorithm):
    """OFA's EvolutionFinder defaults: population 100, parent ratio 0.25, mutation ratio 0.5,
    mutate prob 0.1, 500 generations."""

    name = "ofa_evolution"
    exact_resume = True

    def __init__(self, *, pop_size: int = 100, n_gen: int = 500, parent_ratio: float = 0.25,
                 mutation_ratio: float = 0.5, mutate_prob: float = 0.1, max_tries: int = 50) -> None:
        super().__init__(n_gen=n_gen)
        self.pop_size = int(pop_size)
        self.n_parents = max(2, round(pop_size * parent_ratio))
        self.n_mutate = round(pop_size * mutation_ratio)
        self.mutate_prob = float(mutate_prob)
        self.max_tries = int(max_tries)

    def _valid(self, ctx: SearchContext, make, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` feasible archs from ``make(slots)`` (one candidate per slot). As in OFA, a slot whose
        candidate breaks a constraint is redrawn with the same parents; after ``max_tries`` rounds the
        slots still infeasible are left empty (OFA would loop forever)."""
        slots = np.arange(n)
        X = np.zeros((n, len(ctx.layout.n_choices)), dtype=np.int64)
        ids = np.full(n, -1, dtype=np.int64)
        for _ in range(self.max_tries):
            if len(slots) == 0:
                break
            cand = make(slots)
            cid = ctx.evaluate(cand)
            ok = ctx.CV(cid) <= 0
            X[slots[ok]], ids[slots[ok]] = cand[ok], cid[ok]
            slots = slots[~ok]
        keep = ids >= 0
        return X[keep], ids[keep]

    def run(self, ctx: SearchContext) -> None:
        obj, layout, rng = ctx.problem.obj, ctx.layout, ctx.rng
        if not obj.constraints:
            raise ValueError("algorithm=ofa_evolution maximises top-1 under a limit: set e.g. constraints.latency_ms=25")
        if ctx.resume_state:
            X, ids, gen = np.asarray(ctx.resume_state["X"]), np.asarray(ctx.resume_state["ids"]), int(ctx.resume_state["gen"])
            self.restore_rng(rng, ctx.resume_state["rng"])
        else:
            X, ids = self._valid(ctx, lambda slots: sample_genomes(layout, rng, len(slots)), self.pop_size)
            gen = 0
            ctx.end_generation(0, self._state_fn(ctx, X, ids, 0))
        while gen < self.n_gen and len(X) > 0:
            gen += 1
            # read top-1 from the store each generation: its arrays are reallocated as it grows
            order = np.argsort(-ctx.problem.ev.top1[ids], kind="stable")[: self.n_parents]
            PX, Pids = X[order], ids[order]

            # each child slot has its parent(s) for good: a redraw mutates / crosses the same ones (as OFA)
            mpar = PX[rng.integers(0, len(PX), size=self.n_mutate)]
            n_cross = self.pop_size - self.n_mutate
            ca = PX[rng.integers(0, len(PX), size=n_cross)]
            cb = PX[rng.integers(0, len(PX), size=n_cross)]

            def mutants(slots: np.ndarray, mpar: np.ndarray = mpar) -> np.ndarray:
                # OFA's mutate_sample: one coin per block (kernel and expand together), per stage depth and
                # for the resolution
                base = mpar[slots]
                hit = (rng.random((len(slots), layout.n_units)) < self.mutate_prob)[:, layout.unit]
                return np.where(hit, rng.integers(0, layout.n_choices[None, :], size=base.shape), base)

            def crosses(slots: np.ndarray, ca: np.ndarray = ca, cb: np.ndarray = cb) -> np.ndarray:
                a, b = ca[slots], cb[slots]
                return np.where(rng.random(a.shape) < 0.5, a, b)

            MX, Mids = self._valid(ctx, mutants, self.n_mutate)
            # as OFA: parents + mutation_ratio * pop mutants + (1 - mutation_ratio) * pop crossovers
            CX, Cids = self._valid(ctx, crosses, n_cross)
            X = np.concatenate([PX, MX, CX])
            ids = np.concatenate([Pids, Mids, Cids])
            ctx.end_generation(gen, self._state_fn(ctx, X, ids, gen))

    def _state_fn(self, ctx: SearchContext, X: np.ndarray, ids: np.ndarray, gen: int):
        def state() -> dict:
            return {"X": X.copy(), "ids": ids.copy(), "gen": gen, "rng": self.rng_state(ctx.rng)}

        return state
