"""Samplers, schedules and distillation losses (no training)."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import yaml

import supernets
from supernets.paths import CONFIG_DIR, REPO_ROOT
from supernets.space import MobileNetV3Space, ResNetSpace
from supernets.training.distillation import alpha_divergence, create_distill_loss, kl_divergence, soft_cross_entropy
from supernets.training.module import SupernetModule
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
         "sampler": {"_target_": "supernets.training.samplers.UniformSampler", "n_subnets": 2}},
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


def _published(schedule: str, start: str, end: str) -> dict:
    cfg = yaml.safe_load((CONFIG_DIR / "schedule" / f"{schedule}.yaml").read_text())
    return {**cfg, "start_phase": start, "end_phase": end}


def _randomised(name: str) -> supernets.Supernet:
    """A tiny supernet in eval mode with BN away from its init (a zero-init gamma would hide the channels)."""
    net = supernets.create_supernet(name, in_chans=3).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


def _enter_keep_trained(net: supernets.Supernet, schedule: str, phase: str, previous: str, stage: int) -> list:
    """Enter ``phase`` of a published schedule (run alone, as a slice) and return the previous phase's subnets."""
    s = build_schedule(_published(schedule, phase, phase), net.space, global_batch_size=2048)
    # keep_trained reads the previous phase's choices from the full phase list even when the slice leaves it out.
    assert s.phases[0].sort_channels and s.phases[0].expand_stage == stage
    rs = build_schedule(_published(schedule, previous, previous), net.space,
                        global_batch_size=2048).phases[0].sampler.restricted
    return [rs.max_arch(), rs.min_arch(), *rs.sample(np.random.default_rng(0), 6)], s


@pytest.mark.parametrize(("phase", "previous", "stage"), [
    ("expand_2", "expand_1", 1),  # OFA's 2nd expand phase: expand_ratio_stage 1
    ("width_1", "expand_2", 2),  # OFA's width phase: expand_ratio_stage len(expand_ratio_list) - 1
])
def test_keep_trained_sort_leaves_the_previous_phases_resnet_subnets_unchanged(phase, previous, stage):
    net = _randomised("ofa_resnet_tiny")
    archs, s = _enter_keep_trained(net, "ps_ofa_resnet", phase, previous, stage)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def outputs() -> list[torch.Tensor]:
        out = []
        with torch.no_grad():
            for a in archs:
                net.set_active_subnet(a)
                out.append(net(x))
        return out

    before, weights = outputs(), {k: v.clone() for k, v in net.state_dict().items()}
    SupernetModule(net, s, optimizer=partial(torch.optim.SGD, lr=0.1))._enter_phase(0)
    assert any(not torch.equal(v, weights[k]) for k, v in net.state_dict().items())  # it did sort (within bands)
    for a, b, arch in zip(before, outputs(), archs):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=lambda m, arch=arch: f"{arch}: {m}")
    net.sort_channels()  # a free sort re-picks the channel sets: some previously trained subnet changes
    assert any(not torch.allclose(b, a, atol=1e-5, rtol=1e-4) for a, b in zip(before, outputs()))


def test_keep_trained_sort_keeps_the_middle_channels_mbv3s_first_expand_phase_trained():
    # OFA re-sorts the SE's hidden channels freely in every sort, so MBv3 outputs move a little even in OFA;
    # what keep_trained keeps is each trained expand ratio's set of middle channels.
    net = _randomised("ofa_mbv3_tiny")
    _, s = _enter_keep_trained(net, "ps_ofa_mbv3", "expand_2", "expand_1", 1)
    blocks = [m for m in net.modules() if hasattr(m, "conv_dw") and hasattr(m, "mid_channels")]

    def channel_sets() -> list[set[bytes]]:
        return [{row.numpy().tobytes() for row in blk.conv_dw.weight.detach()[: blk.mid_channels(e)]}
                for blk in blocks for e in (4, 6)]

    before, order = channel_sets(), [blk.conv_dw.weight.detach().clone() for blk in blocks]
    SupernetModule(net, s, optimizer=partial(torch.optim.SGD, lr=0.1))._enter_phase(0)
    assert channel_sets() == before
    assert any(not torch.equal(blk.conv_dw.weight, w) for blk, w in zip(blocks, order))  # it did sort (within bands)
    net.sort_channels()
    assert channel_sets() != before


@pytest.mark.parametrize(("name", "kwargs"), [("ofa_mbv3_tiny", {}), ("ofa_resnet_tiny", {"dropout": 0.5})])
def test_teacher_soft_targets_have_no_dropout_but_batch_statistics(name, kwargs):
    net = supernets.create_supernet(name, **kwargs)
    cfg = {"name": "ps", "phases": [{"name": "teacher", "epochs": 1, "lr": 0.1},
                                    {"name": "d", "epochs": 1, "lr": 0.1, "distill": "teacher", "choices": {"d": "all"}}]}
    module = SupernetModule(net, build_schedule(cfg, net.space, global_batch_size=8),
                            optimizer=partial(torch.optim.SGD, lr=0.1))
    module._enter_phase(1)
    r = int(net.space.max_arch().r)
    x = torch.randn(8, 1, r, r, generator=torch.Generator().manual_seed(0))
    a, b = module._teacher_logits(x, r, {}), module._teacher_logits(x, r, {})
    assert torch.equal(a, b)  # OFA builds its teacher with dropout_rate=0
    assert not torch.equal(a, module.teacher.eval()(x))  # ... and runs it in train mode (batch statistics)
    net.train()
    assert not torch.equal(net(x), net(x))  # the student keeps its dropout


