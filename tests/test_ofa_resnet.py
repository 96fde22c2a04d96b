"""OFA-ResNet: OFA's layout and widths, OFA dict form, extraction, gradients, channel sorting, costs, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from supernets import ResNetSpace, count_macs, count_params, create_supernet, recalibrate_bn
from supernets.layers.dynamic import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear
from supernets.ofa_resnet import OFAResNet

TINY_R = 28


@pytest.fixture(scope="module")
def tiny() -> OFAResNet:
    torch.manual_seed(0)
    return create_supernet("ofa_resnet_tiny")


@pytest.fixture(scope="module")
def r50() -> OFAResNet:
    torch.manual_seed(0)
    return create_supernet("ofa_resnet50")


def _tiny_archs(space: ResNetSpace) -> list:
    return [space.max_arch(TINY_R), space.min_arch(TINY_R), *space.sample(np.random.default_rng(3), 5)]


def _eval_pair(model: OFAResNet, arch, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Supernet and extracted-subnet eval outputs for ``arch``, BN statistics recalibrated so values stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.in_chans, arch.r, arch.r, generator=gen)
    model.set_active_subnet(arch)
    recalibrate_bn(model, [torch.randn(4, model.in_chans, arch.r, arch.r, generator=gen)], 1)
    subnet = model.get_active_subnet().eval()
    with torch.no_grad():
        return model(x), subnet(x)


def _used_slice(sub_param: torch.Tensor) -> tuple[slice, ...]:
    return tuple(slice(0, n) for n in sub_param.shape)


# ------------------------------------------------------------------------------------ space and layout
def test_widths_follow_ofa_make_divisible_rule(r50: OFAResNet) -> None:
    assert r50.input_widths == (40, 48, 64)
    assert r50.mid_input_widths == (24, 24, 32)
    assert r50.stage_widths == ((168, 208, 256), (336, 408, 512), (664, 816, 1024), (1328, 1640, 2048))
    assert [len(s) for s in r50.stages] == [4, 4, 6, 4]
    assert [s[0].stride for s in r50.stages] == [2 if i else 1 for i in range(4)]
    # Only each stage's first block changes width choices, so only it has a conv shortcut.
    assert [b.identity_shortcut for s in r50.stages for b in s] == [j > 0 for s in r50.stages for j in range(len(s))]
    assert r50.stages[3][0].conv1.conv.out_channels == 720  # make_divisible(round(2048 * 0.35)) in OFA


def test_stage_with_the_widths_of_its_input_and_stride_one_is_rejected() -> None:
    space = ResNetSpace(name="bad", base_depths=(1, 1), resolutions=(32,))
    with pytest.raises(ValueError, match="stage 0 has stride 1 and the same width choices"):
        OFAResNet(space, stem_width=64, stage_widths=(64, 128), stage_strides=(1, 2))


def test_count_matches_closed_form() -> None:
    assert ResNetSpace().count() == 2 * 3**6 * (3**2 + 3**3 + 3**4) ** 3 * (3**4 + 3**5 + 3**6)
    assert create_supernet("ofa_resnet_tiny").space.count() == 2 * 3**6 * (3 + 3**2 + 3**3) ** 4


def test_ofa_dict_round_trip_keeps_stem_skip(r50: OFAResNet) -> None:
    space = r50.space
    # Stage depths 3/4/4/3 of 4/4/6/4 slots; OFA's dict holds the smallest expand ratio in unused slots.
    e = [0.25] * 3 + [0.2] + [0.35] * 4 + [0.25] * 4 + [0.2] * 2 + [0.25] * 3 + [0.2]
    cfg = {"d": [0, 1, 2, 0, 1], "e": e, "w": [0, 1, 2, 0, 1, 2], "r": 160}
    arch = space.from_ofa_dict(cfg)
    assert arch.d == (0, 1, 2, 0, 1) and arch.w == (0.65, 0.8, 1.0, 0.65, 0.8, 1.0)
    assert arch.e.count(None) == 4
    assert arch.to_ofa_dict() == cfg
    assert space.from_ofa_dict({**cfg, "e": [0.35 if v == 0.2 else v for v in e]}) == arch
    # OFA skips the stem block for any d[0] below the maximum.
    assert space.from_ofa_dict({**cfg, "d": [1, 1, 2, 0, 1]}) == arch
    kept = space.from_ofa_dict({**cfg, "d": [2, 1, 2, 0, 1]})
    assert kept.d[0] == 2 and space.from_ofa_dict(kept.to_ofa_dict()) == kept
    for a in space.sample(np.random.default_rng(0), 20):
        assert space.from_ofa_dict(a.to_ofa_dict()) == a


def test_stem_block_runs_only_when_stem_depth_is_max(tiny: OFAResNet) -> None:
    space = tiny.space
    base = space.max_arch(TINY_R).to_ofa_dict()
    tiny.set_active_subnet(space.from_ofa_dict({**base, "d": [0, 2, 2, 2, 2]}))
    assert tiny.get_active_subnet().stem_block is None
    skipped, _ = _eval_pair(tiny, tiny.active_arch)
    tiny.set_active_subnet(space.from_ofa_dict(base))
    assert tiny.get_active_subnet().stem_block is not None
    kept, _ = _eval_pair(tiny, tiny.active_arch)
    assert not torch.allclose(skipped, kept)


# ------------------------------------------------------------------------------------------ extraction
@pytest.mark.parametrize("k", range(7))
def test_extracted_tiny_subnet_equals_supernet_in_eval(tiny: OFAResNet, k: int) -> None:
    arch = _tiny_archs(tiny.space)[k]
    y_super, y_sub = _eval_pair(tiny, arch)
    assert (y_super - y_sub).abs().max().item() < 1e-5
    subnet = tiny.get_active_subnet()
    dynamic = (DynamicConv2d, DynamicBatchNorm2d, DynamicLinear)
    assert not any(isinstance(m, dynamic) for m in subnet.modules())
    assert all(p.is_contiguous() for p in subnet.parameters())
    # Every subnet parameter is the leading slice of the supernet parameter of the same name.
    full = dict(tiny.named_parameters())
    for name, p in subnet.named_parameters():
        assert torch.equal(p, full[name][_used_slice(p)]), name


@pytest.mark.parametrize("which", ["max", "min"])
def test_extracted_resnet50_subnet_equals_supernet_in_eval(r50: OFAResNet, which: str) -> None:
    arch = r50.space.max_arch(128) if which == "max" else r50.space.min_arch(128)
    y_super, y_sub = _eval_pair(r50, arch)
    assert y_super.abs().max().item() > 1e-3  # a non-trivial output
    assert (y_super - y_sub).abs().max().item() < 1e-5


# ------------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("k", [1, 2, 3])
def test_unused_weights_get_zero_grad_and_used_weights_get_grad(tiny: OFAResNet, k: int) -> None:
    arch = _tiny_archs(tiny.space)[k]
    tiny.set_active_subnet(arch)
    used = dict(tiny.get_active_subnet().named_parameters())
    assert len(used) < len(dict(tiny.named_parameters()))  # some blocks are unused
    tiny.train()
    tiny.zero_grad(set_to_none=True)
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(4, tiny.in_chans, arch.r, arch.r, generator=gen)
    tiny(x).mul(torch.randn(4, tiny.num_classes, generator=gen)).sum().backward()
    for name, p in tiny.named_parameters():
        grad = torch.zeros_like(p) if p.grad is None else p.grad
        if name not in used:
            assert grad.abs().sum() == 0, f"{name} is unused by {arch} but got gradient"
            continue
        sl = _used_slice(used[name])
        assert grad[sl].abs().sum() > 0, f"{name} is used by {arch} but got no gradient"
        outside = grad.clone()
        outside[sl] = 0
        assert outside.abs().sum() == 0, f"{name}: gradient outside the slice {arch} uses"
    tiny.zero_grad(set_to_none=True)
    tiny.eval()


def test_training_forward_and_gradients_equal_the_extracted_subnets() -> None:
    """Training slices every conv-BN weight in one autograd node; in train mode (batch statistics) the
    supernet must compute what the static subnet computes, and its gradients must be the subnet's, cut in."""
    torch.manual_seed(0)
    model = create_supernet("ofa_resnet_tiny").double().train()
    space = model.space
    small = space.min_arch(TINY_R).to_ofa_dict()
    with_stem_block = space.from_ofa_dict({**small, "d": [2, 1, 0, 2, 1]})
    without = space.from_ofa_dict({**small, "d": [0, 1, 0, 2, 1]})
    for k, arch in enumerate([*_tiny_archs(space)[1:4], with_stem_block, without]):
        model.set_active_subnet(arch)
        subnet = model.get_active_subnet().double().train()
        gen = torch.Generator().manual_seed(k)
        x = torch.randn(3, model.in_chans, arch.r, arch.r, dtype=torch.float64, generator=gen)
        w = torch.randn(3, model.num_classes, dtype=torch.float64, generator=gen)
        model.zero_grad(set_to_none=True)
        y_super = model(x)
        y_super.mul(w).sum().backward()
        y_sub = subnet(x)
        y_sub.mul(w).sum().backward()
        torch.testing.assert_close(y_super, y_sub, rtol=1e-10, atol=1e-10)
        full = dict(model.named_parameters())
        for name, p in subnet.named_parameters():
            got = full[name].grad
            assert got is not None, name
            torch.testing.assert_close(got[_used_slice(p)], p.grad, rtol=1e-10, atol=1e-10, msg=name)
    model.zero_grad(set_to_none=True)


