"""Subnet samplers: which subnets one training step trains, at which resolution.

A sampler turns a ``numpy.random.Generator`` into a :class:`StepPlan`. The training module seeds that generator
from ``(seed, global_step)``, so every rank of a distributed run (and a resumed run) draws the same subnets.

Samplers work inside a *restricted* space: per gene group the values a phase allows (progressive shrinking
opens the space group by group). ``choices`` maps a gene group to a list of values, ``"all"``, ``"max"`` or
``"min"`` (or ``choices="all"``: the whole space); a group not named is fixed to its largest value, except the resolution ``r``, elastic by default.

- :class:`UniformSampler`: ``n_subnets`` uniform random subnets (single-path baseline with ``n_subnets=1``;
  OFA's progressive-shrinking phases with 1/2/4).
- :class:`SandwichSampler`: the largest, the smallest and ``n_random`` random subnets (BigNAS/AttentiveNAS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from supernets.space import UNUSED, Arch, SearchSpace

__all__ = ["RestrictedSpace", "SandwichSampler", "StepPlan", "SubnetSampler", "UniformSampler"]


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
    """Base sampler: draws one resolution per step, then the subnets (template method ``_archs``)."""

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
        return {"type": type(self).__name__, "choices": _plain(self.restricted.choices)}


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


def _plain(x: Any) -> Any:
    """Config values as plain Python (checkpoints are loaded with ``weights_only=True``)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
