"""OFA-MobileNetV3 supernets (Cai et al., *Once-for-All: Train One Network and Specialize it for
Efficient Deployment*, ICLR 2020), with the reference architecture's exact widths and counts.

Stem conv 3x3/2 + BN + h-swish -> fixed first block (depthwise-separable, expand 1) -> elastic stages of
:class:`~supernets.layers.mbconv.ElasticMBConv` blocks (elastic depth: the first ``d`` blocks of a stage
run; elastic kernel and expand ratio per block) -> final 1x1 expand + BN + h-swish -> global average
pool -> feature-mix 1x1 conv (no BN) + h-swish -> dropout -> linear classifier.

``get_active_subnet()`` returns timm's own ``MobileNetV3`` (built from timm's block-definition strings)
with the active weights copied in, so a subnet is a normal timm model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.models._efficientnet_builder import decode_arch_def
from timm.models.mobilenetv3 import MobileNetV3
from torch import nn

from supernets.base import Supernet
from supernets.layers.dynamic import sliced_weights
from supernets.layers.mbconv import ACTIVATIONS, ElasticMBConv, se_layer
from supernets.registry import register_supernet
from supernets.space import Arch, MobileNetV3Space
from supernets.utils import copy_bn_, make_divisible, make_divisible_np

__all__ = [
    "MobileNetV3Config",
    "OFAMobileNetV3",
    "ofa_mbv3_tiny",
    "ofa_mbv3_w10",
    "ofa_mbv3_w12",
]

#: OFA's base widths at width multiplier 1.0: stem, first block, 5 elastic stages, final expand, feature mix.
OFA_BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
OFA_STRIDES = (2, 2, 2, 1, 2)
OFA_ACTS = ("relu", "relu", "h_swish", "h_swish", "h_swish")
OFA_SE = (False, True, False, True, True)


@dataclass(frozen=True)
class MobileNetV3Config:
    """The fixed (non-searchable) shape of an OFA-MobileNetV3 supernet.

    Attributes:
        stem_chs, first_chs: widths of the stem conv and of the fixed first block.
        stage_chs, strides, acts, se: per elastic stage, output width, stride of its first block,
            activation (``relu`` or ``h_swish``) and whether its blocks have squeeze-and-excitation.
        final_chs, head_chs: widths of the final 1x1 expand and of the feature-mix conv.
        stem_stride: stride of the stem conv (2 in OFA; 1 suits 28-32 px inputs).
    """

    stem_chs: int
    first_chs: int
    stage_chs: tuple[int, ...]
    final_chs: int
    head_chs: int
    strides: tuple[int, ...] = OFA_STRIDES
    acts: tuple[str, ...] = OFA_ACTS
    se: tuple[bool, ...] = OFA_SE
    stem_stride: int = 2
    in_chans: int = 3
    num_classes: int = 1000
    dropout: float = 0.1

    def __post_init__(self) -> None:
        n = len(self.stage_chs)
        for label, seq in (("strides", self.strides), ("acts", self.acts), ("se", self.se)):
            if len(seq) != n:
                raise ValueError(f"{label} needs one entry per stage ({n}), got {len(seq)}: {list(seq)}")
        bad = [a for a in self.acts if a not in ACTIVATIONS]
        if bad:
            raise ValueError(f"unknown activation {bad[0]!r}; expected one of {list(ACTIVATIONS)}")

    @classmethod
    def ofa(cls, width_mult: float = 1.0, **kwargs) -> MobileNetV3Config:
        """OFA's reference config at a width multiplier (1.0 or 1.2 in the published supernets)."""
        w = [make_divisible(c * width_mult, 8) for c in OFA_BASE_WIDTHS]
        return cls(stem_chs=w[0], first_chs=w[1], stage_chs=tuple(w[2:7]), final_chs=w[7], head_chs=w[8], **kwargs)

    @property
    def stage_in_chs(self) -> tuple[int, ...]:
        return (self.first_chs, *self.stage_chs[:-1])

    # ------------------------------------------------------------------------- analytic counts
    def macs_params(self, space: MobileNetV3Space, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MACs (conv + linear, SE included) and parameters of the extracted subnets, vectorised.

        Args:
            space: the supernet's space (for the column layout and choice values).
            encoded: ``(n, space.n_columns)`` choice-index matrix (``space.encode(archs)``).

        Returns:
            ``(macs, params)``, two int64 arrays of length ``n``; equal to ``count_macs`` /
            ``count_params`` of ``get_active_subnet()`` at the arch's resolution.
        """
        x = space.normalize(encoded)
        n = x.shape[0]
        r = space.values(x, "r")[:, 0].astype(np.int64)
        ks = space.values(x, "ks")
        e = space.values(x, "e")
        active = ~np.isnan(ks)
        ks = np.nan_to_num(ks).astype(np.int64)
        e = np.nan_to_num(e)

        def down(h: np.ndarray, stride: int) -> np.ndarray:  # 'same' padding: ceil(h / stride)
            return (h - 1) // stride + 1

        h = down(r, self.stem_stride)
        macs = h * h * self.in_chans * self.stem_chs * 9
        params = np.full(n, self.in_chans * self.stem_chs * 9 + 2 * self.stem_chs, dtype=np.int64)
        # First block: depthwise 3x3 + BN, pointwise + BN.
        macs += h * h * (self.stem_chs * 9 + self.stem_chs * self.first_chs)
        params += self.stem_chs * 9 + 2 * self.stem_chs + self.stem_chs * self.first_chs + 2 * self.first_chs
        slots = space.max_depth
        for s, (cin, cout, stride, se) in enumerate(zip(self.stage_in_chs, self.stage_chs, self.strides, self.se)):
            for j in range(slots):
                col = s * slots + j
                use = active[:, col]
                c_in = cin if j == 0 else cout
                st = stride if j == 0 else 1
                mid = make_divisible_np(np.round(c_in * e[:, col]), 8)
                k2 = ks[:, col] ** 2
                h_out = down(h, st)
                b_macs = h * h * c_in * mid + h_out * h_out * mid * (k2 + cout)
                b_params = c_in * mid + mid * k2 + mid * cout + 4 * mid + 2 * cout
                if se:
                    rd = make_divisible_np(mid // 4, 8)
                    b_macs = b_macs + 2 * mid * rd
                    b_params = b_params + 2 * mid * rd + rd + mid
                macs += np.where(use, b_macs, 0)
                params += np.where(use, b_params, 0)
                if j == 0:
                    h = h_out
        last = self.stage_chs[-1]
        macs += h * h * last * self.final_chs + self.final_chs * self.head_chs + self.head_chs * self.num_classes
        params += (last * self.final_chs + 2 * self.final_chs + self.final_chs * self.head_chs
                   + self.head_chs * self.num_classes + self.num_classes)
        return macs.astype(np.int64), params.astype(np.int64)


class OFAMobileNetV3(Supernet):
    """Elastic OFA-MobileNetV3 (kernel, expand ratio and depth per stage; resolution by the data)."""

    def __init__(self, config: MobileNetV3Config, space: MobileNetV3Space) -> None:
        super().__init__(space)
        if space.n_stages != len(config.stage_chs):
            raise ValueError(
                f"space has {space.n_stages} stages but the config has {len(config.stage_chs)} stage widths"
            )
        self.config = config
        c = config
        self.conv_stem = nn.Conv2d(c.in_chans, c.stem_chs, 3, stride=c.stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c.stem_chs)
        self.act1 = nn.Hardswish(inplace=True)
        # Fixed first block (OFA's expand-1 MBConv = timm's DepthwiseSeparableConv).
        self.first_dw = nn.Conv2d(c.stem_chs, c.stem_chs, 3, padding=1, groups=c.stem_chs, bias=False)
        self.first_bn1 = nn.BatchNorm2d(c.stem_chs)
        self.first_pw = nn.Conv2d(c.stem_chs, c.first_chs, 1, bias=False)
        self.first_bn2 = nn.BatchNorm2d(c.first_chs)
        self.first_skip = c.stem_chs == c.first_chs
        self.stages = nn.ModuleList()
        for cin, cout, stride, act, se in zip(c.stage_in_chs, c.stage_chs, c.strides, c.acts, c.se):
            blocks = [
                ElasticMBConv(cin if j == 0 else cout, cout, kernel_sizes=space.kernel_sizes,
                              expand_ratios=space.expand_ratios, stride=stride if j == 0 else 1, act=act, use_se=se)
                for j in range(space.max_depth)
            ]
            self.stages.append(nn.ModuleList(blocks))
        self.final_conv = nn.Conv2d(c.stage_chs[-1], c.final_chs, 1, bias=False)
        self.final_bn = nn.BatchNorm2d(c.final_chs)
        self.conv_head = nn.Conv2d(c.final_chs, c.head_chs, 1, bias=False)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.head_chs, c.num_classes)
        self._init_weights()
        self._active_blocks: list[ElasticMBConv] = []
        self.set_max_net()

    def _init_weights(self) -> None:
        # OFA's init: He (fan_out) for convs, BN to identity, linear uniform(+-1/sqrt(fan_in)), zero bias.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.weight.shape[1] ** 0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    # -- elastic configuration ---------------------------------------------------------------
    def _apply_arch(self, arch: Arch) -> None:
        slots = self.space.max_depth
        active: list[ElasticMBConv] = []
        for s, stage in enumerate(self.stages):
            for j in range(arch.d[s]):
                blk = stage[j]
                blk.set_active(arch.ks[s * slots + j], arch.e[s * slots + j])
                active.append(blk)
        self._active_blocks = active

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        y = self.first_bn2(self.first_pw(F.relu(self.first_bn1(self.first_dw(x)), inplace=True)))
        x = y + x if self.first_skip else y
        blocks = self._active_blocks
        if torch.is_grad_enabled() and blocks:  # one autograd node for every block's sliced weights
            for blk, w in zip(blocks, sliced_weights(blocks)):
                x = blk(x, w)
        else:
            for blk in blocks:
                x = blk(x)
        return F.hardswish(self.final_bn(self.final_conv(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean((2, 3), keepdim=True)
        x = F.hardswish(self.conv_head(x)).flatten(1)
        x = self.dropout(x)
        return self.classifier(x)

    @torch.no_grad()
    def latency_layers(self) -> Any:
        """Its measurable layers for latency tables (:mod:`supernets.measurable`)."""
        from supernets.measurable_mbv3 import MBv3Geometry

        return MBv3Geometry.from_supernet(self)

    def sort_channels(self, expand_stage: int = 0) -> None:
        """Re-sort every block's middle channels by importance (OFA's ``re_organize_middle_weights``); the max
        net's function is unchanged. ``expand_stage`` k ≥ 1 keeps the channel sets of the k+1 largest expand
        ratios in place (see :meth:`ElasticMBConv.sort_channels`)."""
        for stage in self.stages:
            for blk in stage:
                blk.sort_channels(expand_stage)

    # -- counting ----------------------------------------------------------------------------
    def macs_params(self, archs: Arch | Iterable[Arch] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised MACs and parameter counts of subnets (archs or an encoded matrix), each at its
        own resolution: the counts of the extracted static subnets, without building them."""
        x = archs if isinstance(archs, np.ndarray) else self.space.encode(archs)
        return self.config.macs_params(self.space, x)

    # -- extraction --------------------------------------------------------------------------
    def timm_arch_def(self, arch: Arch | None = None) -> list[list[str]]:
        """timm block-definition strings of a subnet (``ir_r1_k5_s2_e4_c40_se0.25_nre`` ...)."""
        arch = arch or self.active_arch
        c, slots = self.config, self.space.max_depth
        stages: list[list[str]] = [[f"ds_r1_k3_s1_e1_c{c.first_chs}_nre"]]  # OFA's first block uses ReLU
        for s, (cout, stride, act, se) in enumerate(zip(c.stage_chs, c.strides, c.acts, c.se)):
            blocks = []
            for j in range(arch.d[s]):
                k, e = arch.ks[s * slots + j], arch.e[s * slots + j]
                tail = ("_se0.25" if se else "") + ("_nre" if act == "relu" else "")
                blocks.append(f"ir_r1_k{k}_s{stride if j == 0 else 1}_e{e}_c{cout}{tail}")
            stages.append(blocks)
        stages.append([f"cn_r1_k1_s1_c{c.final_chs}"])
        return stages

    @torch.no_grad()
    def get_active_subnet(self) -> MobileNetV3:
        """timm ``MobileNetV3`` of the active arch with copied (contiguous) weights, same device and dtype."""
        c, arch = self.config, self.active_arch
        net = MobileNetV3(
            decode_arch_def(self.timm_arch_def(arch)),
            num_classes=c.num_classes, in_chans=c.in_chans, stem_size=c.stem_chs, fix_stem=True,
            num_features=c.head_chs, head_bias=False, act_layer=nn.Hardswish, se_layer=se_layer(),
            drop_rate=c.dropout,
        )
        if c.stem_stride != 2:
            # timm's MobileNetV3 fixes the stem stride to 2; a 3x3 conv keeps padding 1 at stride 1.
            net.conv_stem.stride = (c.stem_stride, c.stem_stride)
        p = self.conv_stem.weight
        net.to(device=p.device, dtype=p.dtype)
        net.conv_stem.weight.copy_(self.conv_stem.weight)
        copy_bn_(net.bn1, self.bn1)
        first = net.blocks[0][0]
        first.conv_dw.weight.copy_(self.first_dw.weight)
        copy_bn_(first.bn1, self.first_bn1)
        first.conv_pw.weight.copy_(self.first_pw.weight)
        copy_bn_(first.bn2, self.first_bn2)
        for s, stage in enumerate(self.stages):
            for j, blk in enumerate(stage[: arch.d[s]]):  # configured by set_active_subnet
                net.blocks[s + 1][j] = blk.get_static()
        final = net.blocks[-1][0]
        final.conv.weight.copy_(self.final_conv.weight)
        copy_bn_(final.bn1, self.final_bn)
        net.conv_head.weight.copy_(self.conv_head.weight)
        net.classifier.weight.copy_(self.classifier.weight)
        net.classifier.bias.copy_(self.classifier.bias)
        net.train(self.training)
        return net