# ------------------------------------------------------------------------------------- channel sorting
def test_sort_channels_keeps_max_net_output_and_orders_middle_channels() -> None:
    torch.manual_seed(1)
    model = create_supernet("ofa_resnet_tiny")
    arch = model.space.max_arch(TINY_R)
    model.set_active_subnet(arch)
    x = torch.randn(2, 1, TINY_R, TINY_R, generator=torch.Generator().manual_seed(0))
    recalibrate_bn(model, [torch.randn(8, 1, TINY_R, TINY_R)], 1)
    # Give BN non-trivial affine parameters so a channel permutation that forgets the BN would show.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    with torch.no_grad():
        before = model(x)
        mid_before = model.stages[2][0].conv2.conv.weight.clone()
        model.sort_channels()
        after = model(x)
    # Permuted channels sum in another order, so allow float32 round-off relative to the output scale.
    assert (before - after).abs().max().item() < 1e-6 * before.abs().max().item()
    assert not torch.equal(mid_before, model.stages[2][0].conv2.conv.weight)  # something moved
    for stage in model.stages:
        for block in stage:
            importance = block.conv3.conv.weight.abs().sum(dim=(0, 2, 3))
            assert torch.all(importance[:-1] >= importance[1:])


def test_sort_channels_in_a_later_expand_phase_keeps_channel_sets_of_larger_ratios() -> None:
    torch.manual_seed(2)
    model = create_supernet("ofa_resnet_tiny")
    block = model.stages[3][0]
    widest = max(block.out_channel_choices)
    edges = [block.mid_channels(widest, e) for e in sorted(block.expand_ratios, reverse=True)]  # [136, 96, 80]
    assert edges == sorted(set(edges), reverse=True)
    with torch.no_grad():
        block.conv2.conv.weight.mul_(torch.rand(1, edges[0], 1, 1) * 2)  # distinct importances, many moves
        block.conv3.conv.weight.mul_(torch.rand(1, edges[0], 1, 1) * 2)
    tag = torch.arange(edges[0], dtype=torch.float32)
    with torch.no_grad():
        block.conv2.bn.running_mean.copy_(tag)  # follows conv2's output channels through the permutation
    model.sort_channels(expand_stage=1)
    moved = block.conv2.bn.running_mean.long()
    assert set(moved[: edges[1]].tolist()) == set(range(edges[1]))  # the e=0.25 set stays the first 96
    assert not torch.equal(moved, torch.arange(edges[0]))
    importance = block.conv3.conv.weight.abs().sum(dim=(0, 2, 3))
    for lo, hi in ((0, edges[1]), (edges[1], edges[0])):
        assert torch.all(importance[lo : hi - 1] >= importance[lo + 1 : hi])


