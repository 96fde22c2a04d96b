"""OFA-MobileNetV3 against published figures (DyNAS-T counts, OFA's model zoo) and its elastic mechanics."""

from __future__ import annotations

import ast
import csv
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual, SqueezeExcite
from timm.models.mobilenetv3 import MobileNetV3
from torch import nn

from supernets import Arch, MobileNetV3Space, count_macs, count_params, create_supernet
from supernets.ofa_mbv3 import MobileNetV3Config, OFAMobileNetV3
from supernets.published import PUBLISHED_RESOLUTIONS, published_mbv3_subnets
from supernets.utils import make_divisible, make_divisible_np
from tests.bundled import specialized_zoo

DYNAST_DIR = Path(__file__).parent / "data" / "dynast_ofa_mbv3_w10"


@cache
def _model(name: str, **kwargs) -> OFAMobileNetV3:
    torch.manual_seed(0)
    return create_supernet(name, **kwargs)


def _dynast_rows() -> list[dict[str, str]]:
    rows = []
    for path in sorted(DYNAST_DIR.glob("*.csv")):
        with path.open(newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


# ------------------------------------------------------------------------------------ counting
def test_make_divisible_gives_ofa_widths() -> None:
    base = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
    assert [make_divisible(c * 1.2, 8) for c in base] == [24, 24, 32, 48, 96, 136, 192, 1152, 1536]
    v = np.arange(1, 2000) * 0.37
    assert make_divisible_np(v).tolist() == [make_divisible(x) for x in v]


def test_make_divisible_is_timms_and_the_vectorised_copy_agrees_with_it() -> None:
    from timm.layers import make_divisible as timm_make_divisible

    assert make_divisible is timm_make_divisible
    rng = np.random.default_rng(0)
    # the search's inputs: integer products (round(c * e)), quarters, and off-grid floats near the 90 % edge
    v = np.concatenate([np.arange(0, 3000), rng.uniform(0, 3000, 4000), np.arange(1, 400) * 8 * 0.9 + 1e-9])
    for divisor, min_value in ((8, None), (8, 16), (4, None), (16, None), (1, None)):
        ours = make_divisible_np(v, divisor, min_value)
        assert ours.tolist() == [timm_make_divisible(x, divisor, min_value) for x in v], (divisor, min_value)


def test_w12_config_has_ofa_widths() -> None:
    c = _model("ofa_mbv3_w12").config
    assert (c.stem_chs, c.first_chs, c.stage_chs, c.final_chs, c.head_chs) == (24, 24, (32, 48, 96, 136, 192), 1152, 1536)


def test_w10_max_and_min_subnets_have_the_published_parameter_counts() -> None:
    model = _model("ofa_mbv3_w10")
    for arch, expected in ((model.space.max_arch(), 7.665), (model.space.min_arch(), 3.411)):
        model.set_active_subnet(arch)
        n = count_params(model.get_active_subnet())
        assert round(n / 1e6, 3) == expected
        assert model.macs_params([arch])[1][0] == n


def test_every_dynast_subnet_has_the_listed_params_and_macs() -> None:
    rows = _dynast_rows()
    assert len(rows) > 2300
    model = _model("ofa_mbv3_w10")
    archs = [model.space.from_ofa_dict(ast.literal_eval(r["Sub-network"])) for r in rows]
    assert {a.r for a in archs} == {224}
    macs, params = model.macs_params(model.space.encode(archs))
    expected_macs = np.array([int(r["MACs"]) for r in rows])
    expected_params = np.array([int(r["Model Parameters"]) for r in rows])
    assert np.array_equal(params, expected_params), np.flatnonzero(params != expected_params)[:5]
    assert np.array_equal(macs, expected_macs), np.flatnonzero(macs != expected_macs)[:5]


@pytest.mark.parametrize(("name", "n"), [("ofa_mbv3_w10", 2), ("ofa_mbv3_w12", 0), ("ofa_mbv3_tiny", 2)])
def test_analytic_counts_equal_flop_counter_on_extracted_subnets(name: str, n: int) -> None:
    model = _model(name)
    space = model.space
    # Odd resolutions exercise the 'same'-padding size rounding of strided layers.
    archs = [space.max_arch(space.resolutions[0]), space.min_arch(space.resolutions[1]), *space.sample(np.random.default_rng(7), n)]
    macs, params = model.macs_params(archs)
    for arch, m, p in zip(archs, macs, params):
        model.set_active_subnet(arch)
        sub = model.get_active_subnet()
        assert count_params(sub) == p
        assert count_macs(sub, arch.r, in_chans=model.config.in_chans) == m, str(arch)


def test_macs_params_accepts_archs_or_encoded_rows() -> None:
    model = _model("ofa_mbv3_tiny")
    archs = model.space.sample(np.random.default_rng(0), 5)
    a = model.macs_params(archs)
    b = model.macs_params(model.space.encode(archs))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="shape"):
        model.macs_params(np.zeros((2, 3), dtype=np.int64))


