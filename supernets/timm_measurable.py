"""The measurable layers (:mod:`supernets.measurable`) of a timm CNN supernet (:mod:`supernets.timm_supernet`).

Layers in network order: the model's stem, one slot per block (its choices: every kernel x width the block offers,
kernel-major; blocks the wrapper keeps fixed have one choice, and a block its stage's depth leaves out is unused),
and the head. Keys name the model and the block's place, so tables of two timm models never mix::

    tf_efficientnet_lite0-stem-in:224x224x3
    tf_efficientnet_lite0-blocks.2.1-in:56x56x24-mid:72-k:5
    tf_efficientnet_lite0-head-in:7x7x320-out:1000

Cost features: elastic blocks in closed form (the MACs :meth:`TimmSupernet.macs_params` sums; squeeze-excitation
MACs go under ``macs_pw``, they are 1x1 convs), the stem, the head and fixed blocks counted by torch's FLOP
counter on the built module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from timm.models.efficientnet import EfficientNet
from torch import nn

from supernets.measurable import MeasurableLayers
from supernets.profile import count_macs
from supernets.timm_blocks import block_costs, cut_bottleneck, cut_ir, mid_layers, stage_slots
from supernets.timm_space import TimmSpace

__all__ = ["TimmLayer", "TimmMeasurable"]


@dataclass(frozen=True)
class TimmLayer:
    """One measurable layer of a timm supernet's subnet (square maps)."""

    model: str
    kind: str  # stem | block | head
    h_in: int
    c_in: int
    where: str = ""  # blocks.<stage>.<index>
    mid: int = 0
    kernel: int = 0
    c_out: int = 0  # head: classes
    feats: tuple[tuple[str, float], ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        io = f"in:{self.h_in}x{self.h_in}x{self.c_in}"
        if self.kind == "block":
            return f"{self.model}-{self.where}-{io}-mid:{self.mid}-k:{self.kernel}"
        if self.kind == "head":
            return f"{self.model}-head-{io}-out:{self.c_out}"
        return f"{self.model}-stem-{io}"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.c_in, self.h_in, self.h_in)

    def features(self) -> dict[str, float]:
        return dict(self.feats)


class _Part(nn.Module):
    """A timm model's stem or head, run as timm runs it (the stages left out)."""

    def __init__(self, model: nn.Module, part: str) -> None:
        super().__init__()
        saved = [(p, a, getattr(p, a)) for p, a in stage_slots(model)]
        try:
            for p, a, _ in saved:
                setattr(p, a, nn.Sequential())
            self.model = copy.deepcopy(model)
        finally:
            for p, a, stage in saved:
                setattr(p, a, stage)
        self.part = part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.part == "stem":
            if hasattr(m, "conv_stem"):
                return m.bn1(m.conv_stem(x))
            return m.maxpool(m.act1(m.bn1(m.conv1(x))))
        if isinstance(m, EfficientNet):
            x = m.bn2(m.conv_head(x))  # EfficientNet's 1x1 head conv runs before the pooling (MobileNetV3's after)
        return m.forward_head(x)