# ------------------------------------------------------------------------------------------- costs
def test_analytic_costs_equal_counted_costs_of_extracted_subnets(tiny: OFAResNet, r50: OFAResNet) -> None:
    cases = [(tiny, a) for a in _tiny_archs(tiny.space)]
    cases += [(tiny, tiny.space.with_resolution(a, 32)) for a in _tiny_archs(tiny.space)[:3]]
    cases += [(r50, r50.space.max_arch(128)), (r50, r50.space.min_arch(224))]
    cases += [(r50, r50.space.sample(np.random.default_rng(5)))]
    for model in (tiny, r50):
        archs = [a for m, a in cases if m is model]
        macs, params = model.macs_params(model.space.encode(archs))
        assert macs.shape == params.shape == (len(archs),)
        for a, m_macs, m_params in zip(archs, macs, params):
            model.set_active_subnet(a)
            subnet = model.get_active_subnet()
            assert (int(m_macs), int(m_params)) == (count_macs(subnet, a.r, model.in_chans), count_params(subnet)), a
    # A list of archs gives the same as their encoded matrix.
    archs = _tiny_archs(tiny.space)
    assert all(np.array_equal(u, v) for u, v in zip(tiny.macs_params(archs), tiny.macs_params(tiny.space.encode(archs))))
    assert [int(v[0]) for v in tiny.macs_params(archs[0])] == [int(v[0]) for v in tiny.macs_params(archs[:1])]


