"""Training schedules: an ordered list of phases, each with its own epochs, learning rate, sampler and distillation.

A schedule is data (``configs/schedule/*.yaml``), never ``if phase == ...`` code. OFA's progressive shrinking is
five phases after the teacher; the sandwich rule and the uniform baseline are one phase each. Every phase says
what happens when it starts (re-sort channels, snapshot the teacher, fresh optimizer state) so it can also
run alone from a checkpoint of the previous one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hydra.utils import get_class

from supernets.compose import build
from supernets.space import SearchSpace
from supernets.training.samplers import (
    ComplexityAwareSampler,
    CostFn,
    RestrictedSpace,
    SandwichSampler,
    SortedSampler,
    SubnetSampler,
    UniformSampler,
)

__all__ = ["SAMPLER_TARGETS", "Phase", "Schedule", "build_schedule", "create_schedule"]

# What a phase's `sampler: {_target_: ...}` may name (error messages list them; any SubnetSampler subclass works).
SAMPLER_TARGETS = [f"{c.__module__}.{c.__name__}"
                   for c in (UniformSampler, SandwichSampler, ComplexityAwareSampler, SortedSampler)]
DISTILL_MODES = ("none", "teacher", "inplace", "teacher_inplace")


@dataclass(frozen=True)
class Phase:
    """One phase of a schedule.

    Attributes:
        name: label used in logs and checkpoint names.
        epochs: length in epochs.
        lr: peak learning rate (already scaled to the run's global batch size).
        warmup_epochs: linear warm-up from ``warmup_lr`` (0 when unset) before the cosine decay.
        sampler: draws the subnets of each step.
        distill: ``none``; ``teacher`` (KD from a frozen copy of the full net, OFA); ``inplace`` (KD from the
            step's first, largest subnet, BigNAS); ``teacher_inplace`` (InstaTune: the largest subnet learns from
            the frozen copy, the others from the largest).
        kd_weight: weight of the soft-target loss (OFA's ``kd_ratio``, 1.0).
        sort_channels: re-sort channels by importance when the phase starts (OFA before the width phases).
        expand_stage: passed to the supernet's ``sort_channels`` (0: a free sort; k >= 1: channels only move
            within the bands cut by the k+1 largest expand ratios, keeping the channel sets already trained).
        reset_optimizer: start with a fresh optimizer state (OFA runs each phase as a new job).
        config: the phase's plain config (stored in checkpoints).
    """

    name: str
    epochs: int
    lr: float
    sampler: SubnetSampler
    warmup_epochs: float = 0.0
    warmup_lr: float | None = None
    distill: str = "none"
    kd_weight: float = 1.0
    sort_channels: bool = False
    expand_stage: int = 0
    reset_optimizer: bool = True
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_teacher(self) -> bool:
        """Whether the phase distils from the frozen copy of the full net."""
        return self.distill in ("teacher", "teacher_inplace")

    @property
    def uses_inplace(self) -> bool:
        """Whether the step's later subnets distil from its first, largest one."""
        return self.distill in ("inplace", "teacher_inplace")


@dataclass(frozen=True)
class Schedule:
    """The phases a run trains, in order, with epoch bookkeeping and the learning-rate curve."""

    name: str
    phases: tuple[Phase, ...]
    min_lr_ratio: float = 0.0

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def phase_index(self, epoch: int) -> int:
        """Index of the phase that trains ``epoch`` (0-based); the last phase past the end."""
        end = 0
        for i, p in enumerate(self.phases):
            end += p.epochs
            if epoch < end:
                return i
        return len(self.phases) - 1

    def phase_start(self, index: int) -> int:
        return sum(p.epochs for p in self.phases[:index])

    def is_phase_end(self, epoch: int) -> bool:
        """Whether ``epoch`` is the last epoch of its phase."""
        i = self.phase_index(epoch)
        return epoch == self.phase_start(i) + self.phases[i].epochs - 1

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """Learning rate at a global step: per phase, linear warm-up then cosine decay to ``min_lr_ratio``."""
        steps_per_epoch = max(int(steps_per_epoch), 1)
        epoch = step // steps_per_epoch
        i = self.phase_index(epoch)
        p = self.phases[i]
        t = step - self.phase_start(i) * steps_per_epoch
        total = max(p.epochs * steps_per_epoch, 1)
        warm = round(p.warmup_epochs * steps_per_epoch)
        if t < warm:
            # From 0 by default; OFA warms up from its base lr (``warmup_lr: <lr>``, i.e. a constant start).
            start = 0.0 if p.warmup_lr is None else p.warmup_lr
            return start + (p.lr - start) * (t + 1) / warm
        progress = min((t - warm) / max(total - warm, 1), 1.0)
        lo = p.lr * self.min_lr_ratio
        return lo + 0.5 * (p.lr - lo) * (1.0 + math.cos(math.pi * progress))

    def lr_lambda(self, base_lr: float, steps_per_epoch: int) -> Callable[[int], float]:
        """A ``LambdaLR`` factor function for an optimizer created with ``lr=base_lr``."""

        def factor(step: int) -> float:
            return self.lr_at(step, steps_per_epoch) / base_lr

        return factor


def _select(phases: Sequence[Mapping[str, Any]], start: str | int | None, end: str | int | None) -> list[int]:
    names = [str(p["name"]) for p in phases]

    def index(key: str | int | None, default: int) -> int:
        if key is None:
            return default
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            k = int(key)
            if not 0 <= k < len(names):
                raise ValueError(f"phase index {k} out of range; the schedule has phases {names}")
            return k
        if key not in names:
            raise ValueError(f"unknown phase {key!r}; the schedule has phases {names}")
        return names.index(key)

    lo, hi = index(start, 0), index(end, len(names) - 1)
    if lo > hi:
        raise ValueError(f"start_phase {start!r} comes after end_phase {end!r} in {names}")
    return list(range(lo, hi + 1))


def _elastic(sampler: SubnetSampler) -> bool:
    """Whether the sampler's space has more than one subnet apart from the resolution."""
    r = sampler.space.group_slices["r"]
    return bool(np.delete(sampler.restricted.n_allowed, np.arange(r.start, r.stop)).max(initial=1) > 1)


def _expand_stage(phases: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any], i: int,
                  space: SearchSpace) -> int:
    """OFA's ``expand_ratio_stage`` for a ``keep_trained`` sort in phase ``i``: the number of expand ratios the
    previous phase trained, minus one. OFA's second expand phase passes 1 (its first trained two ratios) and its
    width phase (ResNet) ``len(expand_ratio_list) - 1``, so the channel sets already trained stay in place."""
    name = phases[i].get("name")
    if i == 0:
        raise ValueError(f"phase {name!r}: sort_channels: keep_trained keeps the channels the previous phase "
                         f"trained, but it is the first phase of the schedule; use sort_channels: true")
    if "e" not in space.group_names:
        raise ValueError(f"phase {name!r}: sort_channels: keep_trained needs an expand-ratio gene group 'e'; "
                         f"space {space.name!r} has {list(space.group_names)}; use sort_channels: true")
    prev = {**defaults, **dict(phases[i - 1])}
    # Sort by the previous phase's choices even when a slice (start_phase) leaves that phase out of this run.
    allowed = RestrictedSpace(space, prev.get("choices")).n_allowed[space.group_slices["e"]]
    return int(allowed.max(initial=1)) - 1


