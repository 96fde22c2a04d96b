"""Random search: uniform archs (OFA's sampling, gene by gene) in batches of ``batch_size``."""

from __future__ import annotations

import numpy as np

from search.algorithms.base import SearchAlgorithm, SearchContext
from search.algorithms.registry import register_algorithm

__all__ = ["RandomSearch"]


@register_algorithm
class RandomSearch(SearchAlgorithm):
    """``n_gen + 1`` batches of ``batch_size`` uniformly sampled archs (the baseline of every benchmark).

    ``max_evals`` caps the evaluations (the last batch is smaller, later ones are dropped): a baseline given
    exactly another search's number of evaluations.
    """

    name = "random"
    exact_resume = True

    def __init__(self, *, batch_size: int = 200, n_gen: int = 100, max_evals: int | None = None) -> None:
        super().__init__(n_gen=n_gen)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_evals is not None and max_evals < 1:
            raise ValueError(f"max_evals must be >= 1 (or null: no cap), got {max_evals}")
        self.batch_size = int(batch_size)
        self.max_evals = None if max_evals is None else int(max_evals)

    @property
    def total_generations(self) -> int:
        if self.max_evals is None:
            return self.n_gen
        return min(self.n_gen, -(-self.max_evals // self.batch_size) - 1)

    def run(self, ctx: SearchContext) -> None:
        start = 0
        if ctx.resume_state:
            start = int(ctx.resume_state["gen"]) + 1
            self.restore_rng(ctx.rng, ctx.resume_state["rng"])
        space = ctx.problem.ev.space
        for gen in range(start, self.total_generations + 1):
            n = self.batch_size if self.max_evals is None else min(self.batch_size, self.max_evals - gen * self.batch_size)
            ctx.evaluate(space.sample_encoded(ctx.rng, n))
            ctx.end_generation(gen, self._state_fn(ctx, gen))

    def _state_fn(self, ctx: SearchContext, gen: int):
        def state() -> dict:
            return {"gen": gen, "rng": self.rng_state(ctx.rng), "X": np.zeros((0, 0), dtype=np.int64)}

        return state
