"""Behaviour every registered supernet keeps (parametrised over the registry, so a new family is
tested the moment it registers): extraction equals the supernet, gradients reach exactly the weights
the active subnet uses, and the space counts its archs in closed form."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
import torch
from torch import nn

from supernets import MobileNetV3Space, ResNetSpace, Supernet, count_params, create_supernet, list_supernets
from supernets.bn import recalibrate_bn
from supernets.space import Arch
from supernets.timm_space import TimmSpace
from supernets.vit_space import VitSpace

# AutoFormer's ImageNet ViTs (23-80 M weights) take minutes in these per-element tests on 2 cores; their exact
# counts and extraction are tested on the meta device and at small scale in tests/test_vit.py.
NAMES = [n for n in list_supernets() if not n.startswith("autoformer_")]
FULL_SIZE_PX = 32  # full-size supernets run at a small input to keep the suite fast


def _is_tiny(name: str) -> bool:
    return "tiny" in name


@cache
def _pristine(name: str) -> Supernet:
    """A shared, never-modified instance for read-only tests."""
    return _fresh(name)


def _fresh(name: str) -> Supernet:
    torch.manual_seed(0)
    return create_supernet(name)


def _in_chans(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


def _input(model: Supernet, name: str, batch: int, seed: int = 0) -> torch.Tensor:
    size = min(model.space.columns[model.space.group_slices["r"].start].choices) if _is_tiny(name) else FULL_SIZE_PX
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, _in_chans(model), size, size, generator=g)


def _archs(model: Supernet, name: str, seed: int) -> list[Arch]:
    n = 20 if _is_tiny(name) else 1
    return [model.space.max_arch(), model.space.min_arch(), *model.space.sample(np.random.default_rng(seed), n)]


@torch.no_grad()
def _randomise_bn_and_transforms(model: nn.Module, seed: int) -> None:
    """Make BN statistics/affines and kernel transforms non-trivial, so slicing or transform mistakes show."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.copy_(0.1 * torch.randn(n, generator=g))
    for pname, p in model.named_parameters():
        if "transform" in pname:
            p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("name", NAMES)
def test_extracted_subnet_output_equals_supernet_output_in_eval(name: str) -> None:
    model = _fresh(name)
    _randomise_bn_and_transforms(model, seed=1)
    model.eval()
    x = _input(model, name, batch=2)
    for arch in _archs(model, name, seed=2):
        model.set_active_subnet(arch)
        sub = model.get_active_subnet().eval()
        with torch.no_grad():
            expected, got = model(x), sub(x)
        assert got.shape == expected.shape
        diff = (expected - got).abs().max().item()
        assert diff < 1e-5, f"{name} {arch}: max abs diff {diff}"
        assert model.active_arch == arch


def test_inference_cache_follows_arch_weight_statistic_and_dtype_changes() -> None:
    """The eval-mode fast path caches sliced weights; every way a weight can change must reach the output."""
    model = _fresh("ofa_mbv3_tiny")
    _randomise_bn_and_transforms(model, seed=3)
    model.eval()
    x = _input(model, "ofa_mbv3_tiny", batch=2)
    small, large = model.space.min_arch(), model.space.sample(np.random.default_rng(4), 1)[0]

    def check() -> None:
        with torch.no_grad():
            got = model(x)
        with torch.enable_grad():  # the uncached autograd path
            ref = model(x).detach()
        expected = model.get_active_subnet().eval()(x.to(got.dtype)).detach()
        assert (got - ref).abs().max().item() < 1e-5 and (got - expected).abs().max().item() < 1e-5

    model.set_active_subnet(small)
    check()
    model.set_active_subnet(large)
    check()
    model.set_active_subnet(small)  # kernel 3 and the narrowest width: the cache holds computed copies
    blk = model._active_blocks[0]
    for t in (blk.conv_pwl.weight, blk.bn1.running_var, getattr(blk.conv_dw, blk.conv_dw._transform_names[-1])):
        with torch.no_grad():
            t.add_(0.1)  # in place
        check()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["stages.0.0.conv_pwl.weight"].mul_(-1)
    model.load_state_dict(state)
    check()
    model.load_state_dict({k: v * 1.1 if v.is_floating_point() else v for k, v in state.items()}, assign=True)
    check()
    model.double()
    x = x.double()
    check()
    sub = model.get_active_subnet()
    recalibrate_bn(model, [x], n_batches=1)  # the block in eval mode, its BNs in train mode, no grad
    recalibrate_bn(sub, [x], n_batches=1)
    with torch.no_grad():
        assert (model(x) - sub(x)).abs().max().item() < 1e-5
    check()


