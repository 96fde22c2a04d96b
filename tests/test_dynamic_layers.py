"""Elastic primitives: the one-node weight slice used in training and its reused gradient buffer."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch

import supernets.layers.dynamic as dynamic
import supernets.ofa_resnet as ofa_resnet
from supernets import create_supernet
from supernets.layers.dynamic import DynamicBatchNorm2d, DynamicConv2d, prefix, trainable_prefix
from supernets.layers.resnet import ConvBnUnit


@pytest.mark.parametrize("channels_last", [False, True])
def test_trainable_prefix_gradient_equals_narrow_gradient_and_keeps_the_weight_layout(channels_last: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 5, 3, 3, dtype=torch.float64, generator=gen)
    if channels_last:
        w = w.to(memory_format=torch.channels_last)
    w.requires_grad_()
    seed = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen)
    cut = trainable_prefix(w, 4, 3)
    # dense in the weight's memory format, so the convolution need not copy it in forward and backward
    assert cut.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    (got,) = torch.autograd.grad(cut.mul(seed).sum(), w)
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
    # the reference: autograd through the slicing ops themselves (what the one-node slicing replaces)
    monkeypatch.setattr(dynamic, "trainable_prefix", lambda t, *sizes, reuse=None: prefix(t, *sizes))
    monkeypatch.setattr(ofa_resnet, "sliced_weights",
                        lambda units: [u.slice_for_training(u.elastic_parameters())[0] for u in units])
    want = grads()
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-12, atol=1e-12, msg=name)


def test_sliced_weights_names_a_unit_that_returns_more_weights_than_it_declares() -> None:
    conv, bn = DynamicConv2d(4, 6), DynamicBatchNorm2d(6)
    conv.active_out_channels = 3
    unit = ConvBnUnit(conv, bn)
    assert [w.shape[0] for w in dynamic.sliced_weights([unit])[0]] == [3, 3, 3]
    unit.num_weights = 2  # the outputs would be split wrongly between units
    with pytest.raises(RuntimeError, match="ConvBnUnit sliced 3 weights, not its num_weights=2"):
        dynamic.sliced_weights([unit])


def _conv_grad(conv: DynamicConv2d, out_channels: int, in_channels: int, seed: int) -> torch.Tensor:
    """The weight gradient of one backward at the given widths, the way autograd slicing computes it."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, in_channels, 5, 5, dtype=conv.weight.dtype, generator=gen)
    y = torch.randn(2, out_channels, 5, 5, dtype=conv.weight.dtype, generator=gen)
    conv.active_out_channels = out_channels
    conv(x).mul(y).sum().backward()
    w = conv.weight.detach().requires_grad_()
    (want,) = torch.autograd.grad(torch.nn.functional.conv2d(x, prefix(w, out_channels, in_channels),
                                                             padding=1).mul(y).sum(), w)
    return want


@pytest.fixture
def conv() -> DynamicConv2d:
    torch.manual_seed(0)
    return DynamicConv2d(6, 8, 3).double().to(memory_format=torch.channels_last)


def test_gradient_buffer_is_reused_across_steps_and_stays_exact_as_widths_grow_and_shrink(conv: DynamicConv2d) -> None:
    ptrs = set()
    for step, (out_c, in_c) in enumerate([(4, 3), (8, 5), (2, 6), (4, 3), (8, 6), (3, 2)]):
        conv.zero_grad(set_to_none=True)
        want = _conv_grad(conv, out_c, in_c, step)
        assert torch.equal(conv.weight.grad, want), f"step {step}: widths {out_c}x{in_c}"
        assert conv.weight.grad.stride() == conv.weight.stride()
        if (out_c, in_c) != (8, 6):  # the whole weight is not cut: its gradient is the convolution's own
            ptrs.add(conv.weight.grad.data_ptr())
    assert len(ptrs) == 1  # every cut step wrote into the same tensor


def test_gradient_buffer_accumulates_like_autograd_when_gradients_are_not_zeroed(conv: DynamicConv2d) -> None:
    conv.zero_grad(set_to_none=True)
    want = _conv_grad(conv, 4, 3, 0) + _conv_grad(conv, 2, 5, 1) + _conv_grad(conv, 4, 3, 2)
    torch.testing.assert_close(conv.weight.grad, want, rtol=1e-12, atol=1e-12)
    conv.zero_grad(set_to_none=True)  # the buffer was changed in place by the accumulation: not trusted again
    assert torch.equal(_conv_grad(conv, 2, 2, 3), conv.weight.grad)


def test_gradient_buffer_never_overwrites_a_gradient_someone_still_holds(conv: DynamicConv2d) -> None:
    conv.zero_grad(set_to_none=True)
    _conv_grad(conv, 4, 3, 0)
    kept = conv.weight.grad.detach()  # another tensor on the same memory, e.g. logged gradients
    snapshot = kept.clone()
    conv.zero_grad(set_to_none=True)
    assert torch.equal(_conv_grad(conv, 2, 5, 1), conv.weight.grad)
    assert torch.equal(kept, snapshot)
    assert conv.weight.grad.data_ptr() != kept.data_ptr()


def test_gradient_buffer_is_not_trusted_after_an_in_place_change(conv: DynamicConv2d) -> None:
    conv.zero_grad(set_to_none=True)
    _conv_grad(conv, 4, 3, 0)
    conv.weight.grad.fill_(1.0)  # e.g. a hook or a clipping step writing the whole gradient
    conv.zero_grad(set_to_none=True)
    assert torch.equal(_conv_grad(conv, 4, 3, 1), conv.weight.grad)


def test_gradient_buffer_follows_a_change_of_dtype_and_memory_format(conv: DynamicConv2d) -> None:
    conv.zero_grad(set_to_none=True)
    _conv_grad(conv, 4, 3, 0)
    conv.float().to(memory_format=torch.contiguous_format)
    conv.zero_grad(set_to_none=True)
    want = _conv_grad(conv, 2, 5, 1)
    assert conv.weight.grad.dtype == torch.float32 and conv.weight.grad.is_contiguous()
    torch.testing.assert_close(conv.weight.grad, want)
    # the buffer itself was replaced (autograd would otherwise cast and re-lay out every step's gradient)
    assert conv.weight.grad.data_ptr() == conv.grad_buffer._tensor.data_ptr()


def test_copied_and_pickled_layers_get_their_own_gradient_buffers(conv: DynamicConv2d) -> None:
    conv.zero_grad(set_to_none=True)
    _conv_grad(conv, 4, 3, 0)
    for twin in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
        assert twin.grad_buffer is not conv.grad_buffer
        twin.zero_grad(set_to_none=True)
        assert torch.equal(_conv_grad(twin, 2, 5, 1), twin.weight.grad)