def _build_sampler(pc: Mapping[str, Any], space: SearchSpace, cost_fn: CostFn | None) -> SubnetSampler:
    """A phase's sampler from its ``_target_`` config (a :class:`SubnetSampler` subclass and its options), built
    with ``hydra.utils.instantiate`` on the phase's space and choices."""
    sampler_cfg = dict(pc.get("sampler") or {"_target_": f"{UniformSampler.__module__}.UniformSampler"})
    if "_target_" not in sampler_cfg:
        hint = f" (the old `type: {sampler_cfg['type']}`)" if "type" in sampler_cfg else ""
        raise ValueError(f"phase {pc['name']!r}: sampler {sampler_cfg} needs a '_target_' naming its class{hint}: "
                         f"one of {SAMPLER_TARGETS}")
    sampler_cfg.pop("_partial_", None)  # the phase supplies space and choices (below)
    try:
        cls = get_class(str(sampler_cfg["_target_"]))
    except Exception as e:  # hydra's message names the module path it could not import
        raise ValueError(f"phase {pc['name']!r}: sampler _target_ {sampler_cfg['_target_']!r} is not importable "
                         f"({e}); one of {SAMPLER_TARGETS}") from None
    if not (isinstance(cls, type) and issubclass(cls, SubnetSampler)):
        raise ValueError(f"phase {pc['name']!r}: sampler _target_ {sampler_cfg['_target_']!r} is not a "
                         f"SubnetSampler; one of {SAMPLER_TARGETS}")
    extra: dict[str, Any] = {}
    if cls.needs_costs:
        if cost_fn is None:
            raise ValueError(f"phase {pc['name']!r}: sampler {cls.__name__} needs the subnets' MACs, but no cost_fn "
                             f"was given (the supernet has no macs_params)")
        extra["cost_fn"] = cost_fn
    # a partial: the space is an object (instantiate would convert it, a dataclass, into a dict)
    return build(f"phase {pc['name']!r} sampler", sampler_cfg, _partial_=True)(space, choices=pc.get("choices"), **extra)


def create_schedule(space: SearchSpace, *, global_batch_size: int, cost_fn: CostFn | None = None,
                    **cfg: Any) -> Schedule:
    """:func:`build_schedule` with the schedule's keys as keyword arguments: the ``_target_`` of
    ``configs/schedule/*.yaml`` (``_partial_: true``; the run supplies the space, batch and costs)."""
    return build_schedule(cfg, space, global_batch_size=global_batch_size, cost_fn=cost_fn)