@pytest.mark.parametrize("name", [n for n in NAMES if _is_tiny(n)])
def test_eval_after_training_with_a_fused_optimizer_uses_the_new_weights(name: str) -> None:
    """Fused optimizers update parameters without bumping their version counters, which the eval caches
    key on; going back to eval mode must still drop every cached weight."""
    torch.manual_seed(0)
    model = _fresh(name)
    model.set_active_subnet(model.space.min_arch())
    x = _input(model, name, batch=4)
    y = torch.arange(4) % 10
    model.eval()
    with torch.no_grad():
        model(x)  # fills the inference caches
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        got = model(x)
        expected = model.get_active_subnet().eval()(x)
    assert (got - expected).abs().max().item() < 1e-5


def test_recalibrate_bn_on_bad_input_raises_and_keeps_the_statistics() -> None:
    model = _fresh("ofa_mbv3_tiny")
    _randomise_bn_and_transforms(model, seed=5)
    model.set_active_subnet(model.space.min_arch())
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    x = _input(model, "ofa_mbv3_tiny", batch=2)
    bad = torch.randn(2, 3, 9, 9)  # the wrong number of input channels: the forward pass fails
    with pytest.raises(ValueError, match=r"n_batches >= 1.*got 0"):
        recalibrate_bn(model, [x], n_batches=0)
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(model, [], n_batches=2)
    with pytest.raises(RuntimeError):
        recalibrate_bn(model, [x, bad], n_batches=2)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in stats.items())
    assert recalibrate_bn(model, [x, x], n_batches=5) == 2
    assert not torch.equal(model.state_dict()[next(k for k in stats if "running_mean" in k)],
                           stats[next(k for k in stats if "running_mean" in k)])


@pytest.mark.parametrize("name", [n for n in NAMES if _is_tiny(n)])
def test_extracted_subnet_follows_the_supernet_dtype(name: str) -> None:
    model = _fresh(name).double().eval()
    model.set_active_subnet(model.space.sample(np.random.default_rng(6), 1)[0])
    sub = model.get_active_subnet()
    assert {p.dtype for p in sub.parameters()} == {torch.float64}
    x = _input(model, name, batch=2).double()
    with torch.no_grad():
        assert (model(x) - sub(x)).abs().max().item() < 1e-10


@torch.no_grad()
def _used_elements(model: Supernet) -> dict[str, torch.Tensor]:
    """Which elements of each (non-transform) parameter the extracted subnet copies, found by tagging
    elements with distinct integer ids (exact in float32 below 2**24) and looking them up in the subnet.
    Kernel-transform matrices stay identity, so cropped kernels carry their ids unchanged."""
    params = {n: p for n, p in model.named_parameters() if "transform" not in n}
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        if "transform" in n:
            p.copy_(torch.eye(p.shape[0]))
    used: dict[str, torch.Tensor] = {}
    try:
        names = list(params)
        limit = 2**24 - 1
        while names:
            group, total = [], 0
            while names and (not group or total + params[names[0]].numel() <= limit):
                total += params[names[0]].numel()
                group.append(names.pop(0))
            for p in params.values():
                p.zero_()
            offsets, offset = {}, 1
            for n in group:
                p = params[n]
                p.copy_(torch.arange(offset, offset + p.numel(), dtype=torch.float64).reshape(p.shape).to(p.dtype))
                offsets[n] = offset
                offset += p.numel()
            sub = model.get_active_subnet()
            ids = torch.cat([q.detach().reshape(-1) for q in sub.parameters()]).double().numpy()
            ids = ids[(ids >= 1) & (ids < offset) & (ids == np.round(ids))].astype(np.int64)
            present = np.zeros(offset, dtype=bool)
            present[ids] = True  # an id in the subnet marks that supernet element as used
            for n in group:
                start = offsets[n]
                used[n] = torch.from_numpy(present[start : start + params[n].numel()].copy()).reshape(params[n].shape)
    finally:
        for n, p in model.named_parameters():
            p.copy_(saved[n])
    return used


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_exactly_the_weights_of_the_active_subnet(name: str) -> None:
    # Kernel transforms stay at their identity init here, where a kernel of size k depends exactly on its
    # centre k×k; with trained transforms it depends on the larger crops too (tests/test_ofa_mbv3.py).
    model = _fresh(name)
    rng = np.random.default_rng(3)
    archs = [model.space.sample(rng)] + ([model.space.sample(rng), model.space.min_arch()] if _is_tiny(name) else [])
    for arch in archs:
        model.set_active_subnet(arch)
        used = _used_elements(model)
        model.train()
        model.zero_grad(set_to_none=True)
        x = _input(model, name, batch=4, seed=4)
        out = model(x)
        target = torch.randint(0, out.shape[1], (x.shape[0],), generator=torch.Generator().manual_seed(5))
        nn.functional.cross_entropy(out, target).backward()
        n_used = 0
        for pname, p in model.named_parameters():
            if "transform" in pname:
                continue  # family-specific (tests/test_ofa_mbv3.py)
            grad = torch.zeros_like(p) if p.grad is None else p.grad
            mask = used[pname]
            assert not grad[~mask].any(), f"{name} {arch}: unused elements of {pname} got gradient"
            if mask.any():
                n_used += int(mask.sum())
                assert grad[mask].abs().sum() > 0, f"{name} {arch}: used parameter {pname} got no gradient"
        # Every parameter of the static subnet is a distinct element of the supernet.
        assert n_used == count_params(model.get_active_subnet())


