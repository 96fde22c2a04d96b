"""Elastic primitives shared by the supernet families: layers that run a prefix of their channels
(and, for depthwise convolutions, a centre-cropped, learned-transformed kernel) as OFA does.

Each layer holds the weights of its largest configuration; ``active_*`` attributes choose what runs.
Slices are views, so gradients reach exactly the weights the active subnet uses.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = [
    "DynamicBatchNorm2d",
    "DynamicConv2d",
    "DynamicDepthwiseConv2d",
    "DynamicLinear",
    "GradientBuffer",
    "SlicedUnit",
    "conv_prefix",
    "dense_slice",
    "prefix",
    "same_padding",
    "sliced_weights",
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


def conv_prefix(t: torch.Tensor, *sizes: int) -> torch.Tensor:
    """:func:`prefix` for training, with a conv weight's cut made dense (in the weight's memory format).

    A conv weight cut along its input channels is strided, and the convolution would copy it dense in forward and
    again in backward; one copy here serves both (OFA-ResNet50 mid subnet, 1 thread: 989.1 → 980.6 ms a training
    step, static subnet 957.8 ms). Linear layers read strided weights as they are.
    """
    w = prefix(t, *sizes)
    return dense_slice(w, t) if t.dim() == 4 and w is not t else w


def trainable_prefix(t: torch.Tensor, *sizes: int, reuse: GradientBuffer | None = None) -> torch.Tensor:
    """:func:`prefix`, recorded for autograd as one node whose backward writes the whole gradient once, in
    ``t``'s own memory layout, into ``reuse``'s tensor when it is free (see :class:`GradientBuffer`).

    Autograd's own backward of a narrow allocates a zero tensor of the input's size for every narrowed dim
    (two whole-weight fills and copies for a conv weight cut along both channel dims), in the contiguous
    layout; for a channels_last weight, gradient accumulation then copies it once more into the weight's
    layout. On OFA-ResNet50's mid subnet (2 threads, batch 32, 128 px) that cost 543.8 → 525.8 ms a training
    step, against 516.9 ms for the extracted static subnet (same process, interleaved medians).
    """
    if not (t.requires_grad and torch.is_grad_enabled()) or all(n == t.shape[d] for d, n in enumerate(sizes)):
        return prefix(t, *sizes)
    return _TrainablePrefix.apply(t, reuse, *sizes)


class _TrainablePrefix(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: torch.Tensor, reuse: GradientBuffer | None, *sizes: int) -> torch.Tensor:  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.sizes, ctx.shape, ctx.stride, ctx.reuse = sizes, t.shape, t.stride(), reuse
        return conv_prefix(t, *sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        none = (None,) * (1 + len(ctx.sizes))
        if grad is None:
            return (None, *none)
        if ctx.reuse is not None:
            return (ctx.reuse.scatter(grad, ctx.sizes, ctx.shape, ctx.stride), *none)
        return (_zeros_with(grad, ctx.sizes, ctx.shape, ctx.stride), *none)


def _zeros_with(grad: torch.Tensor, sizes: tuple[int, ...], shape: torch.Size, stride: tuple[int, ...]
                ) -> torch.Tensor:
    """A zero tensor of ``shape`` and ``stride`` (the weight's, so gradient accumulation can keep it as it is)
    holding ``grad`` in its leading ``sizes``."""
    whole = torch.empty_strided(shape, stride, dtype=grad.dtype, device=grad.device).zero_()
    prefix(whole, *sizes).copy_(grad)
    return whole


# How many references a storage has when nothing but its owner's tensor and storage handle hold it. Private,
# as torch's own CUDA graph trees use it before reusing an output's memory; without it, nothing is reused.
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)


class GradientBuffer:
    """A weight's whole-size gradient tensor, reused from one step to the next by :func:`trainable_prefix` and by
    OFA-ResNet's one-node slicing (``ConvBnUnit``).

    The gradient of a sliced weight is zero outside the slice. Allocating and zero-filling the whole weight's
    gradient anew on every step cost OFA-ResNet50 about a third of its training-step overhead over the extracted
    static subnet: ``scripts/bench_elastic.py supernet=ofa_resnet50`` (2 threads, medians of 3 processes)
    printed min/mid ratios of 1.048/1.054 without reuse and 1.032/1.038 with it.
    When the last gradient handed out is no longer used by any tensor (``zero_grad(set_to_none=True)``
    dropped it and nothing else shares its memory) and nothing changed it in place, the next backward zeroes
    only the slice written last and writes the new one. Otherwise (gradients still accumulating, a reference
    kept, another dtype or layout) it starts a fresh tensor, as autograd would. Between steps it keeps one
    whole-size gradient per sliced weight alive, as ``zero_grad(set_to_none=False)`` would.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # two backward passes may run at once on different threads
        self._tensor: torch.Tensor | None = None
        self._storage: torch.UntypedStorage | None = None
        self._idle_refs = 0
        self._version = 0
        self._written: tuple[int, ...] = ()

    def scatter(self, grad: torch.Tensor, sizes: tuple[int, ...], shape: torch.Size, stride: tuple[int, ...]
                ) -> torch.Tensor:
        """The whole gradient: ``grad`` in the leading ``sizes`` of a ``shape``/``stride`` tensor, zero elsewhere."""
        with self._lock:
            t = self._tensor
            if t is None or not self._idle(grad, shape, stride):
                t = _zeros_with(grad, sizes, shape, stride)
                if _storage_use_count is not None:
                    self._tensor, self._storage = t, t.untyped_storage()
                    self._idle_refs = _storage_use_count(self._storage._cdata)
            else:
                if self._written != sizes:
                    prefix(t, *self._written).zero_()
                prefix(t, *sizes).copy_(grad)
            self._written, self._version = sizes, t._version
            # Handed out as an alias: gradient accumulation keeps it as the weight's .grad, and while it (or
            # any view of it) lives, the storage's reference count says the tensor is in use.
            return t.view_as(t)

    def _idle(self, grad: torch.Tensor, shape: torch.Size, stride: tuple[int, ...]) -> bool:
        t, storage = self._tensor, self._storage
        assert t is not None and storage is not None and _storage_use_count is not None
        return (t._version == self._version and _storage_use_count(storage._cdata) == self._idle_refs
                and t.shape == shape and t.stride() == stride and t.dtype == grad.dtype and t.device == grad.device)

    def __deepcopy__(self, memo: dict) -> GradientBuffer:
        return GradientBuffer()  # a copied layer starts its own; its gradients are not this one's

    def __getstate__(self) -> dict:
        return {}  # nothing worth saving, and the lock cannot be pickled

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]