@pytest.mark.parametrize(("schedule", "space_", "total", "long_phases"), [
    ("ps_ofa_mbv3", lambda: MobileNetV3Space(kernel_sizes=(3, 5, 7), expand_ratios=(3, 4, 6), depths=(2, 3, 4),
                                              n_stages=5), 605, ["kernel", "depth_2", "expand_2"]),
    ("ps_ofa_resnet", lambda: ResNetSpace(name="ofa_resnet"), 630, ["depth_2", "expand_2", "width_2"]),
])
def test_published_schedules_run_ofas_warmup_before_its_120_cosine_epochs(schedule, space_, total, long_phases):
    # OFA's progressive_shrinking.train loops over n_epochs + warmup_epochs: 5 warm-up epochs, then 120 cosine ones.
    s = build_schedule(_published(schedule, None, None), space_(), global_batch_size=2048)
    assert s.total_epochs == total
    assert [p.name for p in s.phases if p.warmup_epochs] == long_phases  # OFA's 120-epoch phases, and only those
    spe = 10
    for i, p in enumerate(s.phases):
        if not p.warmup_epochs:
            continue
        assert p.warmup_epochs == 5 and p.epochs == 125
        start = s.phase_start(i) * spe
        assert s.lr_at(start, spe) == pytest.approx(p.warmup_lr + (p.lr - p.warmup_lr) / (5 * spe))
        assert s.lr_at(start + 5 * spe, spe) == pytest.approx(p.lr)  # the cosine starts at the peak ...
        assert s.lr_at(start + 65 * spe, spe) == pytest.approx(p.lr / 2)  # ... is halfway after 60 of its 120 epochs


@pytest.mark.parametrize(("change", "match"), [
    ({"epochs": 0}, "epochs must be >= 1"), ({"epochs": -2}, "epochs must be >= 1"),
    ({"lr": 0.0}, "lr must be > 0"), ({"lr": -0.1}, "lr must be > 0"),
    ({"distill": "inplace"}, "inplace needs a sampler whose first subnet is the largest"),
    ({"sampler": {"type": "uniform"}}, r"needs a '_target_' naming its class \(the old `type: uniform`\)"),
    ({"sampler": {"_target_": "collections.OrderedDict"}}, "'collections.OrderedDict' is not a SubnetSampler"),
    ({"sampler": {"_target_": "supernets.training.samplers.Nope"}}, "'supernets.training.samplers.Nope' is not importable"),
])
def test_schedule_rejects_empty_phases_non_positive_lr_and_inplace_kd_without_the_sandwich_rule(space, change, match):
    bad = {**PS, "phases": [*PS["phases"][:2], {**PS["phases"][2], **change}]}
    with pytest.raises(ValueError, match=match):
        build_schedule(bad, space, global_batch_size=64)
    sandwich = {**PS["phases"][2], "distill": "inplace", "sampler": {"_target_": "supernets.training.samplers.SandwichSampler", "n_random": 1}}
    assert build_schedule({**PS, "phases": [sandwich]}, space, global_batch_size=64).phases[0].distill == "inplace"


@pytest.mark.parametrize("overrides", [[], ["experiment=tiny_ps_ofa"]])
def test_bench_training_split_keeps_every_phase_at_least_one_epoch(compose_config, overrides):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_training", REPO_ROOT / "scripts" / "bench_training.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = compose_config("train", ["paths.output_dir=/tmp/unused", *overrides])
    n = len(cfg.schedule.phases)
    for total in range(n, 40):
        split = bench._split(total, cfg)
        assert sum(split) == total and min(split) >= 1, (total, split)


def test_sort_channels_accepts_true_false_or_keep_trained_only(space):
    free = {**PS, "phases": [*PS["phases"], {"name": "e", "epochs": 1, "lr": 0.1, "sort_channels": True,
                                             "choices": {"e": "all"}}]}
    assert build_schedule(free, space, global_batch_size=64).phases[-1].expand_stage == 0
    bad = {**free, "phases": [*PS["phases"], {**free["phases"][-1], "sort_channels": "keep"}]}
    with pytest.raises(ValueError, match="keep_trained"):
        build_schedule(bad, space, global_batch_size=64)
    first = {**PS, "phases": [{**PS["phases"][0], "sort_channels": "keep_trained"}]}
    with pytest.raises(ValueError, match="first phase"):
        build_schedule(first, space, global_batch_size=64)


