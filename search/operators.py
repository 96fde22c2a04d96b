"""Variation operators that work on the architecture, not on independent integers.

A genome is a row of choice indices for every column of the space (hidden genes included: a slot beyond
its stage's depth keeps a value that reappears when the depth grows, as in OFA's evolution). Columns are
grouped into *units*: the resolution, each stage depth, and each block (for MobileNetV3 a block's kernel
and expand ratio move together). Mutation resamples whole units; crossover takes each unit, or each
whole stage (depth and its blocks), from one parent. Duplicates are judged on the normalised arch
(unused slots = -1), so two genomes that differ only in hidden genes are the same arch.

The numpy functions drive the lean NSGA-II loop; the pymoo classes wrap them for pymoo's algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.sampling import Sampling

from supernets.quant_space import QuantSpace
from supernets.space import MobileNetV3Space, ResNetSpace, SearchSpace

__all__ = [
    "ArchCrossover",
    "ArchDuplicateElimination",
    "ArchMutation",
    "ArchSampling",
    "GeneLayout",
    "crossover",
    "gene_layout",
    "mutate",
    "sample_genomes",
    "sample_ladder",
]


@dataclass(frozen=True)
class GeneLayout:
    """Which unit (block level) and which stage unit each column belongs to."""

    unit: np.ndarray  # (n_columns,) block-level unit id
    stage: np.ndarray  # (n_columns,) stage-level unit id
    n_choices: np.ndarray

    @property
    def n_units(self) -> int:
        return int(self.unit.max()) + 1

    @property
    def n_stages(self) -> int:
        return int(self.stage.max()) + 1


def gene_layout(space: SearchSpace) -> GeneLayout:
    """Block and stage units of a space's columns (one unit per column for unknown families; a mixed-precision
    space: its base space's, plus one per precision gene)."""
    if isinstance(space, QuantSpace):  # the base space's units, then one unit per precision gene
        base = gene_layout(space.base)
        extra = np.arange(space.n_groups)
        return GeneLayout(unit=np.concatenate([base.unit, base.n_units + extra]),
                          stage=np.concatenate([base.stage, base.n_stages + extra]),
                          n_choices=space.n_choices.copy())
    cols = space.columns
    unit = np.arange(len(cols))
    stage = np.arange(len(cols))
    if isinstance(space, MobileNetV3Space):
        # r | d[s] | (ks[i], e[i]); stage units: r | d[s] + its slots
        for c, col in enumerate(cols):
            if col.group == "r":
                unit[c], stage[c] = 0, 0
            elif col.group == "d":
                unit[c], stage[c] = 1 + col.slot, 1 + col.slot
            else:
                unit[c] = 1 + space.n_stages + col.slot
                stage[c] = 1 + col.slot // space.max_depth
    elif isinstance(space, ResNetSpace):
        slot_stage = np.repeat(np.arange(space.n_stages), space.stage_slots)
        nxt = 0
        for c, col in enumerate(cols):
            unit[c] = nxt
            nxt += 1
            if col.group == "r":
                stage[c] = 0
            elif col.group == "d":
                stage[c] = 1 + col.slot  # d[0] is the stem, d[s+1] stage s
            elif col.group == "e":
                stage[c] = 2 + slot_stage[col.slot]
            else:  # w[0], w[1]: stem convs; w[2+s]: stage s
                stage[c] = 1 if col.slot < 2 else col.slot
    return GeneLayout(unit=unit.astype(np.int64), stage=_relabel(stage), n_choices=space.n_choices.copy())


def _relabel(ids: np.ndarray) -> np.ndarray:
    _, inv = np.unique(ids, return_inverse=True)
    return inv.astype(np.int64)