def _closed_form_count(space) -> int:
    """Number of archs per resolution from the family's definition (independent of ``space.count``)."""
    if isinstance(space, MobileNetV3Space):
        per_block = len(space.kernel_sizes) * len(space.expand_ratios)
        return sum(per_block**d for d in space.depths) ** space.n_stages
    if isinstance(space, ResNetSpace):
        ne = len(space.expand_ratios)
        stages = math.prod(sum(ne ** (b + d) for d in space.depths) for b in space.base_depths)
        return 2 * len(space.width_mults) ** (len(space.base_depths) + 2) * stages
    if isinstance(space, TimmSpace):
        total, slot = 1, 0
        for s, n in enumerate(space.stage_blocks):
            per = [len(space.kernel_choices(slot + j)) * len(space.expand_choices(slot + j)) for j in range(n)]
            total *= sum(math.prod(per[:d]) for d in range(space.min_depths[s], n + 1))
            slot += n
        return total
    if isinstance(space, VitSpace):  # one embed dim; per layer (heads x MLP ratios) for each depth
        return len(space.embed_dims) * sum((len(space.num_heads) * len(space.mlp_ratios)) ** d for d in space.depths)
    raise AssertionError(f"no closed form known for {type(space).__name__}; add one here")


KNOWN_COUNTS = {
    "ofa_mbv3_w10": 7371**5,  # (9^2 + 9^3 + 9^4)^5, the OFA paper's ~2e19
    "ofa_mbv3_w12": 7371**5,
    "ofa_resnet50": 2 * 3**6 * (3**2 + 3**3 + 3**4) ** 3 * (3**4 + 3**5 + 3**6),
}


@pytest.mark.parametrize("name", NAMES)
def test_count_matches_closed_form(name: str) -> None:
    space = _pristine(name).space
    assert space.count() == _closed_form_count(space)
    if name in KNOWN_COUNTS:
        assert space.count() == KNOWN_COUNTS[name]
    n_res = len(space.columns[space.group_slices["r"].start].choices)
    assert space.count_with_resolutions() == space.count() * n_res


@pytest.mark.parametrize("name", NAMES)
def test_supernet_rejects_arch_of_another_space(name: str) -> None:
    model = _pristine(name)
    other = MobileNetV3Space(name="other", resolutions=(7,))
    with pytest.raises(ValueError, match="expects an Arch of space"):
        model.set_active_subnet(other.max_arch())


def test_every_supernet_checkpoint_names_its_supernet_and_a_wrong_one_fails_naming_both(tmp_path) -> None:
    mbv3, resnet = _fresh("ofa_mbv3_tiny"), _fresh("ofa_resnet_tiny")
    torch.save(mbv3.state_dict(), tmp_path / "mbv3.pt")
    state = torch.load(tmp_path / "mbv3.pt", weights_only=True)
    same = create_supernet("ofa_mbv3_tiny")
    same.load_state_dict(state)
    assert same.loaded_from == "ofa_mbv3_tiny"
    with pytest.raises(ValueError, match=r"supernet 'ofa_mbv3_tiny' does not fit supernet 'ofa_resnet_tiny'"):
        resnet.load_state_dict(state)
    legacy = {k: v for k, v in state.items() if k != "_extra_state"}  # saved before names were recorded
    create_supernet("ofa_mbv3_tiny").load_state_dict(legacy)


def test_recalibrate_bn_averages_the_batches_with_dropout_off() -> None:
    """The statistics are the cumulative average over the first ``n_batches`` batches, estimated with dropout (and
    drop-path) off: only the BatchNorms run in train mode, as OFA's ``set_running_statistics`` does."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(4))
    xs = [torch.randn(8, 4) * 3 + 1 for _ in range(3)]
    assert recalibrate_bn(net, [(x, None) for x in xs], n_batches=2, transform=lambda x: x * 2) == 2
    bn = net[1]
    torch.testing.assert_close(bn.running_mean, torch.stack([(2 * x).mean(0) for x in xs[:2]]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([(2 * x).var(0) for x in xs[:2]]).mean(0))
    assert not net.training and not bn.training and bn.momentum == 0.1
    ln = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)).train()
    assert recalibrate_bn(ln, xs, n_batches=2) == 0 and not ln.training  # no BatchNorm: nothing to estimate
