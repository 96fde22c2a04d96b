"""Elastic MobileNetV3 blocks (OFA's ``DynamicMBConvLayer`` and ``DynamicSE``).

An elastic inverted-bottleneck block holds the weights of its widest, largest-kernel configuration and
runs a prefix of its middle channels with a (transformed, centre-cropped) kernel chosen by
:meth:`ElasticMBConv.set_active`. :meth:`ElasticMBConv.sort_channels` reorders the middle channels by
importance so that prefixes keep the most important ones; :meth:`ElasticMBConv.get_static` builds timm's
static ``InvertedResidual`` of the active configuration (the vocabulary every family shares: ``set_active`` picks
a layer's configuration, ``get_static`` returns the static layer, :func:`~supernets.utils.copy_bn_` copies a BN).

Training slices the weights of every active block in one autograd node (:func:`~supernets.layers.dynamic.sliced_weights`,
for which a block is a :class:`~supernets.layers.dynamic.SlicedUnit`); no-grad
evaluation runs on cached weights (:meth:`ElasticMBConv._inference_weights`). Both keep the cost of the
elastic supernet near that of the extracted subnet (``scripts/bench_elastic.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from supernets.layers.dynamic import (
    DynamicBatchNorm2d,
    DynamicDepthwiseConv2d,
    conv_prefix,
    prefix,
    same_padding,
    sliced_weights,
)
from supernets.utils import band_offsets, copy_bn_, make_divisible, permute_bn_

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_FNS",
    "ElasticDepthwiseConv2d",
    "ElasticMBConv",
    "ElasticSE",
    "se_channels",
    "se_layer",
    "squeeze_excite",
]

#: Activation names used by the OFA configs -> in-place torch modules (OFA's h_swish is ``F.hardswish``).
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "h_swish": nn.Hardswish}
#: The same activations as functions (``fn(x, inplace=...)``), for the module-call-free inference path.
ACTIVATION_FNS = {"relu": F.relu, "h_swish": F.hardswish}


def se_channels(channels: int) -> int:
    """OFA's SE reduction width: a quarter of the channels, made divisible by 8."""
    return make_divisible(channels // 4, 8)


class ElasticDepthwiseConv2d(DynamicDepthwiseConv2d):
    """:class:`DynamicDepthwiseConv2d` with the transform chain composed into one matrix, and a cache of
    the transformed kernel in no-grad eval (invalidated when any weight it reads changes in place).

    Cropping after a linear map selects rows of its matrix, so ``7→5→3`` is one linear map of the centre
    5×5 crop: ``T3 @ T5[centre rows]``. One small matmul instead of a chain of crop/copy/linear ops
    matters on CPU, where each tiny op pays thread start-up.
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int = 1) -> None:
        super().__init__(max_channels, kernel_sizes, stride)
        self._cache: tuple[tuple, torch.Tensor] | None = None
        self._transform_names = tuple(n for n, _ in self.named_parameters() if n.startswith("transform"))
        # (src, dst) of each transform, largest first, matching ``_transform_names``
        self._pairs = tuple(zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1]))
        for src, dst in self._pairs:
            a = (src - dst) // 2
            rows = torch.arange(src * src).reshape(src, src)[a : a + dst, a : a + dst].reshape(-1)
            self.register_buffer(f"_rows_{src}to{dst}", rows, persistent=False)
            c = (self.max_kernel - dst) // 2
            centre = torch.arange(self.max_kernel ** 2).reshape(self.max_kernel, -1)[c : c + dst, c : c + dst]
            self.register_buffer(f"_centre_{dst}", centre.reshape(-1), persistent=False)

    def _tensor(self, name: str) -> torch.Tensor:
        """A parameter or buffer by name, without ``nn.Module.__getattr__`` (run on every training step)."""
        t = self._parameters.get(name)
        return cast(torch.Tensor, t if t is not None else self._buffers[name])

    def _chain(self, k: int) -> tuple[int, torch.Tensor | None, list[torch.Tensor]]:
        """(size of the centre crop the kernel reads, composed matrix mapping it to the k×k kernel, and the
        row selections ``m[rows]`` that each later transform multiplied, which its gradient needs)."""
        m: torch.Tensor | None = None
        size = self.max_kernel
        picked: list[torch.Tensor] = []
        for name, (src, dst) in zip(self._transform_names, self._pairs):
            if src <= k:
                break
            t = self._tensor(name)
            if m is None:
                size = dst  # the first transform reads the centre dst×dst crop of the full kernel
                m = t
            else:
                picked.append(m.index_select(0, self._tensor(f"_rows_{src}to{dst}")))
                m = t @ picked[-1]
        return size, m, picked

    def active_weight(self, channels: int, kernel_size: int | None = None) -> torch.Tensor:
        k = kernel_size or self.active_kernel
        if k == self.max_kernel:
            return prefix(self.weight, channels)
        cacheable = not self.training and not torch.is_grad_enabled()
        if cacheable:
            key = (channels, k, self.weight._version, self.weight.data_ptr(),
                   *(getattr(self, n)._version for n in self._transform_names))
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        w = self.transformed_weight(channels, k)[0]
        if cacheable:
            self._cache = (key, w)
        return w

    def transformed_weight(self, channels: int, k: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The ``channels``×1×k×k kernel for ``k`` below the largest, and what :meth:`transformed_grads` needs."""
        size, m, picked = self._chain(k)
        assert m is not None, "the largest kernel is the weight itself"
        kk = self.max_kernel * self.max_kernel
        # the centre size×size of each kernel, gathered from its flattened k²: one op instead of four
        crop = self.weight.reshape(-1, kk)[:channels].index_select(1, self._tensor(f"_centre_{size}"))
        return F.linear(crop, m).reshape(channels, 1, k, k), (crop, m, *picked)

    def transformed_grads(self, grad: torch.Tensor, saved: tuple[torch.Tensor, ...]
                          ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Backward of :meth:`transformed_weight`: the gradients of the full weight and of every transform
        matrix (``None`` for those the chain did not reach), from the gradient of the k×k kernel."""
        crop, m, *picked = saved
        channels, size = crop.shape[0], round(crop.shape[1] ** 0.5)
        g = grad.reshape(channels, -1)
        a = (self.max_kernel - size) // 2
        b = self.max_kernel - size - a
        g_weight = torch.constant_pad_nd((g @ m).reshape(channels, 1, size, size),
                                         (a, b, a, b, 0, 0, 0, self.weight.shape[0] - channels))
        g_m = g.t() @ crop  # gradient of the composed matrix m (k² × size²)
        g_ts: list[torch.Tensor | None] = [None] * len(self._transform_names)
        # m_j = T_j @ m_{j-1}[rows_j]: walk the chain back to the first transform, whose m is T_0 itself.
        for j in range(len(picked), 0, -1):
            g_ts[j] = g_m @ picked[j - 1].t()
            src, dst = self._pairs[j]
            t = self._tensor(self._transform_names[j])
            g_m = g_m.new_zeros(src * src, g_m.shape[1]).index_copy_(0, self._tensor(f"_rows_{src}to{dst}"), t.t() @ g_m)
        g_ts[0] = g_m
        return g_weight, g_ts

    def train(self, mode: bool = True) -> ElasticDepthwiseConv2d:
        self._cache = None
        return super().train(mode)


class ElasticSE(nn.Module):
    """Squeeze-and-excitation on a prefix of the channels: mean -> 1x1 reduce (bias) -> ReLU -> 1x1
    expand (bias) -> hard sigmoid -> scale. The reduce width follows the active channels (OFA)."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.max_channels = max_channels
        rd = se_channels(max_channels)
        self.conv_reduce = nn.Conv2d(max_channels, rd, 1, bias=True)
        self.conv_expand = nn.Conv2d(rd, max_channels, 1, bias=True)

    def active_weights(self, channels: int) -> tuple[torch.Tensor, ...]:
        """Reduce weight and bias, expand weight and bias for ``channels`` input channels (views)."""
        rd = se_channels(channels)
        return (prefix(self.conv_reduce.weight, rd, channels), prefix(self.conv_reduce.bias, rd),
                prefix(self.conv_expand.weight, channels, rd), prefix(self.conv_expand.bias, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze_excite(x, *self.active_weights(x.shape[1]))

    @torch.no_grad()
    def get_static(self, channels: int) -> nn.Module:
        """timm's ``SqueezeExcite`` for ``channels`` input channels, with the copied weights."""
        w = self.conv_reduce.weight
        se = se_layer(se_channels(channels))(channels).to(device=w.device, dtype=w.dtype)
        targets = (se.conv_reduce.weight, se.conv_reduce.bias, se.conv_expand.weight, se.conv_expand.bias)
        for dst, src in zip(targets, self.active_weights(channels)):
            dst.copy_(src)
        return se


def se_layer(rd_channels: int | None = None) -> partial:
    """timm's ``SqueezeExcite`` configured as OFA's SE (ReLU, hard-sigmoid gate) with ``rd_channels`` reduction
    channels (None: timm's ``round_channels`` of a quarter of the input, for timm's builder)."""
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models._efficientnet_builder import round_channels

    rd = {"rd_round_fn": round_channels} if rd_channels is None else {"rd_channels": rd_channels}
    return partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU, **rd)


def squeeze_excite(x: torch.Tensor, w_rd: torch.Tensor, b_rd: torch.Tensor, w_ex: torch.Tensor,
                   b_ex: torch.Tensor) -> torch.Tensor:
    """OFA's SE: mean -> 1x1 reduce -> ReLU -> 1x1 expand -> hard sigmoid -> scale ``x``."""
    s = F.relu(F.conv2d(x.mean((2, 3), keepdim=True), w_rd, b_rd), inplace=True)
    return x * F.hardsigmoid(F.conv2d(s, w_ex, b_ex))


class ElasticMBConv(nn.Module):
    """Inverted bottleneck with elastic kernel size and expand ratio.

    1x1 expand (no bias) + BN + act -> depthwise kxk (stride) + BN + act -> [SE] -> 1x1 linear + BN,
    plus an identity shortcut when ``stride == 1`` and ``in_chs == out_chs``. The middle width for
    expand ratio ``e`` is ``make_divisible(round(in_chs * e), 8)``; BN statistics are shared by prefix.
    """

    def __init__(self, in_chs: int, out_chs: int, *, kernel_sizes: tuple[int, ...], expand_ratios: tuple[float, ...],
                 stride: int = 1, act: str = "relu", use_se: bool = False) -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; expected one of {list(ACTIVATIONS)}")
        self.in_chs, self.out_chs, self.stride = in_chs, out_chs, stride
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.expand_ratios = tuple(sorted(expand_ratios))
        self.act_name, self.use_se = act, use_se
        self.has_skip = stride == 1 and in_chs == out_chs
        max_mid = self.mid_channels(self.expand_ratios[-1])

        self.conv_pw = nn.Conv2d(in_chs, max_mid, 1, bias=False)
        self.bn1 = DynamicBatchNorm2d(max_mid)
        self.act1 = ACTIVATIONS[act](inplace=True)
        self.conv_dw = ElasticDepthwiseConv2d(max_mid, self.kernel_sizes, stride=stride)
        self.bn2 = DynamicBatchNorm2d(max_mid)
        self.act2 = ACTIVATIONS[act](inplace=True)
        self.se = ElasticSE(max_mid) if use_se else None
        self.conv_pwl = nn.Conv2d(max_mid, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.active_mid = max_mid
        self.active_kernel = self.kernel_sizes[-1]
        self._act_fn = ACTIVATION_FNS[act]
        self._inference_cache: tuple[tuple, tuple[torch.Tensor | None, ...]] | None = None
        # (module, name) of every parameter the active configuration slices, read through ``_parameters``
        # on each training step: nn.Module attribute lookups cost ~0.5 µs a hop (see :func:`sliced_weights`).
        dw = self.conv_dw
        slots = [(self.conv_pw, "weight"), (self.bn1, "weight"), (self.bn1, "bias"), (dw, "weight"),
                 *((dw, n) for n in dw._transform_names), (self.bn2, "weight"), (self.bn2, "bias")]
        if self.se is not None:
            slots += [(m, n) for m in (self.se.conv_reduce, self.se.conv_expand) for n in ("weight", "bias")]
        self._slots = tuple([*slots, (self.conv_pwl, "weight")])
        self.num_weights = 7 + (4 if self.se is not None else 0)  # what slice_weights returns (SlicedUnit)
        self._pads: dict[tuple[int, bool], tuple[list[int] | None, ...]] = {}

    def mid_channels(self, expand_ratio: float) -> int:
        return make_divisible(round(self.in_chs * expand_ratio), 8)

    def set_active(self, kernel_size: int, expand_ratio: float) -> None:
        if kernel_size not in self.kernel_sizes:
            raise ValueError(f"kernel size {kernel_size!r} is not one of the allowed choices {list(self.kernel_sizes)}")
        if expand_ratio not in self.expand_ratios:
            raise ValueError(f"expand ratio {expand_ratio!r} is not one of the allowed choices {list(self.expand_ratios)}")
        self.active_kernel = kernel_size
        self.conv_dw.active_kernel = kernel_size
        self.active_mid = self.mid_channels(expand_ratio)

    def forward(self, x: torch.Tensor, weights: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Run the active configuration; ``weights`` are this block's entry of :func:`sliced_weights` (the
        network prepares every block's at once), computed here when not given."""
        if not (torch.is_grad_enabled() or self.training or self.bn1.training or self.bn2.training):
            return self._forward_inference(x)  # not with BNs in train mode: BN recalibration runs that way
        if weights is None:
            weights = sliced_weights([self])[0]
        w_pw, g1, b1, w_dw, g2, b2, *se, w_pwl = weights
        shortcut = x
        x = self.act1(self.bn1.forward_affine(F.conv2d(x, w_pw), g1, b1))
        x = F.conv2d(x, w_dw, None, self.stride, same_padding(w_dw.shape[-1]), 1, w_dw.shape[0])
        x = self.act2(self.bn2.forward_affine(x, g2, b2))
        if se:
            x = squeeze_excite(x, *se)
        x = self.bn3(F.conv2d(x, w_pwl))
        if self.has_skip:
            x = x + shortcut
        return x

    # -- training: every active block's weights as one autograd node (SlicedUnit) ----------------
    @property
    def runs_whole(self) -> bool:
        """Whether the active configuration is the widest with the largest kernel (nothing to slice)."""
        return self.active_mid == self.conv_pw.out_channels and self.active_kernel == self.conv_dw.max_kernel

    def elastic_parameters(self) -> list[torch.Tensor]:
        """The parameters the active configuration slices, in the order :meth:`slice_weights` reads them:
        expand, BN1 affine, depthwise kernel, kernel transforms, BN2 affine, [SE reduce/expand], project."""
        return [cast(torch.Tensor, m._parameters[n]) for m, n in self._slots]

    def slice_weights(self, params: Sequence[torch.Tensor] | None = None
                      ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """The active configuration's weights (expand, BN1 affine, kernel, BN2 affine, [SE ×4], project) cut
        from ``params`` (default :meth:`elastic_parameters`), and what :meth:`unslice_grads` needs.
        Differentiable as written; :func:`sliced_weights` runs it unrecorded and supplies the backward."""
        p = self.elastic_parameters() if params is None else params
        mid, k = self.active_mid, self.active_kernel
        nt = len(self.conv_dw._transform_names)
        pw, g1, b1, g2, b2 = (prefix(t, mid) for t in (*p[:3], p[4 + nt], p[5 + nt]))
        saved: tuple[torch.Tensor, ...] = ()
        if k == self.conv_dw.max_kernel:
            w_dw = prefix(p[3], mid)
        else:
            w_dw, saved = self.conv_dw.transformed_weight(mid, k)
        se: tuple[torch.Tensor, ...] = self.se.active_weights(mid) if self.se is not None else ()
        # The projection weight, cut along its input channels, is strided, and a convolution over it runs slower
        # (480→160 1×1 at 4×4, batch 32, 2 threads: 376 vs 242 µs forward, 815 vs 448 µs backward): copied dense
        # by conv_prefix. (The SE weights act on 1×1 maps; copying them too showed no gain in interleaved step timings.)
        return (pw, g1, b1, w_dw, g2, b2, *se, conv_prefix(p[-1], self.out_chs, mid)), saved

    def slice_for_training(self, params: Sequence[torch.Tensor]
                           ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], tuple[list[int] | None, ...]]:
        """:meth:`slice_weights` plus the padding :meth:`unslice_grads` applies (see :class:`SlicedUnit`)."""
        weights, saved = self.slice_weights(params)
        return weights, saved, self.pad_amounts(weights, params, transformed=bool(saved))

    def pad_amounts(self, weights: Sequence[torch.Tensor], params: Sequence[torch.Tensor], transformed: bool
                    ) -> tuple[list[int] | None, ...]:
        """Per parameter, the zero-padding amounts (as ``F.pad`` takes them) taking the gradient of its slice
        (``weights``, as :meth:`slice_weights` returned them) to its whole shape; ``None``: nothing to pad. Cached
        per active configuration. The transforms, and a transformed kernel, get whole gradients from
        ``transformed_grads``."""
        key = (self.active_mid, transformed)
        pads = self._pads.get(key)
        if pads is None:
            nt = len(self.conv_dw._transform_names)
            have: list[torch.Size | None] = [w.shape for w in weights]
            have[3:4] = [None if transformed else have[3], *([None] * nt)]
            pads = self._pads[key] = tuple(
                None if h is None or h == p.shape
                else [a for n, full in zip(reversed(h), reversed(p.shape)) for a in (0, full - n)]
                for h, p in zip(have, params))
        return pads

    def unslice_grads(self, grads: tuple[torch.Tensor | None, ...], saved: tuple[torch.Tensor, ...],
                      pads: tuple[list[int] | None, ...]) -> list[torch.Tensor | None]:
        """Backward of :meth:`slice_weights`: gradients of its parameters, zero outside the slices (each
        zero-padded by :meth:`pad_amounts` in one ``torch.constant_pad_nd``, the op ``F.pad`` calls: its Python
        wrapper cost ~0.1 ms a backward over ~90 calls, 0.755 → 0.643 ms for the min subnet's ten blocks)."""
        g_pw, g_g1, g_b1, g_dw, g_g2, g_b2, *g_rest = grads
        g_ts: list[torch.Tensor | None] = [None] * len(self.conv_dw._transform_names)
        if saved and g_dw is not None:
            g_dw, g_ts = self.conv_dw.transformed_grads(g_dw, saved)
        flat = (g_pw, g_g1, g_b1, g_dw, *g_ts, g_g2, g_b2, *g_rest)
        return [g if g is None or pad is None else torch.constant_pad_nd(g, pad) for g, pad in zip(flat, pads)]

    # -- inference -------------------------------------------------------------------------------
    def _inference_weights(self) -> tuple[torch.Tensor | None, ...]:
        """The active configuration's weights (sliced, kernel transformed, contiguous) and BN arguments,
        cached until the configuration, a weight or a BN statistic changes (in place, or by ``.to()``), or the
        block switches between train and eval.

        Batch-1 inference of a small subnet takes a few milliseconds, and re-slicing about fifteen tensors
        per block (plus module-call overhead) on every call would cost the supernet several percent over
        the extracted static subnet; with the cache it runs the same convolutions on the same kind of tensors.
        """
        key = (self.active_mid, self.active_kernel, *((t._version, t.data_ptr()) for t in self._cache_tensors))
        if self._inference_cache is not None and self._inference_cache[0] == key:
            return self._inference_cache[1]
        mid = self.active_mid
        with torch.no_grad():  # the training slices, made dense once here instead of on every call
            (w_pw, g1, b1, w_dw, g2, b2, *se, w_pwl), _ = self.slice_weights()
        m1, v1, m2, v2 = (t[:mid] for bn in (self.bn1, self.bn2) for t in (bn.running_mean, bn.running_var))
        weights: tuple[torch.Tensor | None, ...] = (
            w_pw, m1, v1, g1, b1, w_dw.contiguous(), m2, v2, g2, b2,
            *(tuple(w.contiguous() for w in se) or (None,) * 4), w_pwl,
        )
        self._inference_cache = (key, weights)
        return weights

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode forward without autograd: the same ops as :meth:`forward` on cached weights."""
        (w_pw, m1, v1, g1, b1, w_dw, m2, v2, g2, b2, w_rd, b_rd, w_ex, b_ex, w_pwl) = self._inference_weights()
        act = self._act_fn
        y = act(F.batch_norm(F.conv2d(x, w_pw), m1, v1, g1, b1, False, 0.0, self.bn1.eps), inplace=True)
        y = F.conv2d(y, w_dw, None, self.stride, same_padding(w_dw.shape[-1]), 1, w_dw.shape[0])
        y = act(F.batch_norm(y, m2, v2, g2, b2, False, 0.0, self.bn2.eps), inplace=True)
        if w_rd is not None:
            y = squeeze_excite(y, w_rd, b_rd, w_ex, b_ex)
        y = self.bn3(F.conv2d(y, w_pwl))
        return y + x if self.has_skip else y

    @property
    def _cache_tensors(self) -> list[torch.Tensor]:
        """Every tensor the inference weights are read from: the sliced parameters and the BN statistics
        (looked up afresh: ``load_state_dict(assign=True)`` replaces parameters)."""
        stats = [t for bn in (self.bn1, self.bn2) for t in (bn.running_mean, bn.running_var)]
        return [*self.elastic_parameters(), *cast(list[torch.Tensor], stats)]

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self._inference_cache = None  # .to() / .double(): drop views of the old tensors
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> ElasticMBConv:
        # Fused optimizers (and writes through ``.data``) change weights without bumping the versions the
        # cache key holds; every train/eval switch therefore starts afresh.
        self._inference_cache = None
        return super().train(mode)

    # -- progressive shrinking support -------------------------------------------------------
    @torch.no_grad()
    def sort_channels(self, expand_stage: int = 0) -> None:
        """Reorder the middle channels by the L1 norm of the point-linear weights (descending), and the
        SE's own reduce channels by the L1 norm of the SE expand weights, consistently in every layer
        that reads or writes them (OFA's ``re_organize_middle_weights``). The function is unchanged.

        Args:
            expand_stage: in progressive shrinking's k-th expand phase (k ≥ 1), the middle channels are only
                re-sorted within the bands cut by the k+1 largest expand ratios, so the channel sets earlier
                phases trained stay in place, as OFA does (:func:`~supernets.utils.band_offsets`).
        """
        # float64, so adding the band offsets keeps the order of importances within a band.
        importance = self.conv_pwl.weight.abs().sum(dim=(0, 2, 3), dtype=torch.float64)
        widths = [self.mid_channels(e) for e in self.expand_ratios]
        importance = importance + band_offsets(importance.numel(), widths, expand_stage, importance.device)
        idx = torch.argsort(importance, descending=True, stable=True)
        self.conv_pwl.weight.copy_(self.conv_pwl.weight.index_select(1, idx))
        self.conv_dw.weight.copy_(self.conv_dw.weight.index_select(0, idx))
        permute_bn_(self.bn2, idx)
        self.conv_pw.weight.copy_(self.conv_pw.weight.index_select(0, idx))
        permute_bn_(self.bn1, idx)
        if self.se is not None:
            red, exp = self.se.conv_reduce, self.se.conv_expand
            exp.weight.copy_(exp.weight.index_select(0, idx))
            exp.bias.copy_(exp.bias.index_select(0, idx))
            red.weight.copy_(red.weight.index_select(1, idx))
            se_idx = torch.argsort(exp.weight.abs().sum(dim=(0, 2, 3)), descending=True, stable=True)
            exp.weight.copy_(exp.weight.index_select(1, se_idx))
            red.weight.copy_(red.weight.index_select(0, se_idx))
            red.bias.copy_(red.bias.index_select(0, se_idx))

    # -- extraction --------------------------------------------------------------------------
    @torch.no_grad()
    def get_static(self) -> nn.Module:
        """timm's ``InvertedResidual`` of the active configuration with copied (contiguous) weights, on this
        block's device and dtype."""
        from timm.models._efficientnet_blocks import InvertedResidual

        mid, w = self.active_mid, self.conv_pw.weight
        # timm computes the middle width as make_divisible(in * exp_ratio); OFA's mid is already a multiple of 8
        block = InvertedResidual(self.in_chs, self.out_chs, dw_kernel_size=self.active_kernel, stride=self.stride,
                                 exp_ratio=mid / self.in_chs, act_layer=ACTIVATIONS[self.act_name],
                                 se_layer=se_layer(se_channels(mid)) if self.se is not None else None,
                                 ).to(device=w.device, dtype=w.dtype)
        if block.conv_pw.out_channels != mid:
            raise RuntimeError(f"timm's InvertedResidual made {block.conv_pw.out_channels} middle channels, OFA's "
                               f"rule {mid} (in {self.in_chs}, expand to {mid})")
        block.conv_pw.weight.copy_(self.conv_pw.weight[:mid])
        copy_bn_(block.bn1, self.bn1)
        block.conv_dw.weight.copy_(self.conv_dw.active_weight(mid, self.active_kernel))
        copy_bn_(block.bn2, self.bn2)
        if self.se is not None:
            block.se = self.se.get_static(mid)
        block.conv_pwl.weight.copy_(self.conv_pwl.weight[:, :mid])
        copy_bn_(block.bn3, self.bn3)
        return block

    def extra_repr(self) -> str:
        return (f"in={self.in_chs}, out={self.out_chs}, stride={self.stride}, act={self.act_name}, "
                f"se={self.use_se}, ks={self.kernel_sizes}, e={self.expand_ratios}")