def sample_genomes(layout: GeneLayout, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` genomes drawn uniformly gene by gene (hidden genes included)."""
    return rng.integers(0, layout.n_choices[None, :], size=(n, len(layout.n_choices)))


def sample_ladder(layout: GeneLayout, rng: np.random.Generator, n: int, spread: float = 0.25) -> np.ndarray:
    """``n`` genomes from small to large: row ``i`` draws every unit around the level ``i / (n - 1)`` of its choices
    (``spread``: standard deviation of a unit's level; choices are ordered small to large). Uniform sampling puts
    almost every arch mid-range (a sum of independent units); a few real evaluations spread along the cost range
    tell a predictor more about the front."""
    if n <= 0:
        return np.zeros((0, len(layout.n_choices)), dtype=np.int64)
    level = np.linspace(0.0, 1.0, n)[:, None] + rng.normal(0.0, spread, size=(n, layout.n_units))
    level = np.clip(level, 0.0, 1.0)[:, layout.unit]  # a unit's columns (kernel, expand) move together
    return np.rint(level * (layout.n_choices[None, :] - 1)).astype(np.int64)


def mutate(X: np.ndarray, layout: GeneLayout, rng: np.random.Generator, prob: float, *,
           sparse: bool = False) -> np.ndarray:
    """Resample each unit (all its columns) with probability ``prob``; at least one unit per row.

    ``sparse``: draw new values for the resampled columns only (the same distribution from far fewer random draws,
    so another random stream: NSGA-II's screening mutates thousands of candidates per generation)."""
    n = len(X)
    hit = rng.random((n, layout.n_units)) < prob
    forced = rng.integers(0, layout.n_units, size=n)
    hit[np.arange(n), forced] = True  # a mutation that changes nothing only wastes an evaluation
    if sparse:
        rows, cols = np.nonzero(np.take(hit, layout.unit, axis=1))
        out = np.array(X, dtype=np.int64)
        out[rows, cols] = rng.integers(0, layout.n_choices[cols])
        return out
    fresh = rng.integers(0, layout.n_choices[None, :], size=X.shape)
    return np.where(np.take(hit, layout.unit, axis=1), fresh, X)


def crossover(A: np.ndarray, B: np.ndarray, layout: GeneLayout, rng: np.random.Generator,
              stage_prob: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Two complementary children per parent pair: each unit (or, with ``stage_prob``, each whole
    stage) comes from one parent."""
    n = len(A)
    by_stage = rng.random(n) < stage_prob
    unit_mask = np.take(rng.random((n, layout.n_units)) < 0.5, layout.unit, axis=1)
    stage_mask = np.take(rng.random((n, layout.n_stages)) < 0.5, layout.stage, axis=1)
    take_a = np.where(by_stage[:, None], stage_mask, unit_mask)
    child_a = np.where(take_a, A, B)
    return child_a, A + B - child_a  # the complement, without a second select


# ------------------------------------------------------------------------------- pymoo wrappers
class ArchSampling(Sampling):
    """Uniform gene-by-gene sampling (as OFA), for pymoo algorithms."""

    def __init__(self, layout: GeneLayout) -> None:
        super().__init__()
        self.layout = layout

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        return sample_genomes(self.layout, random_state, n_samples)


class ArchCrossover(Crossover):
    """Uniform crossover over blocks or whole stages (two parents, two children)."""

    def __init__(self, layout: GeneLayout, *, stage_prob: float = 0.5, prob: float = 0.9) -> None:
        super().__init__(2, 2, prob=prob)
        self.layout = layout
        self.stage_prob = stage_prob

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        a, b = crossover(X[0], X[1], self.layout, random_state, self.stage_prob)
        return np.stack([a, b])


class ArchMutation(Mutation):
    """Resample whole units (a block's kernel and expand together)."""

    def __init__(self, layout: GeneLayout, *, unit_prob: float = 0.1) -> None:
        super().__init__()
        self.layout = layout
        self.unit_prob = unit_prob

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        return mutate(np.asarray(X, dtype=np.int64), self.layout, random_state, self.unit_prob)


class ArchDuplicateElimination(DuplicateElimination):
    """Duplicates judged on the normalised arch (hidden genes ignored), by hashing rows."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space

    def _keys(self, pop) -> list[bytes]:
        X = self.space.normalize(np.asarray(pop.get("X"), dtype=np.int64)).astype(np.int16)
        return [r.tobytes() for r in X]

    def _do(self, pop, other, is_duplicate):
        seen: set[bytes] = set(self._keys(other)) if other is not None and len(other) else set()
        for i, k in enumerate(self._keys(pop)):
            if k in seen:
                is_duplicate[i] = True
            else:
                seen.add(k)
        return is_duplicate