class TimmMeasurable(MeasurableLayers):
    """The measurable layers of a :class:`~supernets.timm_supernet.TimmSupernet` over ``space``."""

    def __init__(self, supernet: Any, space: TimmSpace | None = None) -> None:
        self.supernet = supernet
        self.space = supernet.space if space is None else space
        sp = self.space
        self.slot_group = tuple(sp.stage_of_slot(i)[0] for i in range(sp.n_slots))
        self.slot_elastic = tuple(bool(b) for b in sp.block_elastic)
        self._n_e = np.array([len(sp.expand_choices(i)) for i in range(sp.n_slots)])
        self._grids: dict[int, tuple[list[TimmLayer], list[list[TimmLayer]]]] = {}
        self._counted: dict[str, tuple[tuple[str, float], ...]] = {}

    @property
    def description(self) -> dict[str, Any]:
        n = self.supernet
        return {"family": "timm", "model": n.model_name, "in_chans": n.in_chans, "num_classes": n.num_classes,
                "stage_blocks": list(self.space.stage_blocks)}

    def with_space(self, space: TimmSpace) -> TimmMeasurable:
        return TimmMeasurable(self.supernet, space)

    def input_shape(self, r: int) -> tuple[int, ...]:
        return (1, self.supernet.in_chans, r, r)

    def fixed_layers(self, r: int) -> list[TimmLayer]:
        return self._grid(r)[0]

    def slot_layers(self, r: int) -> list[list[TimmLayer]]:
        return self._grid(r)[1]

    def slot_choices(self, encoded: np.ndarray) -> np.ndarray:
        sp = self.space
        e = encoded[:, sp.group_slices["e"]]
        ks = encoded[:, sp.group_slices["ks"]] if sp.has_kernels else np.zeros_like(e)
        return np.where(e >= 0, np.maximum(ks, 0) * self._n_e[None, :] + e, -1)

    def layers(self, arch: Any) -> list[TimmLayer]:
        """Stem, the used block slots, head: network order (the head is a fixed layer, listed last)."""
        fixed, grid = self._grid(arch.r)
        ch = self.slot_choices(self.space.encode([arch]))[0]
        return [fixed[0], *(grid[s][c] for s, c in enumerate(ch) if c >= 0), fixed[1]]

    # ------------------------------------------------------------------------------ layers
    def _grid(self, r: int) -> tuple[list[TimmLayer], list[list[TimmLayer]]]:
        if r not in self._grids:
            self._grids[r] = self._build_grid(r)
        return self._grids[r]

    def _build_grid(self, r: int) -> tuple[list[TimmLayer], list[list[TimmLayer]]]:
        net, sp = self.supernet, self.space
        name = net.model_name
        rr = np.array([r])
        slots: list[list[TimmLayer]] = []
        h_last = c_last = 0
        for i in range(sp.n_slots):
            s, j = sp.stage_of_slot(i)
            blk, kind = net.stages[s][j], net.stages[s].kinds[j]
            h_in, h_out = (int(v[0]) for v in net._block_sizes(s, j, rr))
            c_in = next(m for m in blk.modules() if isinstance(m, nn.Conv2d)).in_channels
            choices = []
            for k in sp.kernel_choices(i):
                for e in sp.expand_choices(i):
                    mid = net.mid_channels(i, e)
                    layer = TimmLayer(name, "block", h_in, c_in, where=f"blocks.{s}.{j}", mid=mid, kernel=k)
                    if kind == "fixed":
                        feats = self._count(layer)
                    else:
                        macs, _ = block_costs(blk, kind, np.array([mid]), np.array([k]), np.array([h_in]),
                                               np.array([h_out]))
                        cout = mid_layers(blk, kind)[1].out_channels
                        dw = h_out * h_out * mid * k * k if kind == "ir" else 0
                        feats = {"const": 1.0, "act_io": (h_in * h_in * c_in + h_out * h_out * cout) * 1e-6,
                                 "act_mid": (h_in * h_in + h_out * h_out) * mid * 1e-6}
                        if kind == "ir":
                            feats[f"macs_dw{k}" if k in (3, 5, 7) else "macs_conv"] = dw * 1e-6
                            feats["macs_pw"] = (int(macs[0]) - dw) * 1e-6
                            if not isinstance(blk.se, nn.Identity):
                                feats["se_const"] = 1.0
                        else:
                            k2 = blk.conv2.kernel_size[0] * blk.conv2.kernel_size[1]
                            conv = h_out * h_out * mid * mid * k2
                            down = _downsample_macs(blk, h_out)
                            feats["macs_conv"] = conv * 1e-6
                            feats["macs_pw"] = (int(macs[0]) - conv + down) * 1e-6
                        feats = tuple(feats.items())
                    choices.append(TimmLayer(name, "block", h_in, c_in, where=f"blocks.{s}.{j}", mid=mid, kernel=k,
                                             feats=feats))
            slots.append(choices)
            h_last = h_out
            c_last = _out_channels(blk)
        stem = TimmLayer(name, "stem", r, net.in_chans)
        head = TimmLayer(name, "head", h_last, c_last, c_out=net.num_classes)
        fixed = [TimmLayer(name, lay.kind, lay.h_in, lay.c_in, c_out=lay.c_out, feats=self._count(lay))
                 for lay in (stem, head)]
        return fixed, slots

    def _count(self, layer: TimmLayer) -> tuple[tuple[str, float], ...]:
        if layer.key not in self._counted:
            module = self.build(layer)
            macs = count_macs(module, layer.h_in, layer.c_in)
            self._counted[layer.key] = (("macs_conv", macs * 1e-6), ("act_io", layer.h_in**2 * layer.c_in * 1e-6),
                                        ("const", 1.0))
        return self._counted[layer.key]

    @torch.no_grad()
    def build(self, layer: TimmLayer) -> nn.Module:
        """A static module of ``layer`` with the supernet's weights (the block cut as the subnet would be)."""
        net = self.supernet
        if layer.kind in ("stem", "head"):
            return _Part(net.model, layer.kind)
        _, s, j = layer.where.split(".")
        s, j = int(s), int(j)
        stage = net.stages[s]
        blk = copy.deepcopy(stage[j])
        if stage.kinds[j] == "ir":
            cut_ir(blk, layer.mid, net._dw_kernel(s, stage, j, layer.mid, layer.kernel).detach().clone())
        elif stage.kinds[j] == "bottleneck":
            cut_bottleneck(blk, layer.mid)
        return blk


def _downsample_macs(blk: nn.Module, h_out: int) -> int:
    if blk.downsample is None:
        return 0
    return sum(h_out * h_out * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
               for m in blk.downsample.modules() if isinstance(m, nn.Conv2d))


def _out_channels(blk: nn.Module) -> int:
    """Output channels of a block: its last conv outside the squeeze-excitation and the shortcut."""
    convs = [m for n, m in blk.named_modules() if isinstance(m, nn.Conv2d) and not n.startswith(("se.", "downsample."))]
    return convs[-1].out_channels
