"""Subnet samplers: which subnets one training step trains, at which resolution.

A sampler turns a ``numpy.random.Generator`` into a :class:`StepPlan`. The training module seeds that generator
from ``(seed, global_step)``, so every rank of a distributed run (and a resumed run) draws the same subnets.

Samplers work inside a *restricted* space: per gene group the values a phase allows (progressive shrinking
opens the space group by group). ``choices`` maps a gene group to a list of values, ``"all"``, ``"max"`` or
``"min"`` (or ``choices="all"``: the whole space); a group not named is fixed to its largest value, except the resolution ``r``, elastic by default.

- :class:`UniformSampler`: ``n_subnets`` uniform random subnets (single-path baseline with ``n_subnets=1``;
  OFA's progressive-shrinking phases with 1/2/4).
- :class:`SandwichSampler`: the largest, the smallest and ``n_random`` random subnets (BigNAS/AttentiveNAS).
- :class:`ComplexityAwareSampler`: ElasticViT's complexity-aware sampling: the subnets of a step come from two
  neighbouring MACs buckets, so the subnets trained together are of similar size.
- :class:`SortedSampler`: SortedNet's sorted training: nested sub-models ordered by size, random ones per step with
  their gradients accumulated into one update.

None of them is family-specific: they see only the space (and, for complexity-aware sampling, a MACs function).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from supernets.space import UNUSED, Arch, SearchSpace
from supernets.utils import to_plain

__all__ = ["ComplexityAwareSampler", "RestrictedSpace", "SandwichSampler", "SortedSampler", "StepPlan",
           "SubnetSampler", "UniformSampler"]

#: ``encoded archs (n, n_columns) -> MACs (n,)``, e.g. ``lambda x: supernet.macs_params(x)[0]``.
CostFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class StepPlan:
    """The subnets of one step (each runs at its own ``arch.r``); ``roles`` name them (``max``, ``min``,
    ``random``). Progressive shrinking draws one resolution per step, the sandwich rule may draw one per subnet."""

    archs: tuple[Arch, ...]
    roles: tuple[str, ...]

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(int(a.r) for a in self.archs)


class RestrictedSpace:
    """A search space with each column limited to the allowed values of its gene group (vectorised sampling)."""

    def __init__(self, space: SearchSpace, choices: Mapping[str, Any] | str | None = None) -> None:
        self.space = space
        if isinstance(choices, str):
            if choices != "all":
                raise ValueError(f"choices must be a mapping gene group -> values, or 'all'; got {choices!r}")
            choices = dict.fromkeys(space.group_names, "all")
        choices = dict(choices or {})
        unknown = set(choices) - set(space.group_names)
        if unknown:
            raise ValueError(f"choices name unknown gene group(s) {sorted(unknown)} for space {space.name!r}; "
                             f"gene groups are {list(space.group_names)}")
        allowed: list[np.ndarray] = []
        for col in space.columns:
            spec = choices.get(col.group, "all" if col.group == "r" else "max")
            idx = self._indices(col.choices, spec, col.label)
            allowed.append(np.asarray(idx, dtype=np.int64))
        self.allowed = allowed
        self.n_allowed = np.array([len(a) for a in allowed], dtype=np.int64)
        width = int(self.n_allowed.max())
        self._table = np.stack([np.pad(a, (0, width - len(a)), mode="edge") for a in allowed])
        self.choices = {g: choices.get(g, "all" if g == "r" else "max") for g in space.group_names}

    @staticmethod
    def _indices(values: Sequence[Any], spec: Any, label: str) -> list[int]:
        if isinstance(spec, str):
            if spec == "all":
                return list(range(len(values)))
            if spec == "max":
                return [len(values) - 1]
            if spec == "min":
                return [0]
            raise ValueError(f"choices for {label}: {spec!r} is not a list of values, 'all', 'max' or 'min'")
        spec = [spec] if np.isscalar(spec) else list(spec)
        idx = sorted(i for i, v in enumerate(values) if any(np.isclose(v, s) for s in spec))
        if not idx:
            raise ValueError(f"choices for {label}: none of {spec} is an allowed value {list(values)}")
        return idx

    @property
    def resolutions(self) -> list[int]:
        r = self.space.group_slices["r"].start
        return [self.space.columns[r].choices[i] for i in self.allowed[r]]

    def sample_encoded(self, rng: np.random.Generator, n: int) -> np.ndarray:
        k = rng.integers(0, self.n_allowed[None, :], size=(n, self.space.n_columns))
        x = self._table[np.arange(self.space.n_columns)[None, :], k]
        return self.space.normalize(x)

    def sample(self, rng: np.random.Generator, n: int) -> list[Arch]:
        return self.space.decode(self.sample_encoded(rng, n))

    def max_arch(self, resolution: int | None = None) -> Arch:
        return self._extreme(np.array([a[-1] for a in self.allowed]), resolution)

    def min_arch(self, resolution: int | None = None) -> Arch:
        return self._extreme(np.array([a[0] for a in self.allowed]), resolution)

    def _extreme(self, idx: np.ndarray, resolution: int | None) -> Arch:
        arch = self.space.decode(idx[None, :])[0]
        return arch if resolution is None else self.space.with_resolution(arch, resolution)

    def contains(self, arch: Arch) -> bool:
        return all(i == UNUSED or i in a for i, a in zip(arch.idx, self.allowed))


class SubnetSampler:
    """Base sampler: draws one resolution per step, then the subnets (template method ``_archs``).

    ``first_is_max``: the step's first subnet is the largest, so in-place distillation can take it as teacher.
    ``needs_costs``: the constructor takes ``cost_fn`` (:data:`CostFn`), passed by ``build_schedule``.
    """

    first_is_max = False
    needs_costs = False

    def __init__(self, space: SearchSpace, *, choices: Mapping[str, Any] | str | None = None) -> None:
        self.space = space
        self.restricted = RestrictedSpace(space, choices)

    def __call__(self, rng: np.random.Generator) -> StepPlan:
        res = self.restricted.resolutions
        r = int(res[int(rng.integers(len(res)))])
        archs, roles = self._archs(rng, r)
        return StepPlan(archs=tuple(archs), roles=tuple(roles))

    def _archs(self, rng: np.random.Generator, resolution: int) -> tuple[list[Arch], list[str]]:
        raise NotImplementedError

    def _random(self, rng: np.random.Generator, n: int, resolution: int) -> list[Arch]:
        return [self.space.with_resolution(a, resolution) for a in self.restricted.sample(rng, n)] if n else []

    def state(self) -> dict[str, Any]:
        """Plain description stored in checkpoints (samplers are stateless given ``(seed, step)``)."""
        return {"type": type(self).__name__, "choices": to_plain(self.restricted.choices)}


class UniformSampler(SubnetSampler):
    """``n_subnets`` subnets drawn uniformly, gene by gene, from the allowed choices."""

    def __init__(self, space: SearchSpace, *, n_subnets: int = 1, choices: Mapping[str, Any] | str | None = None) -> None:
        super().__init__(space, choices=choices)
        if n_subnets < 1:
            raise ValueError(f"n_subnets must be >= 1, got {n_subnets}")
        self.n_subnets = int(n_subnets)

    def _archs(self, rng: np.random.Generator, resolution: int) -> tuple[list[Arch], list[str]]:
        return self._random(rng, self.n_subnets, resolution), ["random"] * self.n_subnets

    def state(self) -> dict[str, Any]:
        return {**super().state(), "n_subnets": self.n_subnets}


class SandwichSampler(SubnetSampler):
    """The sandwich rule: the largest and smallest subnets plus ``n_random`` random ones, largest first.

    ``resolution="per_subnet"`` (BigNAS, AttentiveNAS) runs the largest subnet at the largest resolution, the
    smallest at the smallest and each random one at its own; ``"shared"`` uses one resolution for the step.
    """

    first_is_max = True

    def __init__(self, space: SearchSpace, *, n_random: int = 2, resolution: str = "per_subnet",
                 choices: Mapping[str, Any] | str | None = None) -> None:
        super().__init__(space, choices=choices)
        if n_random < 0:
            raise ValueError(f"n_random must be >= 0, got {n_random}")
        if resolution not in ("per_subnet", "shared"):
            raise ValueError(f"resolution must be 'per_subnet' or 'shared', got {resolution!r}")
        self.n_random, self.resolution = int(n_random), resolution

    def _archs(self, rng: np.random.Generator, resolution: int) -> tuple[list[Arch], list[str]]:
        roles = ["max", "min"] + ["random"] * self.n_random
        if self.resolution == "shared":
            archs = [self.restricted.max_arch(resolution), self.restricted.min_arch(resolution)]
            return archs + self._random(rng, self.n_random, resolution), roles
        archs = [self.restricted.max_arch(), self.restricted.min_arch()]
        return archs + (self.restricted.sample(rng, self.n_random) if self.n_random else []), roles

    def state(self) -> dict[str, Any]:
        return {**super().state(), "n_random": self.n_random, "resolution": self.resolution}


class ComplexityAwareSampler(SubnetSampler):
    """ElasticViT's complexity-aware sampling (Tang et al., *ElasticViT: Conflict-aware Supernet Training for
    Deploying Fast Vision Transformer on Diverse Mobile Devices*, ICCV 2023).

    The MACs range of the (restricted) space is cut into ``n_buckets`` equal-width buckets; each step picks two
    neighbouring buckets uniformly and draws its ``n_subnets`` subnets from them, so the subnets whose gradients
    are summed are of similar size (the paper's fix for "gradient conflict" between very different subnets), and
    every size range is trained about as often as every other (gene-by-gene uniform sampling piles up in the
    middle or low end of the range and rarely draws the largest sizes). Subnets come from a fixed pool of ``pool_size`` archs drawn once (seeded by ``seed``) plus the
    largest and smallest; each keeps its own resolution. ``with_max`` puts the largest subnet first in every
    step (for in-place distillation).
    """

    needs_costs = True

    def __init__(self, space: SearchSpace, *, cost_fn: CostFn, n_subnets: int = 2, n_buckets: int = 8,
                 with_max: bool = True, pool_size: int = 2000, seed: int = 0,
                 choices: Mapping[str, Any] | str | None = None) -> None:
        super().__init__(space, choices=choices)
        if n_subnets < 1 or n_buckets < 2 or pool_size < n_buckets:
            raise ValueError(f"complexity-aware sampling needs n_subnets >= 1, n_buckets >= 2 and pool_size >= "
                             f"n_buckets; got n_subnets={n_subnets}, n_buckets={n_buckets}, pool_size={pool_size}")
        if not callable(cost_fn):
            raise ValueError(f"complexity-aware sampling needs cost_fn (encoded archs -> MACs), got {cost_fn!r}")
        self.n_subnets, self.n_buckets, self.with_max = int(n_subnets), int(n_buckets), bool(with_max)
        self.pool_size, self.seed = int(pool_size), int(seed)
        r = self.restricted
        pool = np.concatenate([r.space.encode([r.max_arch(), r.min_arch()]),
                               r.sample_encoded(np.random.default_rng([self.seed, 1597]), self.pool_size)])
        self.pool = np.unique(pool, axis=0)
        macs = np.asarray(cost_fn(self.pool), dtype=np.float64)
        if macs.shape != (len(self.pool),) or not np.all(np.isfinite(macs)):
            raise ValueError(f"cost_fn must return one finite MACs value per arch, got shape {macs.shape}")
        self.macs = macs
        edges = np.linspace(macs.min(), macs.max(), self.n_buckets + 1)
        bucket = np.clip(np.searchsorted(edges, macs, side="right") - 1, 0, self.n_buckets - 1)
        # Buckets the pool leaves empty are skipped, so "neighbouring" means the next non-empty one.
        self.buckets = [np.flatnonzero(bucket == b) for b in range(self.n_buckets) if (bucket == b).any()]

    def _archs(self, rng: np.random.Generator, resolution: int) -> tuple[list[Arch], list[str]]:
        # A pair of neighbouring buckets, then per subnet one of the two and a member of it: every bucket is
        # trained about as often as every other (the two end buckets half as often), whatever its pool share.
        b = int(rng.integers(max(len(self.buckets) - 1, 1)))
        pair = [self.buckets[i] for i in (b, b + 1) if i < len(self.buckets)]
        picks = rng.integers(len(pair), size=self.n_subnets)
        rows = self.pool[[int(pair[p][rng.integers(len(pair[p]))]) for p in picks]]
        archs = self.space.decode(rows)
        roles = ["random"] * self.n_subnets
        if self.with_max:
            return [self.restricted.max_arch(), *archs], ["max", *roles]
        return archs, roles

    @property
    def first_is_max(self) -> bool:  # type: ignore[override]
        return self.with_max

    def state(self) -> dict[str, Any]:
        return {**super().state(), "n_subnets": self.n_subnets, "n_buckets": self.n_buckets,
                "with_max": self.with_max, "pool_size": self.pool_size, "seed": self.seed}


class SortedSampler(SubnetSampler):
    """SortedNet's sorted training (Valipour et al., *SortedNet: A Scalable and Generalized Framework for
    Training Modular Deep Neural Networks*, 2023): ``n_models`` nested sub-models ordered by size, from the
    smallest to the largest of the (restricted) space, each containing the one before it (every gene at the same
    or a larger choice), taken evenly along a chain that grows one gene at a time. Each step
    trains ``n_subnets`` of them drawn at random and sums their losses, accumulating their gradients into one
    update. ``with_max`` adds the largest model first in every step (for in-place distillation).
    """

    def __init__(self, space: SearchSpace, *, n_models: int = 8, n_subnets: int = 2, with_max: bool = False,
                 choices: Mapping[str, Any] | str | None = None) -> None:
        super().__init__(space, choices=choices)
        if n_models < 2 or not 1 <= n_subnets <= n_models:
            raise ValueError(f"sorted sampling needs n_models >= 2 and 1 <= n_subnets <= n_models; got "
                             f"n_models={n_models}, n_subnets={n_subnets}")
        self.n_models, self.n_subnets, self.with_max = int(n_models), int(n_subnets), bool(with_max)
        r = self.restricted
        # A chain of nested archs from the smallest to the largest: as f goes 0 -> 1, column c moves to allowed
        # choice floor(f * (n_c - 1) + delta_c); staggered offsets delta_c make the columns step up one at a time,
        # so consecutive distinct archs differ in one gene. n_models of them are taken evenly along the chain.
        n_cols = space.n_columns
        delta = (np.arange(n_cols) + 0.5) / n_cols
        f = np.linspace(0.0, 1.0, 64 * n_cols + 1)[:, None]
        pos = np.minimum(np.floor(f * (r.n_allowed[None, :] - 1) + delta[None, :]), r.n_allowed[None, :] - 1)
        chain = space.normalize(r._table[np.arange(n_cols)[None, :], pos.astype(np.int64)])
        keep = np.concatenate([[True], (np.diff(chain, axis=0) != 0).any(axis=1)])
        chain = chain[keep]
        if len(chain) < self.n_models:
            raise ValueError(f"sorted sampling: the space holds a chain of only {len(chain)} nested subnets, fewer "
                             f"than n_models={self.n_models}")
        idx = chain[np.rint(np.linspace(0, len(chain) - 1, self.n_models)).astype(np.int64)]
        self.models = space.decode(idx)

    def _archs(self, rng: np.random.Generator, resolution: int) -> tuple[list[Arch], list[str]]:
        ks = np.sort(rng.choice(self.n_models, size=self.n_subnets, replace=False))[::-1]  # largest first
        archs = [self.models[int(k)] for k in ks]
        roles = [f"sorted_{int(k)}" for k in ks]
        if self.with_max:
            return [self.restricted.max_arch(), *archs], ["max", *roles]
        return archs, roles

    @property
    def first_is_max(self) -> bool:  # type: ignore[override]
        return self.with_max

    def state(self) -> dict[str, Any]:
        return {**super().state(), "n_models": self.n_models, "n_subnets": self.n_subnets,
                "with_max": self.with_max}