class SlicedUnit(Protocol):
    """A layer or block whose training forward reads slices of its parameters, prepared for it by
    :func:`sliced_weights` (OFA-MobileNetV3's ``ElasticMBConv``, OFA-ResNet's ``ConvBnUnit``)."""

    @property
    def runs_whole(self) -> bool:
        """Whether the active configuration uses every parameter whole (nothing to slice)."""

    @property
    def num_weights(self) -> int:
        """How many tensors :meth:`slice_for_training` returns as ``weights`` (the same in every configuration)."""

    def elastic_parameters(self) -> list[torch.Tensor]:
        """The parameters the slicing reads, in a fixed order."""

    def slice_for_training(self, params: Sequence[torch.Tensor]
                           ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], Any]:
        """``(weights, saved, aux)``: the active weights cut from ``params`` (run without autograd), the
        tensors :meth:`unslice_grads` needs saved, and anything else it needs."""

    def unslice_grads(self, grads: tuple[torch.Tensor | None, ...], saved: tuple[torch.Tensor, ...], aux: Any
                      ) -> list[torch.Tensor | None]:
        """Backward of :meth:`slice_for_training`: each parameter's whole gradient (zero outside its slice)."""


class _SlicedWeights(torch.autograd.Function):
    """Every given unit's active weights as one autograd node (see :func:`sliced_weights`)."""

    @staticmethod
    def forward(ctx, units: Sequence[SlicedUnit], n_params: list[int],  # type: ignore[override]
                *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``n_params``: how many of ``params`` each unit reads."""
        ctx.set_materialize_grads(False)
        outs: list[torch.Tensor] = []
        to_save: list[torch.Tensor] = []
        plan = []
        i = 0
        for unit, n in zip(units, n_params):
            weights, saved, aux = unit.slice_for_training(params[i : i + n])
            if len(weights) != unit.num_weights:  # the caller splits the outputs by num_weights
                raise RuntimeError(f"{type(unit).__name__} sliced {len(weights)} weights, not its "
                                   f"num_weights={unit.num_weights}")
            plan.append((unit, aux, len(outs), len(weights), len(to_save), len(saved)))
            outs += weights
            to_save += saved
            i += n
        ctx.plan = plan
        ctx.save_for_backward(*to_save)
        return tuple(outs)

    @staticmethod
    @once_differentiable  # the scatter is written by hand; a second-order gradient through it would be wrong
    def backward(ctx, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        out: list[torch.Tensor | None] = [None, None]  # for ``units`` and ``n_params``
        for unit, aux, o, n, s, ns in ctx.plan:
            out += unit.unslice_grads(grads[o : o + n], saved[s : s + ns], aux)
        return tuple(out)


def sliced_weights(units: Sequence[SlicedUnit]) -> list[tuple[torch.Tensor, ...]]:
    """Each unit's :meth:`~SlicedUnit.slice_for_training` weights for its active configuration, for training.

    Slicing every weight through autograd puts a few nodes per weight into the graph (more for a transformed
    kernel), and on CPU each costs more in dispatch and autograd-engine overhead than in arithmetic. Here the
    slicing runs unrecorded and one backward call writes the whole gradients, with the same values: the graph
    gains one node for the whole network. Units that slice nothing hand out their parameters themselves (no
    node at all). On the 2-core dev host this took 0-2 points off OFA-MobileNetV3's training-step overhead
    over the extracted subnet (``scripts/bench_elastic.py``); what remains is this node's own work: for the
    smallest OFA-MobileNetV3 subnet (2 threads, batch 32, 128 px) 0.79-0.96 ms forward and 1.41-1.91 ms
    backward of a ~95-100 ms step, some two hundred small tensor ops whose fixed cost no batching here removes.
    """
    out: list[tuple[torch.Tensor, ...]] = [()] * len(units)
    sliced = []
    for j, unit in enumerate(units):
        if unit.runs_whole:
            out[j] = unit.slice_for_training(unit.elastic_parameters())[0]  # the parameters themselves
        else:
            sliced.append(j)
    if sliced:
        todo = [units[j] for j in sliced]
        per_unit = [unit.elastic_parameters() for unit in todo]
        flat = _SlicedWeights.apply(todo, [len(ps) for ps in per_unit], *(p for ps in per_unit for p in ps))
        i = 0
        for j, unit in zip(sliced, todo):
            n = unit.num_weights
            out[j] = flat[i : i + n]
            i += n
    return out


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
        self.grad_buffer = GradientBuffer()

    def active_weight(self, in_channels: int) -> torch.Tensor:
        return trainable_prefix(self.weight, self.active_out_channels, in_channels, reuse=self.grad_buffer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.active_weight(x.shape[1])
        if not torch.is_grad_enabled():
            w = _contiguous_cached(self, w)
        b = prefix(self.bias, self.active_out_channels) if self.bias is not None else None
        return F.conv2d(x, w, b, self.stride, self.padding)

    def train(self, mode: bool = True) -> DynamicConv2d:
        self._eval_weight = None  # see _contiguous_cached
        return super().train(mode)


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

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.grad_buffer = GradientBuffer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = trainable_prefix(self.weight, self.out_features, x.shape[-1], reuse=self.grad_buffer)
        if not torch.is_grad_enabled():
            w = _contiguous_cached(self, w)
        return F.linear(x, w, self.bias)

    def train(self, mode: bool = True) -> DynamicLinear:
        self._eval_weight = None  # see _contiguous_cached
        return super().train(mode)


def _contiguous_cached(layer: DynamicConv2d | DynamicLinear, w: torch.Tensor) -> torch.Tensor:
    """In no-grad use, a contiguous copy of ``w`` (a slice of ``layer.weight``), kept until the slice or the
    weight changes (in place: its version; by ``.to()`` or ``load_state_dict(assign=True)``: its storage) or
    the layer switches between train and eval (fused optimizers update weights without bumping versions).

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
