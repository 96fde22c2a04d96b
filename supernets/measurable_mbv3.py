"""OFA-MobileNetV3's measurable layers (:mod:`supernets.measurable`): layer shapes of a subnet at a given
resolution, and the latency-table keys they give.

A latency table stores one measurement per *layer signature*: everything a layer's latency depends on
(input HxWxC, output HxWxC, middle channels, kernel, stride, skip, SE, activation). :class:`MBv3Geometry`
derives those signatures analytically from a supernet's fixed shape (``MobileNetV3Config``) so that a
table can be filled (build script), converted (Note10) or predicted (layer-cost model) for any
``(resolution, stage, slot, kernel, expand)`` a search space can use, without building the network.

Key grammar (``-`` separated ``name:value`` fields after the layer kind)::

    stem-in:192x192x3-out:96x96x24-k:3-s:2-act:hswish
    ds-in:96x96x24-out:96x96x24-k:3-s:1-skip:1-act:relu                (fixed first block, expand 1)
    mbconv-in:96x96x24-out:48x48x32-mid:144-k:3-s:2-skip:0-se:0-act:relu
    final-in:6x6x192-out:6x6x1152-act:hswish                           (1x1 expand before pooling)
    head-in:6x6x1152-mix:1536-out:1000-act:hswish                      (pool + 1x1 mix + classifier)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

from supernets.measurable import FEATURE_NAMES, MeasurableLayers
from supernets.space import MobileNetV3Space
from supernets.utils import make_divisible

__all__ = ["FIXED_KINDS", "LayerSpec", "MBv3Geometry", "mid_channels", "se_reduce_channels"]

#: Fixed (non-searchable) layers of every subnet, in network order.
FIXED_KINDS = ("stem", "ds", "final", "head")
_ACT_TOKEN = {"relu": "relu", "h_swish": "hswish", "hswish": "hswish"}


def mid_channels(in_chs: int, expand: float) -> int:
    """Middle width of an inverted bottleneck (OFA: ``make_divisible(round(in * e), 8)``)."""
    return make_divisible(round(in_chs * expand), 8)


def se_reduce_channels(mid: int) -> int:
    """OFA's squeeze-and-excitation reduce width for ``mid`` channels."""
    return make_divisible(mid // 4, 8)


def _down(h: int, stride: int) -> int:
    # 'same' padding (and OFA's k//2 padding for odd kernels): ceil(h / stride).
    return (h - 1) // stride + 1


@dataclass(frozen=True)
class LayerSpec:
    """One measurable layer (a block or a fixed part) of a subnet, square feature maps."""

    kind: str
    h_in: int
    c_in: int
    h_out: int
    c_out: int
    mid: int = 0
    kernel: int = 1
    stride: int = 1
    skip: bool = False
    se: bool = False
    act: str = "relu"
    classes: int = 0
    #: (stage, slot in stage, kernel, expand) of an elastic block: where to cut it from a subnet (not in the key)
    where: tuple = field(default=(), compare=False)

    @property
    def key(self) -> str:
        """The table key: says everything the layer's latency depends on."""
        a = _ACT_TOKEN[self.act]
        io = f"in:{self.h_in}x{self.h_in}x{self.c_in}"
        if self.kind == "stem":
            return f"stem-{io}-out:{self.h_out}x{self.h_out}x{self.c_out}-k:{self.kernel}-s:{self.stride}-act:{a}"
        if self.kind == "ds":
            return (f"ds-{io}-out:{self.h_out}x{self.h_out}x{self.c_out}-k:{self.kernel}-s:{self.stride}"
                    f"-skip:{int(self.skip)}-act:{a}")
        if self.kind == "mbconv":
            return (f"mbconv-{io}-out:{self.h_out}x{self.h_out}x{self.c_out}-mid:{self.mid}-k:{self.kernel}"
                    f"-s:{self.stride}-skip:{int(self.skip)}-se:{int(self.se)}-act:{a}")
        if self.kind == "final":
            return f"final-{io}-out:{self.h_out}x{self.h_out}x{self.c_out}-act:{a}"
        if self.kind == "head":
            return f"head-{io}-mix:{self.mid}-out:{self.classes}-act:{a}"
        raise ValueError(f"unknown layer kind {self.kind!r}; expected one of {[*FIXED_KINDS, 'mbconv']}")

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW input shape at batch 1 (what the build script exports and times)."""
        return (1, self.c_in, self.h_in, self.h_in)

    # ------------------------------------------------------------------------------- features
    def features(self) -> dict[str, float]:
        """Shape-derived cost terms (MACs by operator type, activation elements moved, SE and
        h-swish work, a per-layer constant) used by the layer-cost model. Units: millions."""
        f = dict.fromkeys(FEATURE_NAMES, 0.0)
        hi2, ho2 = self.h_in**2, self.h_out**2
        m = 1e-6
        f["const"] = 1.0
        if self.kind == "stem":
            f["macs_conv"] = ho2 * self.c_in * self.c_out * self.kernel**2 * m
            f["act_io"] = (hi2 * self.c_in + ho2 * self.c_out) * m
            f["act_mid"] = 0.0
        elif self.kind in ("ds", "mbconv"):
            mid = self.mid if self.kind == "mbconv" else self.c_in
            if self.kind == "mbconv":
                f["macs_pw"] += hi2 * self.c_in * mid * m
                f["act_mid"] += hi2 * mid * m  # expanded map written and read
            f[f"macs_dw{self.kernel}"] = ho2 * mid * self.kernel**2 * m
            f["macs_pw"] += ho2 * mid * self.c_out * m
            f["act_mid"] += ho2 * mid * m
            f["act_io"] = (hi2 * self.c_in + ho2 * self.c_out * (2 if self.skip else 1)) * m
            if self.se:
                rd = se_reduce_channels(mid)
                f["se"] = (ho2 * mid * 2 + 2 * mid * rd) * m  # pool + rescale passes, two tiny convs
                f["se_const"] = 1.0
        elif self.kind == "final":
            f["macs_pw"] = hi2 * self.c_in * self.c_out * m
            f["act_io"] = (hi2 * self.c_in + ho2 * self.c_out) * m
        elif self.kind == "head":
            f["macs_fc"] = (self.c_in * self.mid + self.mid * self.classes) * m
            f["act_io"] = hi2 * self.c_in * m
        if self.act in ("h_swish", "hswish"):
            f["hswish"] = (f["act_mid"] + (ho2 * self.c_out * m if self.kind in ("stem", "final") else 0.0))
        return f


@dataclass(frozen=True)
class MBv3Geometry(MeasurableLayers):
    """The fixed shape of an OFA-MobileNetV3 supernet plus its search space: its measurable layers.

    Attributes mirror ``supernets.ofa_mbv3.MobileNetV3Config`` (duck-typed so that a table can be
    converted without building a module). ``supernet`` (optional) is where :meth:`build` cuts layers from.
    Slots: the ``n_stages * max_depth`` elastic blocks; a slot's choice is ``kernel_index * n_expands +
    expand_index``; stem, first block, final expand and head are fixed layers.
    """

    space: MobileNetV3Space
    stem_chs: int
    first_chs: int
    stage_chs: tuple[int, ...]
    final_chs: int
    head_chs: int
    strides: tuple[int, ...]
    acts: tuple[str, ...]
    se: tuple[bool, ...]
    stem_stride: int = 2
    in_chans: int = 3
    num_classes: int = 1000
    supernet: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(cls, space: MobileNetV3Space, config: Any) -> MBv3Geometry:
        """From a supernet's ``MobileNetV3Config`` (``supernet.config``)."""
        return cls(space=space, stem_chs=config.stem_chs, first_chs=config.first_chs,
                   stage_chs=tuple(config.stage_chs), final_chs=config.final_chs, head_chs=config.head_chs,
                   strides=tuple(config.strides), acts=tuple(config.acts), se=tuple(bool(s) for s in config.se),
                   stem_stride=config.stem_stride, in_chans=config.in_chans, num_classes=config.num_classes)

    @classmethod
    def from_supernet(cls, supernet: Any) -> MBv3Geometry:
        if not hasattr(supernet, "config") or not isinstance(supernet.space, MobileNetV3Space):
            raise ValueError(
                f"latency geometry needs an OFA-MobileNetV3 supernet (with .config and a MobileNetV3Space), "
                f"got {type(supernet).__name__}"
            )
        return dataclasses.replace(cls.from_config(supernet.space, supernet.config), supernet=supernet)

    def with_space(self, space: MobileNetV3Space) -> MBv3Geometry:
        """The same network shape over another space (e.g. one whose resolutions reach 260)."""
        return dataclasses.replace(self, space=space)

    # ------------------------------------------------------------------------------- layers
    @property
    def stage_in_chs(self) -> tuple[int, ...]:
        return (self.first_chs, *self.stage_chs[:-1])

    def fixed_layers(self, r: int) -> list[LayerSpec]:
        """Stem, first block, final expand and head at input resolution ``r``."""
        h = _down(r, self.stem_stride)
        out = [
            LayerSpec("stem", r, self.in_chans, h, self.stem_chs, kernel=3, stride=self.stem_stride, act="h_swish"),
            LayerSpec("ds", h, self.stem_chs, h, self.first_chs, kernel=3, stride=1,
                      skip=self.stem_chs == self.first_chs, act="relu"),
        ]
        h_last = self.stage_hw(r)[-1]
        out.append(LayerSpec("final", h_last, self.stage_chs[-1], h_last, self.final_chs, act="h_swish"))
        out.append(LayerSpec("head", h_last, self.final_chs, 1, self.num_classes, mid=self.head_chs,
                             act="h_swish", classes=self.num_classes))
        return out

    def stage_hw(self, r: int) -> list[int]:
        """Output feature-map size of each elastic stage."""
        h = _down(r, self.stem_stride)
        hs = []
        for s in self.strides:
            h = _down(h, s)
            hs.append(h)
        return hs

    def block(self, r: int, stage: int, slot: int, kernel: int, expand: float) -> LayerSpec:
        """The block at ``(stage, slot)`` with kernel ``kernel`` and expand ratio ``expand`` at resolution ``r``."""
        h_out = self.stage_hw(r)[stage]
        if slot == 0:
            h_in = _down(r, self.stem_stride) if stage == 0 else self.stage_hw(r)[stage - 1]
            c_in, stride = self.stage_in_chs[stage], self.strides[stage]
        else:
            h_in, c_in, stride = h_out, self.stage_chs[stage], 1
        c_out = self.stage_chs[stage]
        return LayerSpec("mbconv", h_in, c_in, h_out, c_out, mid=mid_channels(c_in, expand), kernel=kernel,
                         stride=stride, skip=stride == 1 and c_in == c_out, se=self.se[stage], act=self.acts[stage],
                         where=(stage, slot, kernel, expand))

    def block_grid(self, r: int) -> list[tuple[int, int, int, LayerSpec]]:
        """Every ``(slot, kernel index, expand index, spec)`` the space can use at resolution ``r``
        (``slot`` is the flat slot index ``stage * max_depth + j``)."""
        sp = self.space
        out = []
        for stage in range(sp.n_stages):
            for j in range(sp.max_depth):
                for ki, k in enumerate(sp.kernel_sizes):
                    for ei, e in enumerate(sp.expand_ratios):
                        out.append((stage * sp.max_depth + j, ki, ei, self.block(r, stage, j, k, e)))
        return out

    def layers_of(self, r: int, d: Sequence[int], ks: Sequence[int | None], e: Sequence[float | None]) -> list[LayerSpec]:
        """All layers of one subnet given plain gene values (slots beyond a stage's depth ignored)."""
        out = self.fixed_layers(r)[:2]
        md = self.space.max_depth
        for s in range(self.space.n_stages):
            for j in range(d[s]):
                out.append(self.block(r, s, j, ks[s * md + j], e[s * md + j]))
        out += self.fixed_layers(r)[2:]
        return out

    def distinct_layers(self, resolutions: Sequence[int] | None = None) -> dict[tuple[int, str], LayerSpec]:
        """Every ``(resolution, key) -> spec`` any arch of the space can use (what a full table holds)."""
        out: dict[tuple[int, str], LayerSpec] = {}
        for r in resolutions if resolutions is not None else self.space.resolutions:
            for spec in self.fixed_layers(r):
                out[(r, spec.key)] = spec
            for _, _, _, spec in self.block_grid(r):
                out[(r, spec.key)] = spec
        return out

    @cached_property
    def description(self) -> dict[str, Any]:
        return {"stem_chs": self.stem_chs, "first_chs": self.first_chs, "stage_chs": list(self.stage_chs),
                "final_chs": self.final_chs, "head_chs": self.head_chs, "strides": list(self.strides),
                "acts": list(self.acts), "se": list(self.se), "stem_stride": self.stem_stride,
                "in_chans": self.in_chans, "num_classes": self.num_classes}

    # ------------------------------------------------------------------------------- protocol
    @property
    def slot_group(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(s // self.space.max_depth for s in range(self.space.n_slots))

    @property
    def slot_elastic(self) -> tuple[bool, ...]:  # type: ignore[override]
        return (True,) * self.space.n_slots

    @property
    def n_choices(self) -> int:
        return len(self.space.kernel_sizes) * len(self.space.expand_ratios)

    @property
    def choice_tags(self) -> list[tuple[tuple[str, ...], np.ndarray]]:
        sp = self.space
        c = np.arange(self.n_choices)
        n_e = len(sp.expand_ratios)
        return [(tuple(f"k{k:g}" for k in sp.kernel_sizes), c // n_e),
                (tuple(f"e{e:g}" for e in sp.expand_ratios), c % n_e)]

    def input_shape(self, r: int) -> tuple[int, ...]:
        return (1, self.in_chans, r, r)

    def slot_layers(self, r: int) -> list[list[LayerSpec | None]]:
        sp = self.space
        return [[self.block(r, s, j, k, e) for k in sp.kernel_sizes for e in sp.expand_ratios]
                for s in range(sp.n_stages) for j in range(sp.max_depth)]

    def slot_choices(self, encoded: np.ndarray) -> np.ndarray:
        k = encoded[:, self.space.group_slices["ks"]]
        e = encoded[:, self.space.group_slices["e"]]
        return np.where(k >= 0, k * len(self.space.expand_ratios) + e, -1)

    def layers(self, arch: Any) -> list[LayerSpec]:
        return self.layers_of(arch.r, arch.d, arch.ks, arch.e)

    def build(self, layer: LayerSpec) -> Any:
        """Cut ``layer`` out of a static subnet of ``self.supernet`` (one extraction per (kernel, expand))."""
        if self.supernet is None:
            raise ValueError("MBv3Geometry.build needs the supernet: make the geometry with from_supernet()")
        k, e = layer.where[2:] if layer.kind == "mbconv" else (self.space.kernel_sizes[0], self.space.expand_ratios[0])
        net = _extracted(self.supernet, k, e)
        if layer.kind == "stem":
            return nn.Sequential(net.conv_stem, net.bn1)  # timm: bn1 is BatchNormAct2d (BN + h-swish)
        if layer.kind == "ds":
            return net.blocks[0][0]
        if layer.kind == "mbconv":
            stage, j = layer.where[:2]
            return net.blocks[stage + 1][j]
        if layer.kind == "final":
            return net.blocks[-1][0]
        if layer.kind == "head":
            return _Head(net)
        raise ValueError(f"no module for layer kind {layer.kind!r}")


def _extracted(supernet: Any, k: int, e: float) -> Any:
    """The static max-depth subnet with kernel ``k`` and expand ``e`` everywhere (cached on the supernet)."""
    cache = supernet.__dict__.setdefault("_latency_static_nets", {})
    if (k, e) not in cache:
        sp = supernet.space
        n = sp.n_slots
        arch = sp.arch(r=sp.resolutions[0], d=[sp.max_depth] * sp.n_stages, ks=[k] * n, e=[e] * n)
        supernet.set_active_subnet(arch)
        cache[(k, e)] = supernet.get_active_subnet().eval()
    return cache[(k, e)]


class _Head(nn.Module):
    """timm MobileNetV3 head (pool -> 1x1 mix -> act -> classifier) as a module of its own."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(x)
