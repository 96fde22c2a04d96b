"""Elastic primitives shared by the supernet families: layers that run a prefix of their channels
(and, for depthwise convolutions, a centre-cropped, learned-transformed kernel) as OFA does.

Each layer holds the weights of its largest configuration; ``active_*`` attributes choose what runs.
Slices are views, so gradients reach exactly the weights the active subnet uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = [
    "DynamicBatchNorm2d",
    "DynamicConv2d",
    "DynamicDepthwiseConv2d",
    "DynamicLinear",
    "dense_slice",
    "prefix",
    "same_padding",
    "trainable_prefix",
]


def prefix(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    """The leading ``sizes[i]`` entries of dim ``i`` of ``t``, as a view.

    Dims already at full size are not sliced: a slice, even a full one, puts a ``SliceBackward`` in the
    graph that allocates a zero tensor of the whole weight and copies the gradient into it. For the
    largest subnet that is pure overhead on every step.
    """
    for dim, n in enumerate(sizes):
        if n != t.shape[dim]:
            t = t.narrow(dim, 0, n)
    return t


def trainable_prefix(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    """:func:`prefix`, recorded for autograd as one node whose backward writes the whole gradient once, in
    ``t``'s own memory layout.

    Autograd's own backward of a narrow allocates a zero tensor of the input's size for every narrowed dim
    (two whole-weight fills and copies for a conv weight cut along both channel dims), in the contiguous
    layout; for a channels_last weight, gradient accumulation then copies it once more into the weight's
    layout. On OFA-ResNet50's mid subnet (2 threads, batch 32, 128 px) that cost 543.8 → 525.8 ms a training
    step, against 516.9 ms for the extracted static subnet (same process, interleaved medians).
    """
    if not (t.requires_grad and torch.is_grad_enabled()) or all(n == t.shape[d] for d, n in enumerate(sizes)):
        return prefix(t, *sizes)
    return _TrainablePrefix.apply(t, *sizes)


class _TrainablePrefix(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: torch.Tensor, *sizes: int) -> torch.Tensor:  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.sizes, ctx.shape, ctx.stride = sizes, t.shape, t.stride()
        return prefix(t, *sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        if grad is None:
            return (None,) * (1 + len(ctx.sizes))
        # The parameter's strides, so gradient accumulation can take this tensor as it is.
        whole = torch.empty_strided(ctx.shape, ctx.stride, dtype=grad.dtype, device=grad.device).zero_()
        prefix(whole, *ctx.sizes).copy_(grad)
        return (whole, *(None,) * len(ctx.sizes))


def same_padding(kernel_size: int) -> int:
    return kernel_size // 2


class DynamicConv2d(nn.Conv2d):
    """Dense convolution running ``weight[:active_out_channels, :in]`` (in channels follow the input)."""

    _eval_weight: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # see _contiguous_cached

    def __init__(self, max_in_channels: int, max_out_channels: int, kernel_size: int = 1, stride: int = 1,
                 bias: bool = False) -> None:
        super().__init__(max_in_channels, max_out_channels, kernel_size, stride=stride,
                         padding=same_padding(kernel_size), bias=bias)
        self.active_out_channels = max_out_channels

    def active_weight(self, in_channels: int) -> torch.Tensor:
        return trainable_prefix(self.weight, self.active_out_channels, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.active_weight(x.shape[1])
        if not torch.is_grad_enabled():
            w = _contiguous_cached(self, w)
        b = prefix(self.bias, self.active_out_channels) if self.bias is not None else None
        return F.conv2d(x, w, b, self.stride, self.padding)


class DynamicDepthwiseConv2d(nn.Module):
    """Depthwise convolution with elastic channels and elastic kernel size.

    A kernel smaller than the largest is the centre crop of the next larger one passed through a learned
    ``k²×k²`` transformation matrix (OFA's elastic kernel, initialised to identity), chained 7→5→3.
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int = 1) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.max_kernel = self.kernel_sizes[-1]
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        for src, dst in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1]):
            self.register_parameter(f"transform_{src}to{dst}", nn.Parameter(torch.eye(dst * dst)))
        self.active_kernel = self.max_kernel

    def active_weight(self, channels: int, kernel_size: int | None = None) -> torch.Tensor:
        k = kernel_size or self.active_kernel
        w = prefix(self.weight, channels)
        for src, dst in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1]):
            if src <= k:
                break
            a = (src - dst) // 2
            crop = w[:, :, a : a + dst, a : a + dst].reshape(channels, dst * dst)
            w = F.linear(crop, getattr(self, f"transform_{src}to{dst}")).reshape(channels, 1, dst, dst)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = self.active_weight(c)
        return F.conv2d(x, w, None, self.stride, same_padding(w.shape[-1]), 1, c)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose statistics and affine parameters are shared across widths: a subnet with ``c``
    channels uses (and, in training, updates) the first ``c`` entries."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        return self.forward_affine(x, prefix(self.weight, c), prefix(self.bias, c))

    def forward_affine(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Normalise the ``c = x.shape[1]`` channels with the given affine parameters (already the first ``c``
        entries, e.g. sliced by :class:`~supernets.layers.mbconv.ElasticMBConv`), using and updating the
        statistics as :meth:`forward` does."""
        c = x.shape[1]
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        else:
            factor = 0.0
        use_batch_stats = self.training or self.running_mean is None
        stats = not self.training or self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if stats else None,
            self.running_var[:c] if stats else None,
            weight,
            bias,
            use_batch_stats,
            factor,
            self.eps,
        )


class DynamicLinear(nn.Linear):
    """Linear layer reading the first ``in_features`` of its weight (input width follows the input)."""

    _eval_weight: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # see _contiguous_cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = trainable_prefix(self.weight, self.out_features, x.shape[-1])
        if not torch.is_grad_enabled():
            w = _contiguous_cached(self, w)
        return F.linear(x, w, self.bias)


def _contiguous_cached(layer: DynamicConv2d | DynamicLinear, w: torch.Tensor) -> torch.Tensor:
    """In no-grad use, a contiguous copy of ``w`` (a slice of ``layer.weight``), kept until the slice or the
    weight changes (in place: its version; by ``.to()`` or ``load_state_dict(assign=True)``: its storage).

    A slice along the input dim is strided, and the conv/matmul kernels copy it to a dense buffer on every
    call. At batch 1 and 128 px, OFA-ResNet50's min/mid subnets took 1.19/1.21x the extracted static subnet's
    time (``scripts/bench_elastic.py``); with this cache alone, 1.12/1.09x in a plain interleaved timing loop
    (the bottlenecks' own cache does the rest). A slice that is the whole weight is used as it is.
    """
    weight = layer.weight
    if w is weight:
        return w
    key = (tuple(w.shape), weight._version, weight.data_ptr())
    cached = layer._eval_weight
    # The cache also holds the weight itself, so its memory cannot be freed and reused by another tensor
    # whose address and version would match.
    if cached is None or cached[0] != key or cached[1] is not weight:
        cached = layer._eval_weight = (key, weight, dense_slice(w, weight))
    return cached[2]


def dense_slice(w: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``w``, a slice of ``weight``, in ``weight``'s memory format (channels_last stays)."""
    fmt = torch.channels_last if w.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
    return w.contiguous(memory_format=fmt)