def build_schedule(cfg: Mapping[str, Any], space: SearchSpace, *, global_batch_size: int,
                   cost_fn: CostFn | None = None) -> Schedule:
    """Build a :class:`Schedule` from a schedule config (see ``configs/schedule/*.yaml``).

    Keys: ``name``, ``phases`` (list), optional ``start_phase``/``end_phase`` (name or index) to run a slice,
    ``base_batch_size`` (learning rates in the file are for this global batch; scaled linearly to the run's),
    ``min_lr_ratio``, ``phase_defaults`` merged into every phase, and ``sandwich_sampling``: when true, every
    phase with a uniform sampler over more than one subnet trains the phase's largest and smallest subnets plus
    ``n_subnets - 2`` random ones instead (progressive shrinking with the sandwich rule inside each phase; the
    smallest subnet of a phase is trained every step rather than by chance). ``sandwich_resolution`` says at
    which resolutions: ``shared`` (default; one per step, as OFA) or ``per_subnet`` (BigNAS: the largest subnet
    at the largest resolution, the smallest at the smallest). A phase's ``sort_channels`` is ``true`` (a free
    sort) or ``keep_trained`` (OFA: channels move only within the expand-ratio bands the previous phase trained).
    ``cost_fn`` (encoded archs -> MACs, e.g. ``supernet.macs_params``'s first output) is given to samplers that
    need sizes (``complexity``).
    """
    phases_cfg = list(cfg.get("phases") or [])
    if not phases_cfg:
        raise ValueError(f"schedule {cfg.get('name')!r} lists no phases")
    defaults = dict(cfg.get("phase_defaults") or {})
    base_bs = cfg.get("base_batch_size")
    scale = 1.0 if not base_bs else global_batch_size / float(base_bs)
    chosen = _select(phases_cfg, cfg.get("start_phase"), cfg.get("end_phase"))
    phases = []
    for i in chosen:
        pc = {**defaults, **dict(phases_cfg[i])}
        for key in ("name", "epochs", "lr"):
            if key not in pc:
                raise ValueError(f"phase {i} of schedule {cfg.get('name')!r} has no {key!r}: {pc}")
        sampler = _build_sampler(pc, space, cost_fn)
        if cfg.get("sandwich_sampling") and isinstance(sampler, UniformSampler) and _elastic(sampler):
            sampler = SandwichSampler(space, choices=pc.get("choices"), n_random=max(sampler.n_subnets - 2, 0),
                                      resolution=str(cfg.get("sandwich_resolution") or "shared"))
        distill = str(pc.get("distill", "none"))
        if distill not in DISTILL_MODES:
            raise ValueError(f"phase {pc['name']!r}: distill must be one of {DISTILL_MODES}, got {distill!r}")
        if distill in ("inplace", "teacher_inplace") and not sampler.first_is_max:
            # In-place KD takes the step's first subnet as the teacher: it must be the largest.
            raise ValueError(f"phase {pc['name']!r}: distill: {distill} needs a sampler whose first subnet is the "
                             f"largest (SandwichSampler, or ComplexityAwareSampler / SortedSampler with with_max: true), got "
                             f"{type(sampler).__name__}; use sampler: {{_target_: "
                             f"supernets.training.samplers.SandwichSampler}} or distill: teacher / none")
        if not float(pc["epochs"]) >= 1:
            raise ValueError(f"phase {pc['name']!r}: epochs must be >= 1, got {pc['epochs']!r}; remove the phase "
                             f"or select a slice with start_phase / end_phase instead")
        if not float(pc["lr"]) > 0:
            raise ValueError(f"phase {pc['name']!r}: lr must be > 0, got {pc['lr']!r}")
        warmup_lr = pc.get("warmup_lr")
        sort = pc.get("sort_channels", False)
        if not (isinstance(sort, bool) or sort == "keep_trained"):
            raise ValueError(f"phase {pc['name']!r}: sort_channels must be false, true (a free sort) or "
                             f"'keep_trained' (OFA: keep the channel sets the previous phase trained), got {sort!r}")
        phases.append(Phase(
            name=str(pc["name"]),
            epochs=int(pc["epochs"]),
            lr=float(pc["lr"]) * scale,
            warmup_epochs=float(pc.get("warmup_epochs", 0.0)),
            warmup_lr=None if warmup_lr is None else float(warmup_lr) * scale,
            sampler=sampler,
            distill=distill,
            kd_weight=float(pc.get("kd_weight", 1.0)),
            sort_channels=bool(sort),
            expand_stage=_expand_stage(phases_cfg, defaults, i, space) if sort == "keep_trained" else 0,
            reset_optimizer=bool(pc.get("reset_optimizer", True)),
            config=pc,
        ))
    return Schedule(name=str(cfg.get("name", "schedule")), phases=tuple(phases),
                    min_lr_ratio=float(cfg.get("min_lr_ratio", 0.0)))