# --------------------------------------------------------------------------- published subnets
def test_every_published_mbv3_subnet_converts_to_an_arch() -> None:
    subnets = published_mbv3_subnets()
    assert len(subnets) == 34
    assert {s["width_mult"] for s in subnets} == {1.0, 1.2}
    assert max(s["resolution"] for s in subnets) == 260
    assert len(published_mbv3_subnets("note10")) == 8 and len(published_mbv3_subnets("pixel1")) == 7
    for s in subnets:
        name = "ofa_mbv3_w10" if s["width_mult"] == 1.0 else "ofa_mbv3_w12"
        model = _model(name, resolutions=PUBLISHED_RESOLUTIONS)
        assert s["arch"].space == model.space
        model.set_active_subnet(s["arch"])  # accepted by the supernet of that width
    with pytest.raises(ValueError, match="device"):
        published_mbv3_subnets("toaster")


def test_arch_outside_the_configured_resolutions_raises() -> None:
    wide = _model("ofa_mbv3_w10", resolutions=range(128, 261, 4))
    assert wide.space.resolutions[-1] == 260
    arch = next(s["arch"] for s in published_mbv3_subnets() if s["resolution"] == 260)
    default = _model("ofa_mbv3_w10").space
    with pytest.raises(ValueError, match=r"gene r .*260.*allowed choices \[128, 132"):
        default.parse(str(arch))
    with pytest.raises(ValueError, match="260"):
        default.from_ofa_dict(arch.to_ofa_dict())


def _net_config_blocks(files: dict[str, str]) -> tuple[dict, list[dict]]:
    config = json.loads(files["net.config"])
    return config, [b["mobile_inverted_conv"] for b in config["blocks"]]


def test_published_archs_rebuild_the_published_net_configs_block_by_block() -> None:
    zoo = specialized_zoo()  # bundled: a missing archive fails here, never skips
    for s in published_mbv3_subnets():
        files = zoo[s["name"]]
        config, blocks = _net_config_blocks(files)
        assert json.loads(files["run.config"])["image_size"] == s["resolution"]
        model = _model("ofa_mbv3_w10" if s["width_mult"] == 1.0 else "ofa_mbv3_w12", resolutions=PUBLISHED_RESOLUTIONS)
        model.set_active_subnet(s["arch"])
        c = model.config
        assert config["first_conv"]["out_channels"] == c.stem_chs
        assert config["final_expand_layer"]["out_channels"] == c.final_chs
        assert config["feature_mix_layer"]["out_channels"] == c.head_chs
        ours = [blk for i, stage in enumerate(model.stages) for blk in stage[: s["arch"].d[i]]]
        assert len(blocks) == 1 + len(ours), s["name"]
        for theirs, blk in zip(blocks[1:], ours):
            assert (theirs["in_channels"], theirs["out_channels"]) == (blk.in_chs, blk.out_chs)
            assert (theirs["kernel_size"], theirs["stride"]) == (blk.active_kernel, blk.stride)
            assert theirs["mid_channels"] == blk.active_mid
            assert theirs["use_se"] == blk.use_se
            assert {"relu": "relu", "h_swish": "h_swish"}[theirs["act_func"]] == blk.act_name


def test_flops_budget_subnets_have_their_published_mflops() -> None:
    for s in published_mbv3_subnets("flops"):
        model = _model("ofa_mbv3_w12", resolutions=PUBLISHED_RESOLUTIONS)
        macs, _ = model.macs_params([s["arch"]])
        # OFA names them by MFLOPs (= MMACs) rounded to the unit, at their own resolution.
        assert round(macs[0] / 1e6) == pytest.approx(s["mflops"], abs=1), s["name"]


# ------------------------------------------------------------------------------ extraction
def test_extracted_subnet_is_a_timm_mobilenetv3_with_contiguous_weights() -> None:
    model = _model("ofa_mbv3_w10")
    arch = model.space.sample(np.random.default_rng(11))
    model.set_active_subnet(arch)
    sub = model.get_active_subnet()
    assert isinstance(sub, MobileNetV3)
    assert isinstance(sub.blocks[0][0], DepthwiseSeparableConv)
    assert [len(stage) for stage in sub.blocks[1:-1]] == list(arch.d)
    for s, stage in enumerate(sub.blocks[1:-1]):
        for blk in stage:
            assert isinstance(blk, InvertedResidual)
            assert isinstance(blk.se, SqueezeExcite) == model.config.se[s]
    assert all(p.is_contiguous() for p in sub.parameters())
    assert not any(p.data_ptr() == q.data_ptr() for p in sub.parameters() for q in model.parameters())