# ------------------------------------------------------------------------------------- builders
def _resolutions(resolutions: Sequence[int] | range | None, default: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(r) for r in (default if resolutions is None else resolutions))


def _build_ofa(width_mult: float, *, num_classes: int = 1000, in_chans: int = 3,
               resolutions: Sequence[int] | range | None = None, dropout: float = 0.1,
               kernel_sizes: Sequence[int] = (3, 5, 7), expand_ratios: Sequence[int] = (3, 4, 6),
               depths: Sequence[int] = (2, 3, 4)) -> OFAMobileNetV3:
    space = MobileNetV3Space(
        kernel_sizes=tuple(kernel_sizes), expand_ratios=tuple(expand_ratios), depths=tuple(depths), n_stages=5,
        resolutions=_resolutions(resolutions, tuple(range(128, 225, 4))),
    )
    config = MobileNetV3Config.ofa(width_mult, in_chans=in_chans, num_classes=num_classes, dropout=dropout)
    return OFAMobileNetV3(config, space)


def _pretrained(model: OFAMobileNetV3, pretrained: str | None, name: str) -> OFAMobileNetV3:
    if pretrained is None:
        return model
    from supernets.pretrained import load_ofa_pretrained  # imports this module

    return load_ofa_pretrained(model, pretrained, name=name)


