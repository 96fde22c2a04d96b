"""Samplers, schedules and distillation losses (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import supernets
from supernets.training.distillation import alpha_divergence, get_distill_loss, kl_divergence, soft_cross_entropy
from supernets.training.samplers import RestrictedSpace, SandwichSampler, UniformSampler
from supernets.training.schedule import build_schedule


@pytest.fixture(scope="module")
def space():
    return supernets.create_supernet("ofa_mbv3_tiny", resolutions=[20, 24, 28]).space


# ----------------------------------------------------------------------------------- samplers
def test_restricted_space_samples_only_allowed_values_and_keeps_unnamed_genes_at_max(space, rng):
    rs = RestrictedSpace(space, {"ks": [3, 5], "d": [2, 3]})
    x = rs.sample_encoded(rng, 200)
    ks = space.values(x, "ks")
    assert set(np.unique(ks[~np.isnan(ks)])) == {3.0, 5.0}
    assert set(np.unique(space.values(x, "d"))) == {2.0, 3.0}
    assert set(np.unique(space.values(x, "e")[~np.isnan(space.values(x, "e"))])) == {6.0}
    assert set(np.unique(space.values(x, "r"))) == {20.0, 24.0, 28.0}  # resolution elastic by default
    assert rs.max_arch().d == (3, 3, 3) and rs.min_arch().d == (2, 2, 2)
    assert set(rs.min_arch().ks) - {None} == {3}


def test_restricted_space_rejects_unknown_genes_and_impossible_values(space):
    with pytest.raises(ValueError, match="unknown gene group"):
        RestrictedSpace(space, {"w": "all"})
    with pytest.raises(ValueError, match="none of"):
        RestrictedSpace(space, {"ks": [9]})


def test_uniform_sampler_uses_one_resolution_per_step_and_is_a_function_of_the_seed(space):
    sampler = UniformSampler(space, n_subnets=4, choices="all")
    a = sampler(np.random.default_rng([0, 17]))
    b = sampler(np.random.default_rng([0, 17]))
    c = sampler(np.random.default_rng([0, 18]))
    assert a == b and a != c
    assert len(set(a.resolutions)) == 1 and len(a.archs) == 4


def test_sandwich_sampler_trains_largest_then_smallest_then_random(space, rng):
    plan = SandwichSampler(space, n_random=2, choices="all")(rng)
    assert plan.roles == ("max", "min", "random", "random")
    assert plan.archs[0] == space.max_arch() and plan.archs[1] == space.min_arch()
    shared = SandwichSampler(space, n_random=1, resolution="shared", choices="all")(rng)
    assert len(set(shared.resolutions)) == 1


# ---------------------------------------------------------------------------------- schedule
PS = {
    "name": "ps",
    "base_batch_size": 64,
    "phase_defaults": {"distill": "teacher"},
    "phases": [
        {"name": "teacher", "epochs": 2, "lr": 0.1, "distill": "none"},
        {"name": "kernel", "epochs": 3, "lr": 0.04, "warmup_epochs": 1, "choices": {"ks": "all"}},
        {"name": "depth", "epochs": 1, "lr": 0.02, "choices": {"ks": "all", "d": "all"},
         "sampler": {"type": "uniform", "n_subnets": 2}},
    ],
}


def test_schedule_maps_epochs_to_phases_and_scales_lr_with_the_global_batch(space):
    s = build_schedule(PS, space, global_batch_size=128)
    assert [p.name for p in s.phases] == ["teacher", "kernel", "depth"] and s.total_epochs == 6
    assert [s.phase_index(e) for e in range(6)] == [0, 0, 1, 1, 1, 2]
    assert [s.is_phase_end(e) for e in range(6)] == [False, True, False, False, True, True]
    assert s.phases[0].lr == pytest.approx(0.2)  # 0.1 at batch 64 -> 0.2 at 128
    assert s.phases[1].distill == "teacher" and s.phases[0].distill == "none"


def test_lr_warms_up_then_follows_a_cosine_within_each_phase(space):
    s = build_schedule(PS, space, global_batch_size=64)
    spe = 10
    assert s.lr_at(0, spe) == pytest.approx(0.1)
    assert s.lr_at(10, spe) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 10 / 20)))
    assert s.lr_at(20, spe) == pytest.approx(0.04 / 10)  # first warm-up step of the kernel phase
    assert s.lr_at(29, spe) == pytest.approx(0.04)
    assert s.lr_at(49, spe) < 0.04 * 0.01
    assert s.lr_at(50, spe) == pytest.approx(0.02)


def test_schedule_slice_runs_named_phases_alone(space):
    s = build_schedule({**PS, "start_phase": "kernel", "end_phase": "kernel"}, space, global_batch_size=64)
    assert [p.name for p in s.phases] == ["kernel"]
    with pytest.raises(ValueError, match="unknown phase"):
        build_schedule({**PS, "start_phase": "width"}, space, global_batch_size=64)


def test_sandwich_sampling_trains_each_elastic_phases_smallest_subnet_every_step(space):
    s = build_schedule({**PS, "sandwich_sampling": True}, space, global_batch_size=64)
    teacher, kernel, depth = s.phases
    assert isinstance(teacher.sampler, UniformSampler)  # one subnet (the full net): nothing to sandwich
    for phase, n in ((kernel, 2), (depth, 2)):
        assert isinstance(phase.sampler, SandwichSampler) and phase.distill == "teacher"
        for step in range(5):
            plan = phase.sampler(np.random.default_rng([0, step]))
            assert plan.roles[:2] == ("max", "min") and len(plan.archs) == n
            assert len(set(plan.resolutions)) == 1  # one resolution per step, as in OFA's shrinking
            assert plan.archs[1] == phase.sampler.restricted.min_arch(plan.resolutions[0])
    assert depth.sampler.restricted.min_arch().d == (1, 1, 1) and kernel.sampler.restricted.min_arch().d == (3, 3, 3)
    per = build_schedule({**PS, "sandwich_sampling": True, "sandwich_resolution": "per_subnet"}, space,
                         global_batch_size=64).phases[2].sampler
    res = sorted(space.columns[space.group_slices["r"].start].choices)
    for step in range(5):  # BigNAS's resolutions: the largest subnet at the largest, the smallest at the smallest
        plan = per(np.random.default_rng([0, step]))
        assert plan.resolutions == (res[-1], res[0]) and plan.archs[1] == per.restricted.min_arch(res[0])


# ---------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("fn", [kl_divergence, alpha_divergence])
def test_divergences_vanish_when_student_matches_teacher_and_are_positive_otherwise(fn):
    g = torch.Generator().manual_seed(0)
    t = torch.randn(16, 10, generator=g)
    assert float(fn(t.clone(), t)) == pytest.approx(0.0, abs=1e-6)
    assert float(fn(torch.randn(16, 10, generator=g), t)) > 0.01


def test_soft_cross_entropy_equals_hard_cross_entropy_for_a_confident_teacher():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(8, 10, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    teacher = torch.nn.functional.one_hot(y, 10).float() * 100.0
    assert float(soft_cross_entropy(s, teacher)) == pytest.approx(float(torch.nn.functional.cross_entropy(s, y)), rel=1e-4)


def test_distill_loss_does_not_backpropagate_into_the_teacher():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    get_distill_loss("alpha", alpha_min=-1.0, alpha_max=1.0)(s, t).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError, match="soft_ce"):
        get_distill_loss("mse")