def test_in_chans_and_num_classes_are_constructor_arguments() -> None:
    tiny = create_supernet("ofa_mbv3_tiny")
    assert tiny(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    rgb = create_supernet("ofa_mbv3_tiny", in_chans=3, num_classes=5)
    rgb.set_min_net()
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert rgb.get_active_subnet().eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_invalid_block_choice_raises_naming_the_choices() -> None:
    blk = _model("ofa_mbv3_tiny").stages[0][0]
    with pytest.raises(ValueError, match=r"kernel size 9 .*\[3, 5, 7\]"):
        blk.set_active(9, 3)
    with pytest.raises(ValueError, match=r"expand ratio 2 .*\[3, 4, 6\]"):
        blk.set_active(3, 2)


def test_config_rejects_mismatched_stage_lists() -> None:
    with pytest.raises(ValueError, match="strides"):
        MobileNetV3Config(stem_chs=8, first_chs=8, stage_chs=(16, 24), final_chs=32, head_chs=64, strides=(2,),
                          acts=("relu", "relu"), se=(False, False))


# ------------------------------------------------------------------------- elastic mechanics
def _perturb_transforms(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "transform" in n:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def test_gradients_reach_the_kernel_transforms_a_kernel_uses_and_nothing_of_skipped_blocks() -> None:
    model = create_supernet("ofa_mbv3_tiny")
    _perturb_transforms(model, 0)
    space = model.space
    # Stage 0 runs 3 blocks with kernels 7, 5, 3 (expand 3, 4, 6); stage 1 runs 1 block; stage 2 runs 2.
    arch = space.arch(r=28, d=[3, 1, 2], ks=[7, 5, 3, 3, None, None, 5, 7, None], e=[3, 4, 6, 3, None, None, 4, 4, None])
    model.set_active_subnet(arch)
    model.train()
    out = model(torch.randn(8, 1, 28, 28))
    nn.functional.cross_entropy(out, torch.arange(8) % 10).backward()

    def grad(p: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(p) if p.grad is None else p.grad

    for blk, k in zip(model.stages[0], (7, 5, 3)):
        dw = blk.conv_dw
        g = grad(dw.weight)
        mid = blk.active_mid
        assert not g[mid:].any()
        a = (7 - max(k, 5)) // 2 if k < 7 else 0  # a 3x3 kernel reads the centre 5x5 through transform_5to3
        inner = g[:mid, :, a : 7 - a, a : 7 - a]
        assert inner.abs().sum() > 0
        ring = g.clone()
        ring[:, :, a : 7 - a, a : 7 - a] = 0
        assert not ring.any()
        assert grad(dw.transform_7to5).any() == (k < 7)
        assert grad(dw.transform_5to3).any() == (k < 5)
    for blk in (model.stages[1][1], model.stages[1][2], model.stages[2][2]):
        assert all(p.grad is None for p in blk.parameters())


@pytest.mark.parametrize("name", ["ofa_mbv3_tiny", "ofa_mbv3_w10"])
def test_one_node_weight_backward_equals_autograd_through_the_slicing(name: str, monkeypatch) -> None:
    """Training runs every block's slicing as one autograd node with a hand-written backward
    (``sliced_weights``); its gradients must be those autograd computes through the slicing ops themselves."""
    import supernets.ofa_mbv3 as ofa_mbv3

    model = create_supernet(name).double().train()
    _perturb_transforms(model, 1)
    space = model.space
    rng = np.random.default_rng(3)
    res = 28 if name == "ofa_mbv3_tiny" else 64  # any size runs; small keeps the float64 test quick
    x = torch.randn(3, model.conv_stem.in_channels, res, res, dtype=torch.float64)
    archs = [space.min_arch(), space.max_arch(), *(space.sample(rng) for _ in range(4 if name == "ofa_mbv3_tiny" else 2))]

    def grads(*run: Arch) -> dict[str, torch.Tensor | None]:
        """Gradients of one loss summed over forwards of the archs ``run`` (as the sandwich rule does)."""
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout masks both times
        loss = torch.zeros((), dtype=torch.float64)
        for arch in run:
            model.set_active_subnet(arch)
            out = model(x)
            loss = loss + (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum()
        loss.backward()
        return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}

    for run in [(arch,) for arch in archs] + [(archs[0], archs[2], archs[1])]:
        one_node = grads(*run)
        with monkeypatch.context() as m:
            m.setattr(ofa_mbv3, "sliced_weights", lambda blocks: [b.slice_weights()[0] for b in blocks])
            reference = grads(*run)
        assert one_node.keys() == reference.keys()
        for n, g in one_node.items():
            ref = reference[n]
            assert (g is None) == (ref is None), n
            if g is not None:
                torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-12, msg=lambda m, n=n: f"{n}: {m}")


def test_shared_bn_updates_only_the_active_channels_in_training() -> None:
    model = create_supernet("ofa_mbv3_tiny")
    model.set_min_net()
    blk = model.stages[0][0]
    before = blk.bn1.running_mean.clone()
    model.train()
    model(torch.randn(4, 1, 24, 24))
    mid = blk.active_mid
    assert mid < blk.bn1.num_features
    assert not torch.equal(blk.bn1.running_mean[:mid], before[:mid])
    assert torch.equal(blk.bn1.running_mean[mid:], before[mid:])


def test_sort_channels_keeps_the_max_net_and_orders_channels_by_importance() -> None:
    model = create_supernet("ofa_mbv3_tiny")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
            elif isinstance(m, nn.Conv2d) and m.bias is not None:  # the SE convs (zero at init: no test of them)
                m.bias.copy_(0.5 * torch.randn(m.out_channels, generator=g))
    model.eval()
    model.set_max_net()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        before = model(x)
        model.sort_channels()
        after = model(x)
    assert (before - after).abs().max() < 1e-5
    for stage in model.stages:
        for blk in stage:
            imp = blk.conv_pwl.weight.abs().sum(dim=(0, 2, 3))
            assert torch.all(imp[:-1] >= imp[1:])
            if blk.se is not None:
                se_imp = blk.se.conv_expand.weight.abs().sum(dim=(0, 2, 3))
                assert torch.all(se_imp[:-1] >= se_imp[1:])
    # A narrower subnet of the sorted supernet still extracts exactly.
    model.set_min_net()
    with torch.no_grad():
        assert (model(x) - model.get_active_subnet().eval()(x)).abs().max() < 1e-5


def test_sort_channels_in_a_later_expand_phase_keeps_the_channel_sets_of_larger_ratios() -> None:
    """OFA's second expand phase re-sorts only within the bands the expand ratios cut (expand_ratio_stage=1),
    so the channels the e=4 subnets trained in the first expand phase stay their first channels."""
    torch.manual_seed(2)
    model = create_supernet("ofa_mbv3_tiny")
    for blk in (model.stages[0][0], model.stages[1][0]):  # without and with SE
        edges = sorted({blk.mid_channels(e) for e in blk.expand_ratios}, reverse=True)  # e.g. [96, 64, 48]
        with torch.no_grad():
            blk.conv_pwl.weight.mul_(torch.rand(1, edges[0], 1, 1) * 2)  # distinct importances, many moves
            blk.bn1.running_mean.copy_(torch.arange(edges[0], dtype=torch.float32))  # follows the permutation
    model.sort_channels(expand_stage=1)
    for blk in (model.stages[0][0], model.stages[1][0]):
        edges = sorted({blk.mid_channels(e) for e in blk.expand_ratios}, reverse=True)
        moved = blk.bn1.running_mean.long()
        assert set(moved[: edges[1]].tolist()) == set(range(edges[1]))  # the e=4 set stays the first channels
        assert not torch.equal(moved, torch.arange(edges[0]))  # but it was re-sorted within its band
        importance = blk.conv_pwl.weight.abs().sum(dim=(0, 2, 3))
        for lo, hi in ((0, edges[1]), (edges[1], edges[0])):
            assert torch.all(importance[lo : hi - 1] >= importance[lo + 1 : hi])
        # A free sort would have moved channels across the band edge: the test would notice a dropped stage.
        full = importance.argsort(descending=True, stable=True)
        assert set(full[: edges[1]].tolist()) != set(range(edges[1]))


def test_space_of_ofa_supernets_is_the_default_mobilenetv3_space() -> None:
    # Archs built from the plain space (e.g. by predictors or the search) run on the w1.0 / w1.2 supernets.
    assert _model("ofa_mbv3_w10").space == MobileNetV3Space()
    assert _model("ofa_mbv3_w12").space == MobileNetV3Space()


def test_cached_eval_kernels_follow_in_place_weight_updates() -> None:
    model = create_supernet("ofa_mbv3_tiny").eval()
    model.set_min_net()  # kernel 3 everywhere: transformed (and cached in no-grad eval)
    x = torch.randn(2, 1, 24, 24)
    with torch.no_grad():
        first = model(x)
        assert torch.equal(model(x), first)
        for blk in model.stages[0]:
            blk.conv_dw.transform_5to3.mul_(0.5)  # what an optimizer step does: an in-place update
        changed = model(x)
        assert not torch.allclose(changed, first)
        assert (changed - model.get_active_subnet().eval()(x)).abs().max() < 1e-5