#: ofa_mbv3_tiny: stem, first block, 3 elastic stages, final expand, feature mix; stem stride 1 for 24-32 px.
TINY_WIDTHS = (16, 16, 24, 40, 64, 192, 256)
TINY_STRIDES = (2, 2, 2)
TINY_ACTS = ("relu", "h_swish", "h_swish")
TINY_SE = (False, True, True)
TINY_RESOLUTIONS = (24, 28, 32)


# ---------------------------------------------------------------------------------- registered
@register_supernet
def ofa_mbv3_w10(*, pretrained: str | None = None, **kwargs) -> OFAMobileNetV3:
    """OFA-MobileNetV3 w1.0 (7.67 M params max, 1000 classes); kwargs: num_classes, in_chans, resolutions.
    ``pretrained``: MIT's published ``ofa_mbv3_d234_e346_k357_w1.0`` file (:mod:`supernets.pretrained`)."""
    return _pretrained(_build_ofa(1.0, **kwargs), pretrained, "ofa_mbv3_w10")


@register_supernet
def ofa_mbv3_w12(*, pretrained: str | None = None, **kwargs) -> OFAMobileNetV3:
    """OFA-MobileNetV3 w1.2 (stem 24, stages 32/48/96/136/192, head 1152 -> 1536); ``pretrained``: MIT's
    published ``ofa_mbv3_d234_e346_k357_w1.2`` file."""
    return _pretrained(_build_ofa(1.2, **kwargs), pretrained, "ofa_mbv3_w12")


@register_supernet
def ofa_mbv3_tiny(*, num_classes: int = 10, in_chans: int = 1, resolutions: Sequence[int] | range | None = None,
                  dropout: float = 0.1) -> OFAMobileNetV3:
    """A 3-stage OFA-MobileNetV3 for 24-32 px inputs (MNIST by default: 1 channel, 10 classes); stem
    stride 1, widths 16 | 24/40/64 | 192 -> 256, kernel {3,5,7}, expand {3,4,6}, depth {1,2,3}."""
    space = MobileNetV3Space(name="ofa_mbv3_tiny", kernel_sizes=(3, 5, 7), expand_ratios=(3, 4, 6), depths=(1, 2, 3),
                             n_stages=3, resolutions=_resolutions(resolutions, TINY_RESOLUTIONS))
    w = TINY_WIDTHS
    config = MobileNetV3Config(stem_chs=w[0], first_chs=w[1], stage_chs=w[2:5], final_chs=w[5], head_chs=w[6],
                               strides=TINY_STRIDES, acts=TINY_ACTS, se=TINY_SE, stem_stride=1, in_chans=in_chans,
                               num_classes=num_classes, dropout=dropout)
    return OFAMobileNetV3(config, space)
