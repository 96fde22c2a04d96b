"""What every search algorithm receives, and the interface it implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.operators import GeneLayout
from search.problem import ArchProblem

__all__ = ["AlgorithmState", "SearchAlgorithm", "SearchContext"]

#: arrays (genomes, store ids, ...) plus JSON-able scalars (generation, rng state)
AlgorithmState = dict[str, Any]


@dataclass
class SearchContext:
    """One device's search: the problem, the gene layout, a seeded generator and the runner's hooks.

    ``end_generation(gen, state_fn)`` must be called after every generation (``gen`` counts from 0, the
    initial population); ``state_fn`` returns the algorithm's resumable state, or is ``None`` for
    algorithms that resume by replaying their (cached) evaluations.
    """

    problem: ArchProblem
    layout: GeneLayout
    rng: np.random.Generator
    seed: int
    end_generation: Callable[[int, Callable[[], AlgorithmState] | None], None]
    resume_state: Mapping[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: store ids this device's search has evaluated (duplicates are judged against them)
    seen: set[int] = field(default_factory=set)

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        ids = self.problem.evaluate_ids(X)
        self.seen.update(ids.tolist())
        mask = self._seen_mask()
        if len(mask) <= self.problem.ev.n:
            mask = np.concatenate([mask, np.zeros(max(len(mask), self.problem.ev.n + 1 - len(mask)), dtype=bool)])
        mask[ids] = True
        self._mask = (len(self.seen), mask)
        return ids

    def is_seen(self, keys: list[bytes]) -> np.ndarray:
        """Whether each arch (cache key) was already evaluated by this search."""
        ids = self.problem.ev.lookup(keys)
        mask = self._seen_mask()
        ok = (ids >= 0) & (ids < len(mask))
        out = np.zeros(len(ids), dtype=bool)
        out[ok] = mask[ids[ok]]
        return out

    def _seen_mask(self) -> np.ndarray:
        """``seen`` as a boolean array over store ids, rebuilt only when ``seen`` grew (a membership test per id
        in Python was a tenth of a generation's time)."""
        cached = getattr(self, "_mask", None)
        if cached is None or cached[0] != len(self.seen):  # first call, or ``seen`` restored by the runner
            mask = np.zeros(self.problem.ev.n + 1, dtype=bool)
            if self.seen:
                mask[np.fromiter(self.seen, dtype=np.int64, count=len(self.seen))] = True
            cached = (len(self.seen), mask)
            self._mask = cached
        return cached[1]

    def F(self, ids: np.ndarray) -> np.ndarray:
        return self.problem.obj.F(self.problem.ev, ids)

    def CV(self, ids: np.ndarray) -> np.ndarray:
        return self.problem.obj.violation(self.problem.ev, ids)

    def keys(self, X: np.ndarray) -> list[bytes]:
        return self.problem.ev.keys(self.problem.ev.space.normalize(X))


class SearchAlgorithm:
    """A search over one device's objectives. ``n_gen`` generations after the initial one."""

    name = "algorithm"
    #: whether ``resume_state`` restores the exact loop (else the run replays from its cached evaluations)
    exact_resume = False

    def __init__(self, *, n_gen: int) -> None:
        if n_gen < 0:
            raise ValueError(f"n_gen must be >= 0, got {n_gen}")
        self.n_gen = int(n_gen)

    @property
    def total_generations(self) -> int:
        return self.n_gen

    def run(self, ctx: SearchContext) -> None:
        raise NotImplementedError

    @staticmethod
    def rng_state(rng: np.random.Generator) -> dict[str, Any]:
        return rng.bit_generator.state

    @staticmethod
    def restore_rng(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
        rng.bit_generator.state = dict(state)
