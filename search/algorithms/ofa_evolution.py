"""OFA's constrained evolution (Cai et al., *Once-for-All*, the tutorial's ``EvolutionFinder``), vectorised.

Single objective: maximise predicted top-1 under the search's constraints (e.g. ``latency_ms <= 25``).
Each generation keeps the best ``parent_ratio`` of the population, adds ``mutation_ratio`` of it as
mutated parents (every gene resampled with ``mutate_prob``) and fills the rest with gene-wise uniform
crossovers of two parents; children that break a constraint are discarded and redrawn. Unlike the
original, candidates are drawn and evaluated in batches, and redrawing stops after ``max_tries``
batches instead of looping forever when the constraint is hard to meet.
"""

from __future__ import annotations

import numpy as np

from search.algorithms.base import SearchAlgorithm, SearchContext
from search.operators import sample_genomes

__all__ = ["OFAEvolution"]


class OFAEvolution(SearchAlgorithm):
    """OFA's EvolutionFinder defaults: population 100, parent ratio 0.25, mutation ratio 0.5,
    mutate prob 0.1, 500 generations."""

    name = "ofa_evolution"
    exact_resume = True

    def __init__(self, *, pop_size: int = 100, n_gen: int = 500, parent_ratio: float = 0.25,
                 mutation_ratio: float = 0.5, mutate_prob: float = 0.1, max_tries: int = 20) -> None:
        super().__init__(n_gen=n_gen)
        self.pop_size = int(pop_size)
        self.n_parents = max(2, round(pop_size * parent_ratio))
        self.n_mutate = round(pop_size * mutation_ratio)
        self.mutate_prob = float(mutate_prob)
        self.max_tries = int(max_tries)

    def _valid(self, ctx: SearchContext, make, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` feasible children from ``make(k)`` (k candidate genomes per batch)."""
        got_X, got_ids = [], []
        have = 0
        for _ in range(self.max_tries):
            if have >= n:
                break
            X = make(max(2 * (n - have), 16))
            ids = ctx.evaluate(X)
            ok = ctx.CV(ids) <= 0
            got_X.append(X[ok])
            got_ids.append(ids[ok])
            have += int(ok.sum())
        if not got_X:
            return np.zeros((0, len(ctx.layout.n_choices)), dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(got_X)[:n], np.concatenate(got_ids)[:n]

    def run(self, ctx: SearchContext) -> None:
        obj, layout, rng = ctx.problem.obj, ctx.layout, ctx.rng
        if not obj.constraints:
            raise ValueError("algorithm=ofa_evolution maximises top-1 under a limit: set e.g. constraints.latency_ms=25")
        if ctx.resume_state:
            X, ids, gen = np.asarray(ctx.resume_state["X"]), np.asarray(ctx.resume_state["ids"]), int(ctx.resume_state["gen"])
            self.restore_rng(rng, ctx.resume_state["rng"])
        else:
            X, ids = self._valid(ctx, lambda k: sample_genomes(layout, rng, k), self.pop_size)
            gen = 0
            ctx.end_generation(0, self._state_fn(ctx, X, ids, 0))
        while gen < self.n_gen and len(X) > 0:
            gen += 1
            order = np.argsort(-ctx.problem.ev.top1[ids], kind="stable")  # the store may have grown[: self.n_parents]
            PX, Pids = X[order], ids[order]

            def mutants(k: int, PX: np.ndarray = PX) -> np.ndarray:
                base = PX[rng.integers(0, len(PX), size=k)]
                hit = rng.random(base.shape) < self.mutate_prob
                return np.where(hit, rng.integers(0, layout.n_choices[None, :], size=base.shape), base)

            def crosses(k: int, PX: np.ndarray = PX) -> np.ndarray:
                a = PX[rng.integers(0, len(PX), size=k)]
                b = PX[rng.integers(0, len(PX), size=k)]
                return np.where(rng.random(a.shape) < 0.5, a, b)

            MX, Mids = self._valid(ctx, mutants, self.n_mutate)
            CX, Cids = self._valid(ctx, crosses, self.pop_size - self.n_parents - self.n_mutate)
            X = np.concatenate([PX, MX, CX])
            ids = np.concatenate([Pids, Mids, Cids])
            ctx.end_generation(gen, self._state_fn(ctx, X, ids, gen))

    def _state_fn(self, ctx: SearchContext, X: np.ndarray, ids: np.ndarray, gen: int):
        def state() -> dict:
            return {"X": X.copy(), "ids": ids.copy(), "gen": gen, "rng": self.rng_state(ctx.rng)}

        return state
