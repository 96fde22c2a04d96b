"""Elastic primitives: the one-node weight slice used in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import supernets.layers.dynamic as dynamic
from supernets import create_supernet
from supernets.layers.dynamic import prefix, trainable_prefix


@pytest.mark.parametrize("channels_last", [False, True])
def test_trainable_prefix_gradient_equals_narrow_gradient_and_keeps_the_weight_layout(channels_last: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 5, 3, 3, dtype=torch.float64, generator=gen)
    if channels_last:
        w = w.to(memory_format=torch.channels_last)
    w.requires_grad_()
    seed = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen)
    (got,) = torch.autograd.grad(trainable_prefix(w, 4, 3).mul(seed).sum(), w)
    (want,) = torch.autograd.grad(prefix(w, 4, 3).mul(seed).sum(), w)
    assert torch.equal(got, want)
    # What gradient accumulation can keep as it is (autograd's narrow gives a contiguous one it must copy).
    assert got.stride() == w.stride()


def test_trainable_prefix_adds_no_node_when_nothing_is_cut_or_nothing_needs_a_gradient() -> None:
    w = torch.randn(4, 3, requires_grad=True)
    assert trainable_prefix(w, 4, 3) is w
    with torch.no_grad():
        assert trainable_prefix(w, 2, 3).grad_fn is None
    assert trainable_prefix(w.detach(), 2, 3).grad_fn is None
    assert type(trainable_prefix(w, 2, 3).grad_fn).__name__ == "_TrainablePrefixBackward"


def test_resnet_training_gradients_equal_those_of_autograd_slicing(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = create_supernet("ofa_resnet_tiny").double().to(memory_format=torch.channels_last).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, model.in_chans, 28, 28, dtype=torch.float64, generator=gen)
    archs = [model.space.min_arch(28), *model.space.sample(np.random.default_rng(0), 2)]

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        loss = torch.zeros((), dtype=torch.float64)
        for arch in archs:  # one loss over several archs, as the sandwich rule trains
            model.set_active_subnet(arch)
            loss = loss + model(x).square().mean()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    state = {k: v.clone() for k, v in model.state_dict().items()}  # BN statistics move in train mode
    got = grads()
    model.load_state_dict(state)
    monkeypatch.setattr(dynamic, "trainable_prefix", prefix)
    want = grads()
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-12, atol=1e-12, msg=name)
