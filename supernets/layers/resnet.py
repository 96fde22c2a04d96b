"""Bottleneck-ResNet layers for OFA-ResNet (Cai et al., *Once-for-All*, ICLR 2020).

Elastic layers (``Dynamic*``) hold the weights of their widest configuration and run a channel prefix;
each can hand out the static layer (plain ``nn.Conv2d``/``nn.BatchNorm2d``, copied contiguous weights)
that computes the same function at its active widths. Static and elastic layers use the same attribute
names, so a parameter of an extracted subnet has the name of the supernet parameter it was cut from.

With autograd on, a network's conv-BN pairs (:class:`ConvBnUnit`) are sliced together in one autograd node
(:func:`~supernets.layers.dynamic.sliced_weights`), as OFA-MobileNetV3's blocks are. The tiny OFA-ResNet's min
subnet (28 px, batch 64, 2 threads) trained at 1.11-1.17× its static subnet's step with per-layer slicing nodes,
and at 1.08-1.12× with one node (single runs, interleaved medians; runs spread by about 2 points).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from supernets.layers.dynamic import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicLinear,
    conv_prefix,
    dense_slice,
    prefix,
    sliced_weights,
)
from supernets.utils import band_offsets, copy_bn_, make_divisible, permute_bn_

__all__ = [
    "Bottleneck",
    "ConvBnAct",
    "ConvBnUnit",
    "DynamicBottleneck",
    "DynamicConvBnAct",
    "ResNetSubnet",
    "ResidualConvBnAct",
    "static_linear",
]


# ------------------------------------------------------------------------------------------- static
class ConvBnAct(nn.Sequential):
    """Convolution (no bias, same padding) → BatchNorm → optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, *,
                 act: bool = True) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
            bn=nn.BatchNorm2d(out_channels),
        )
        if act:
            layers["act"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class ResidualConvBnAct(ConvBnAct):
    """``x + relu(bn(conv(x)))`` with no activation after the sum (OFA-ResNet's stem block)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided) → 1×1 bottleneck; shortcut is the identity or ResNet-D's avg-pool + 1×1 conv."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1, *,
                 identity_shortcut: bool) -> None:
        super().__init__()
        if identity_shortcut and (stride != 1 or in_channels != out_channels):
            raise ValueError(
                f"an identity shortcut needs stride 1 and in == out channels, got stride {stride}, "
                f"{in_channels} -> {out_channels}"
            )
        self.conv1 = ConvBnAct(in_channels, mid_channels, 1)
        self.conv2 = ConvBnAct(mid_channels, mid_channels, 3, stride)
        self.conv3 = ConvBnAct(mid_channels, out_channels, 1, act=False)
        self.downsample = nn.Identity() if identity_shortcut else _shortcut(
            in_channels, out_channels, stride, nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.downsample(x)
        return self.act(self.conv3(self.conv2(self.conv1(x))) + residual)


class ResNetSubnet(nn.Module):
    """A static OFA-ResNet subnet: stem (conv, optional residual conv, conv), optional max-pool, stages of
    bottlenecks, global average pool, dropout, classifier."""

    def __init__(self, *, stem_conv1: ConvBnAct, stem_block: ResidualConvBnAct | None, stem_conv2: ConvBnAct,
                 stem_pool: nn.Module, stages: nn.Sequential, classifier: nn.Linear, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem_conv1 = stem_conv1
        self.stem_block = stem_block
        self.stem_conv2 = stem_conv2
        self.stem_pool = stem_pool
        self.stages = stages
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_conv1(x)
        if self.stem_block is not None:
            x = self.stem_block(x)
        return self.stages(self.stem_pool(self.stem_conv2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3))
        return self.classifier(self.dropout(x))


def _shortcut(in_channels: int, out_channels: int, stride: int, conv: nn.Module, bn: nn.Module) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if stride > 1:
        # ResNet-D: average-pool then a 1×1 conv, so the shortcut reads every input position
        # (a strided 1×1 conv would drop three in four).
        layers["avg_pool"] = nn.AvgPool2d(stride, stride, padding=0, ceil_mode=True)
    layers["conv"] = conv
    layers["bn"] = bn
    return nn.Sequential(layers)


@torch.no_grad()
def static_linear(src: DynamicLinear, in_features: int) -> nn.Linear:
    """The plain ``nn.Linear`` reading the first ``in_features`` inputs of ``src``."""
    out = nn.Linear(in_features, src.out_features, bias=src.bias is not None)
    out.weight.copy_(src.weight[:, :in_features])
    if src.bias is not None:
        out.bias.copy_(src.bias)
    return out


# ------------------------------------------------------------------------------------------ elastic
class ConvBnUnit:
    """A :class:`DynamicConv2d` and the :class:`DynamicBatchNorm2d` after it, as a
    :class:`~supernets.layers.dynamic.SlicedUnit`: conv weight ``[:out, :in]`` and BN affine ``[:out]``.

    ``active_in_channels`` (the width the conv will read) follows the input, not the arch, so whoever runs the
    unit sets it before slicing (:meth:`DynamicBottleneck.units`), as ``set_active`` sets the ``active_*`` widths.
    The unit holds no other state; it reads the layers' parameters afresh on every call.
    """

    def __init__(self, conv: DynamicConv2d, bn: DynamicBatchNorm2d) -> None:
        if bn.weight is None or bn.bias is None:
            raise ValueError("ConvBnUnit needs an affine BatchNorm")
        self.conv, self.bn = conv, bn
        self.active_in_channels = conv.in_channels

    @property
    def runs_whole(self) -> bool:
        return self.conv.active_out_channels == self.conv.out_channels and self.active_in_channels == self.conv.in_channels

    num_weights = 3  # conv weight, BN weight, BN bias

    def elastic_parameters(self) -> list[torch.Tensor]:
        return [cast(torch.Tensor, m._parameters[n]) for m, n in ((self.conv, "weight"), (self.bn, "weight"),
                                                                  (self.bn, "bias"))]

    def slice_for_training(self, params: Sequence[torch.Tensor]
                           ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], tuple[int, int]]:
        w, g, b = params
        out, cin = self.conv.active_out_channels, self.active_in_channels
        return (conv_prefix(w, out, cin), prefix(g, out), prefix(b, out)), (), (out, cin)

    def unslice_grads(self, grads: tuple[torch.Tensor | None, ...], saved: tuple[torch.Tensor, ...],
                      aux: tuple[int, int]) -> list[torch.Tensor | None]:
        g_w, g_g, g_b = grads
        out = aux[0]
        w = cast(torch.Tensor, self.conv.weight)
        if g_w is not None and g_w.shape != w.shape:
            g_w = self.conv.grad_buffer.scatter(g_w, aux, w.shape, w.stride())
        if out != w.shape[0]:
            pad = [0, w.shape[0] - out]
            g_g, g_b = (None if g is None else torch.constant_pad_nd(g, pad) for g in (g_g, g_b))
        return [g_w, g_g, g_b]

    def run(self, x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Convolution and BN (no activation) with ``weights`` from :meth:`slice_for_training`."""
        w, g, b = weights
        conv = self.conv
        return self.bn.forward_affine(F.conv2d(x, w, None, conv.stride, conv.padding), g, b)


class DynamicConvBnAct(nn.Module):
    """Elastic :class:`ConvBnAct`: runs the first ``active_out_channels`` filters on whatever input width comes in."""

    def __init__(self, max_in_channels: int, max_out_channels: int, kernel_size: int = 1, stride: int = 1, *,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = DynamicConv2d(max_in_channels, max_out_channels, kernel_size, stride)
        self.bn = DynamicBatchNorm2d(max_out_channels)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()
        self.use_act = act
        self.unit = ConvBnUnit(self.conv, self.bn)

    def run(self, x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The training forward with this layer's entry of :func:`sliced_weights` (``self.unit``)."""
        y = self.unit.run(x, weights)
        return F.relu(y, inplace=True) if self.use_act else y

    @property
    def active_out_channels(self) -> int:
        return self.conv.active_out_channels

    @active_out_channels.setter
    def active_out_channels(self, value: int) -> None:
        if not 0 < value <= self.conv.out_channels:
            raise ValueError(f"active_out_channels must be in [1, {self.conv.out_channels}], got {value}")
        self.conv.active_out_channels = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def get_static(self, in_channels: int, cls: type[ConvBnAct] = ConvBnAct) -> ConvBnAct:
        """The static layer at the active widths, reading ``in_channels`` inputs."""
        out = cls(in_channels, self.active_out_channels, self.conv.kernel_size[0], self.conv.stride[0],
                  act=self.use_act)
        out.conv.weight.copy_(self.conv.active_weight(in_channels))
        copy_bn_(out.bn, self.bn)
        return out


class DynamicBottleneck(nn.Module):
    """OFA's ``DynamicResNetBottleneckBlock``: elastic output width (a stage's width multiplier) and elastic
    middle width ``make_divisible(round(out * expand_ratio), 8)``.

    The shortcut is the identity when the stride is 1 and the input and output width *choices* are the
    same (every block of a stage but the first), else avg-pool + 1×1 conv + BN.
    """

    def __init__(self, in_channel_choices: tuple[int, ...], out_channel_choices: tuple[int, ...],
                 expand_ratios: tuple[float, ...], stride: int = 1, divisor: int = 8) -> None:
        super().__init__()
        self.in_channel_choices = tuple(in_channel_choices)
        self.out_channel_choices = tuple(out_channel_choices)
        self.expand_ratios = tuple(expand_ratios)
        self.stride = stride
        self.divisor = divisor
        max_in, max_out = max(self.in_channel_choices), max(self.out_channel_choices)
        max_mid = max(self.mid_channels(o, e) for o in self.out_channel_choices for e in self.expand_ratios)
        self.conv1 = DynamicConvBnAct(max_in, max_mid, 1)
        self.conv2 = DynamicConvBnAct(max_mid, max_mid, 3, stride)
        self.conv3 = DynamicConvBnAct(max_mid, max_out, 1, act=False)
        self.identity_shortcut = stride == 1 and self.in_channel_choices == self.out_channel_choices
        self._shortcut_unit: ConvBnUnit | None = None
        if self.identity_shortcut:
            self.downsample: nn.Module = nn.Identity()
        else:
            conv, bn = DynamicConv2d(max_in, max_out, 1), DynamicBatchNorm2d(max_out)
            self.downsample = _shortcut(max_in, max_out, stride, conv, bn)
            self._shortcut_unit = ConvBnUnit(conv, bn)
        self.act = nn.ReLU(inplace=True)
        self.active_out_channels = max_out
        self.active_expand_ratio = max(self.expand_ratios)
        self.set_active(max_out, self.active_expand_ratio)
        self._inference_cache: tuple[tuple, list[tuple], list[torch.Tensor]] | None = None

    def mid_channels(self, out_channels: int, expand_ratio: float) -> int:
        # Python's round (half to even) as in OFA, so widths match its published subnets.
        return make_divisible(round(out_channels * expand_ratio), self.divisor)

    @property
    def active_mid_channels(self) -> int:
        return self.mid_channels(self.active_out_channels, self.active_expand_ratio)

    def set_active(self, out_channels: int, expand_ratio: float) -> None:
        """Choose the active output width and expand ratio."""
        if out_channels not in self.out_channel_choices:
            raise ValueError(f"out_channels {out_channels} is not one of {list(self.out_channel_choices)}")
        if expand_ratio not in self.expand_ratios:
            raise ValueError(f"expand_ratio {expand_ratio} is not one of {list(self.expand_ratios)}")
        self.active_out_channels = out_channels
        self.active_expand_ratio = expand_ratio
        mid = self.active_mid_channels
        self.conv1.active_out_channels = mid
        self.conv2.active_out_channels = mid
        self.conv3.active_out_channels = out_channels
        if not self.identity_shortcut:
            self.downsample.conv.active_out_channels = out_channels

    def forward(self, x: torch.Tensor, weights: Sequence[tuple[torch.Tensor, ...]] | None = None) -> torch.Tensor:
        """Run the active configuration. With autograd on, the convs read ``weights``, this block's entries of
        :func:`sliced_weights` over :meth:`units` (the network prepares every block's at once), computed here
        when not given."""
        if not torch.is_grad_enabled():
            if not (self.training or any(bn.training for bn in self._bns())):
                return self._forward_inference(x)
            # BN recalibration: BNs in train mode without autograd, layer by layer
            return self.act(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))
        if weights is None:
            weights = sliced_weights(self.units(x.shape[1]))
        w1, w2, w3, *wd = weights
        if self._shortcut_unit is None:
            residual = x
        else:
            pool = cast(nn.Module, self.downsample.avg_pool) if self.stride > 1 else None
            residual = self._shortcut_unit.run(x if pool is None else pool(x), wd[0])
        y = self.conv3.run(self.conv2.run(self.conv1.run(x, w1), w2), w3)
        return F.relu(y + residual, inplace=True)

    def units(self, in_channels: int) -> list[ConvBnUnit]:
        """The conv-BN pairs a training forward slices (conv1, conv2, conv3 [, shortcut]), set to read
        ``in_channels`` inputs."""
        mid = self.active_mid_channels
        units = [self.conv1.unit, self.conv2.unit, self.conv3.unit]
        for unit, cin in zip(units, (in_channels, mid, mid)):
            unit.active_in_channels = cin
        if self._shortcut_unit is not None:
            self._shortcut_unit.active_in_channels = in_channels
            units.append(self._shortcut_unit)
        return units

    # -- inference -------------------------------------------------------------------------------
    def _conv_bns(self) -> list[tuple[DynamicConv2d, DynamicBatchNorm2d]]:
        """conv1, conv2, conv3 and, unless the shortcut is the identity, the shortcut's conv and BN."""
        pairs = [(c.conv, c.bn) for c in (self.conv1, self.conv2, self.conv3)]
        return pairs if self.identity_shortcut else [*pairs, (self.downsample.conv, self.downsample.bn)]

    def _bns(self) -> list[DynamicBatchNorm2d]:
        return [bn for _, bn in self._conv_bns()]

    def _inference_weights(self, in_channels: int) -> list[tuple]:
        """Per conv-BN pair of :meth:`_conv_bns`: the active conv weight (dense, in the weight's memory format),
        its stride and padding, and the BN's running mean, running variance, weight, bias and eps; cached until
        the widths, a weight or a statistic change (in place, or by ``.to()``).

        At batch 1 a ResNet50 subnet's convolutions take a few milliseconds, and per layer re-slicing (with a
        dense copy of each input-sliced weight) cost the supernet ~20 % over the extracted static subnet.
        """
        pairs = self._conv_bns()
        tensors = [cast(torch.Tensor, t) for conv, bn in pairs
                   for t in (conv.weight, bn.running_mean, bn.running_var, bn.weight, bn.bias)]
        key = (in_channels, self.active_out_channels, self.active_expand_ratio,
               *((t._version, t.data_ptr()) for t in tensors))
        cached = self._inference_cache
        # The cache also holds the tensors themselves, so no freed address is reused with a matching version.
        if cached is not None and cached[0] == key and all(a is b for a, b in zip(cached[2], tensors)):
            return cached[1]
        mid, out = self.active_mid_channels, self.active_out_channels
        widths = ((in_channels, mid), (mid, mid), (mid, out), (in_channels, out))
        weights: list[tuple] = []
        for i, ((conv, bn), (c_in, c_out)) in enumerate(zip(pairs, widths)):
            w, m, v, g, b = tensors[5 * i : 5 * i + 5]
            weights.append((dense_slice(w[:c_out, :c_in], w), conv.stride, conv.padding,
                            m[:c_out], v[:c_out], g[:c_out], b[:c_out], bn.eps))
        self._inference_cache = (key, weights, tensors)
        return weights

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode forward without autograd: the same ops as :meth:`forward` on cached weights."""
        weights = self._inference_weights(x.shape[1])

        def conv_bn(y: torch.Tensor, i: int) -> torch.Tensor:
            w, stride, padding, m, v, g, b, eps = weights[i]
            return F.batch_norm(F.conv2d(y, w, None, stride, padding), m, v, g, b, False, 0.0, eps)

        if self.identity_shortcut:
            residual = x
        else:  # ResNet-D's shortcut average-pools first when it strides
            residual = conv_bn(self.downsample.avg_pool(x) if self.stride > 1 else x, 3)
        y = F.relu(conv_bn(x, 0), inplace=True)
        y = F.relu(conv_bn(y, 1), inplace=True)
        return F.relu(conv_bn(y, 2) + residual, inplace=True)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self._inference_cache = None  # .to() / .double(): drop views of the old tensors
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> DynamicBottleneck:
        self._inference_cache = None  # fused optimizers do not bump the versions the key holds (ElasticMBConv.train)
        return super().train(mode)

    @torch.no_grad()
    def get_static(self, in_channels: int) -> Bottleneck:
        """The static bottleneck at the active widths, reading ``in_channels`` inputs."""
        mid, out_c = self.active_mid_channels, self.active_out_channels
        out = Bottleneck(in_channels, mid, out_c, self.stride, identity_shortcut=self.identity_shortcut)
        out.conv1 = self.conv1.get_static(in_channels)
        out.conv2 = self.conv2.get_static(mid)
        out.conv3 = self.conv3.get_static(mid)
        if not self.identity_shortcut:
            out.downsample.conv.weight.copy_(self.downsample.conv.active_weight(in_channels))
            copy_bn_(out.downsample.bn, self.downsample.bn)
        return out

    @torch.no_grad()
    def sort_channels(self, expand_stage: int = 0) -> None:
        """Re-sort the middle channels by importance (OFA's ``re_organize_middle_weights``).

        conv2's output channels are ordered by the L1 norm of the conv3 weights reading them, then
        conv1's output channels by the L1 norm of the (re-sorted) conv2 weights reading them; each
        permutation is applied to the producing conv, its BN and the consuming conv, so the block
        computes the same function at full width while narrow widths keep the most important channels.

        Args:
            expand_stage: in progressive shrinking's k-th expand phase (k ≥ 1), channels are only re-sorted
                within the bands cut by the k+1 largest expand ratios (at the widest output), so the
                channel sets earlier phases trained stay in place, as OFA does.
        """
        widths = [self.mid_channels(max(self.out_channel_choices), e) for e in self.expand_ratios]
        for producer, consumer in ((self.conv2, self.conv3), (self.conv1, self.conv2)):
            # float64, so adding the band offsets keeps the order of importances within a band.
            importance = consumer.conv.weight.abs().sum(dim=(0, 2, 3), dtype=torch.float64)
            importance = importance + band_offsets(importance.numel(), widths, expand_stage, importance.device)
            # A stable sort keeps equal-importance channels in place (ties are common right after init).
            idx = torch.sort(importance, descending=True, stable=True).indices
            consumer.conv.weight.copy_(consumer.conv.weight.index_select(1, idx))
            permute_bn_(producer.bn, idx)
            producer.conv.weight.copy_(producer.conv.weight.index_select(0, idx))