# ---------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("fn", [kl_divergence, alpha_divergence])
def test_divergences_vanish_when_student_matches_teacher_and_are_positive_otherwise(fn):
    g = torch.Generator().manual_seed(0)
    t = torch.randn(16, 10, generator=g)
    assert float(fn(t.clone(), t)) == pytest.approx(0.0, abs=1e-6)
    assert float(fn(torch.randn(16, 10, generator=g), t)) > 0.01


def _alphanet_reference(student: torch.Tensor, teacher: torch.Tensor, a_min: float, a_max: float,
                        clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaNet's loss_ops.f_divergence / AdaptiveLossSoft written out directly: (divergence, surrogate)."""
    def f_div(alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        q, p = student.softmax(1).detach(), teacher.softmax(1).detach()
        r = p / q
        if abs(alpha) < 1e-3:
            r = r.clamp(0, clip)
            f, f_base, rho = -r.log(), 0.0, r.log() - 1.0
        elif abs(alpha - 1.0) < 1e-3:
            f, f_base, rho = r * r.log(), 0.0, r
        else:
            iw = torch.pow(r, alpha).clamp(0, clip)
            f, f_base = iw / alpha / (alpha - 1.0), 1.0 / alpha / (alpha - 1.0)
            rho = iw / alpha + f_base
        return (q * (f - f_base)).sum(1), -(q * rho * student.log_softmax(1)).sum(1)

    (l_lo, g_lo), (l_hi, g_hi) = f_div(a_min), f_div(a_max)
    ind = torch.gt(l_lo, l_hi).float()
    return (ind * l_lo + (1 - ind) * l_hi).mean(), (ind * g_lo + (1 - ind) * g_hi).mean()


@pytest.mark.parametrize(("a_min", "a_max", "beta"), [(-1.0, 1.0, 5.0), (-0.5, 0.5, 5.0), (-1.0, 0.5, 1e9),
                                                      (0.0, 1.0, 2.0), (-2.0, 0.0, 3.0)])
def test_alpha_divergence_equals_alphanets_value_and_gradient(a_min, a_max, beta):
    g = torch.Generator().manual_seed(0)
    t, s0 = torch.randn(6, 10, generator=g) * 3, torch.randn(6, 10, generator=g)
    ours = s0.clone().requires_grad_(True)
    value = alpha_divergence(ours, t, a_min, a_max, beta)
    value.backward()
    ref = s0.clone().requires_grad_(True)
    ref_value, surrogate = _alphanet_reference(ref, t, a_min, a_max, beta)
    surrogate.backward()
    assert float(value.detach()) == pytest.approx(float(ref_value), rel=1e-5)
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-4, atol=1e-6)


def test_soft_cross_entropy_equals_hard_cross_entropy_for_a_confident_teacher():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(8, 10, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    teacher = torch.nn.functional.one_hot(y, 10).float() * 100.0
    assert float(soft_cross_entropy(s, teacher)) == pytest.approx(float(torch.nn.functional.cross_entropy(s, y)), rel=1e-4)


def test_distill_loss_does_not_backpropagate_into_the_teacher():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    create_distill_loss("alpha", alpha_min=-1.0, alpha_max=1.0)(s, t).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError, match="soft_ce"):
        create_distill_loss("mse")


def test_data_modules_and_distillation_losses_are_timm_style_registries():
    """A new data module or loss is one registered class / function; configs then name it (data.name=...,
    loss.distill.name=...) and the configs' builders (create_datamodule, create_distill_loss) find it."""
    from hydra.utils import instantiate

    from supernets.data.modules import DATAMODULES, SyntheticDataModule, list_datamodules, register_datamodule
    from supernets.training.distillation import LOSSES, list_distill_losses, register_distill_loss

    assert {"mnist10k", "synthetic", "cifar10_test", "imagenet"} <= set(list_datamodules())
    assert list_distill_losses() == ["alpha", "kl", "soft_ce"]

    @register_datamodule
    class Tiny(SyntheticDataModule):
        name = "tiny_test"

    @register_distill_loss("l2_test")
    def l2(student, teacher):
        return ((student - teacher) ** 2).mean()

    try:
        dm = instantiate({"_target_": "supernets.data.modules.create_datamodule", "name": "tiny_test", "n_train": 8})
        assert type(dm) is Tiny and dm.config == {"name": "tiny_test", "n_train": 8}
        loss = instantiate({"_target_": "supernets.training.distillation.create_distill_loss", "name": "l2_test"})
        assert float(loss(torch.ones(2, 3), torch.zeros(2, 3))) == 1.0
        with pytest.raises(ValueError, match="'tiny_test' is registered twice"):
            register_datamodule(type("Other", (SyntheticDataModule,), {"name": "tiny_test"}))
        with pytest.raises(ValueError, match="'l2_test' is registered twice"):
            register_distill_loss("l2_test")(lambda s, t: s)
    finally:
        DATAMODULES.pop("tiny_test")
        LOSSES.pop("l2_test")