# -------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trips_through_safe_load(tmp_path) -> None:
    torch.manual_seed(0)
    src = create_supernet("ofa_resnet_tiny")
    state = src.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())  # EMA helpers walk the values as tensors
    torch.save(state, tmp_path / "ckpt.pt")
    dst = create_supernet("ofa_resnet_tiny")
    dst.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    assert dst.loaded_from == "ofa_resnet_tiny"
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), name
    # Partial loads (BN statistics only, as the training module swaps them) still work without strictness.
    bn_only = {k: v for k, v in state.items() if k.endswith("running_mean")}
    fresh = create_supernet("ofa_resnet_tiny")
    fresh.load_state_dict(bn_only, strict=False)
    assert fresh.loaded_from is None


def test_checkpoint_of_another_supernet_fails_naming_both(tiny: OFAResNet, r50: OFAResNet, tmp_path) -> None:
    torch.save(tiny.state_dict(), tmp_path / "tiny.pt")
    state = torch.load(tmp_path / "tiny.pt", weights_only=True)
    with pytest.raises(ValueError, match=r"supernet 'ofa_resnet_tiny'.*supernet 'ofa_resnet50'.*missing keys"):
        r50.load_state_dict(state)
    other_head = create_supernet("ofa_resnet_tiny", num_classes=5)
    with pytest.raises(ValueError, match=r"shape mismatches \(e\.g\. classifier\.weight: checkpoint \(10, 384\)"):
        other_head.load_state_dict(state)



def test_cached_eval_weights_follow_updates_replacements_and_conversions() -> None:
    """No-grad eval runs each bottleneck (and sliced stem/classifier weights) on cached copies; in-place
    updates, ``load_state_dict(assign=True)`` and ``.to()`` must all reach them."""
    torch.manual_seed(1)
    model = create_supernet("ofa_resnet_tiny").eval()
    model.set_active_subnet(_tiny_archs(model.space)[2])
    x = torch.randn(2, model.in_chans, TINY_R, TINY_R)

    def check_changed(before: torch.Tensor) -> torch.Tensor:
        after = model(x)
        assert not torch.allclose(after, before)
        assert (after - model.get_active_subnet().eval()(x)).abs().max() < 1e-5
        return after

    with torch.no_grad():
        first = model(x)
        assert torch.equal(model(x), first)
        for stage in model.stages:
            for blk in stage:
                blk.conv2.conv.weight.mul_(0.5)  # what an optimizer step does: an in-place update
                blk.conv3.bn.running_var.mul_(2.0)  # what BN recalibration does to the statistics
        updated = check_changed(first)
        halved = {k: v * 0.5 if k.endswith(("conv.weight", "classifier.weight")) else v.clone()
                  for k, v in model.state_dict().items()}
        model.load_state_dict(halved, assign=True)
        replaced = check_changed(updated)
        assert (model.double()(x.double()) - replaced.double()).abs().max() < 1e-4
