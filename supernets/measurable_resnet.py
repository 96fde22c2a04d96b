"""OFA-ResNet's measurable layers (:mod:`supernets.measurable`): stem convs, bottlenecks and head, with keys.

Key grammar (``-`` separated ``name:value`` fields after the layer kind)::

    conv-in:224x224x3-out:112x112x24-k:3-s:2                     (stem conv + BN + ReLU)
    conv-in:112x112x24-out:112x112x24-k:3-s:1-res:1              (the stem's residual conv, x + f(x))
    conv-in:112x112x24-out:112x112x64-k:3-s:1-pool:56            (stem conv, then 3x3/2 max-pool to 56 px)
    bottleneck-in:56x56x64-out:56x56x256-mid:64-s:1-down:1       (down:1 = avg-pool + 1x1 conv shortcut)
    head-in:7x7x2048-out:1000                                    (global average pool + classifier)

Slots, in network order: stem conv 1 (choice ``w[0]``), the stem's residual conv (``w[0]``, unused when
``d[0]`` skips it), stem conv 2 (``w[0], w[1]``), every bottleneck slot (the first block of a stage: input
width, output width and expand ratio; the others: output width and expand ratio), the head (last stage's
width). There are no fixed layers: every layer's shape follows a width gene.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from supernets.layers.resnet import ResidualConvBnAct, static_linear
from supernets.measurable import MeasurableLayers
from supernets.space import ResNetSpace

__all__ = ["ResNetLayer", "ResNetMeasurable"]


def _out(h: int, k: int, stride: int) -> int:
    return (h + 2 * (k // 2) - k) // stride + 1


@dataclass(frozen=True)
class ResNetLayer:
    """One measurable layer of an OFA-ResNet subnet (square maps)."""

    kind: str  # conv | bottleneck | head
    h_in: int
    c_in: int
    h_out: int
    c_out: int
    mid: int = 0
    kernel: int = 3
    stride: int = 1
    residual: bool = False
    pool_to: int = 0  # max-pool after the conv, output size (0: none)
    down: bool = False
    #: where to take it from in the supernet (not part of the key)
    where: tuple = field(default=(), compare=False)

    @property
    def key(self) -> str:
        io = f"in:{self.h_in}x{self.h_in}x{self.c_in}-out:{self.h_out}x{self.h_out}x{self.c_out}"
        if self.kind == "conv":
            return (f"conv-{io}-k:{self.kernel}-s:{self.stride}" + ("-res:1" if self.residual else "")
                    + (f"-pool:{self.pool_to}" if self.pool_to else ""))
        if self.kind == "bottleneck":
            return f"bottleneck-{io}-mid:{self.mid}-s:{self.stride}-down:{int(self.down)}"
        if self.kind == "head":
            return f"head-in:{self.h_in}x{self.h_in}x{self.c_in}-out:{self.c_out}"
        raise ValueError(f"unknown OFA-ResNet layer kind {self.kind!r}; expected conv, bottleneck or head")

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.c_in, self.h_in, self.h_in)

    def features(self) -> dict[str, float]:
        m = 1e-6
        hi2, ho2 = self.h_in**2, self.h_out**2
        f = {"const": 1.0}
        if self.kind == "conv":
            f["macs_conv"] = ho2 * self.c_in * self.c_out * self.kernel**2 * m
            f["act_io"] = (hi2 * self.c_in + ho2 * self.c_out * (2 if self.residual else 1)) * m
            if self.pool_to:
                f["act_mid"] = (ho2 + self.pool_to**2) * self.c_out * m
        elif self.kind == "bottleneck":
            f["macs_pw"] = (hi2 * self.c_in * self.mid + ho2 * self.mid * self.c_out
                            + (ho2 * self.c_in * self.c_out if self.down else 0)) * m
            f["macs_conv"] = ho2 * self.mid * self.mid * 9 * m
            f["act_mid"] = (hi2 + ho2) * self.mid * m
            f["act_io"] = (hi2 * self.c_in + 2 * ho2 * self.c_out) * m
        else:
            f["macs_fc"] = self.c_in * self.c_out * m
            f["act_io"] = hi2 * self.c_in * m
        return f


class _PoolLinear(nn.Module):
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean((2, 3)))


class ResNetMeasurable(MeasurableLayers):
    """The measurable layers of an :class:`~supernets.ofa_resnet.OFAResNet` over ``space`` (default: its own)."""

    def __init__(self, supernet: Any, space: ResNetSpace | None = None) -> None:
        self.supernet = supernet
        self.space = supernet.space if space is None else space
        sp = self.space
        self.n_w, self.n_e = len(sp.width_mults), len(sp.expand_ratios)
        groups = [0, 0, 0]
        elastic = [False, False, False]
        for s, n in enumerate(sp.stage_slots):
            groups += [s + 1] * n
            elastic += [True] * n
        self.slot_group = (*groups, sp.n_stages + 1)
        self.slot_elastic = (*elastic, False)
        self._grids: dict[int, list[list[ResNetLayer | None]]] = {}

    @property
    def n_choices(self) -> int:
        return self.n_w * self.n_w * self.n_e

    @property
    def description(self) -> dict[str, Any]:
        n = self.supernet
        return {"family": "ofa_resnet", "input_widths": list(n.input_widths), "mid_input_widths":
                list(n.mid_input_widths), "stage_widths": [list(w) for w in n.stage_widths],
                "stage_strides": list(n.stage_strides), "stem_stride": n.stem_stride,
                "stem_pool": isinstance(n.stem_pool, nn.MaxPool2d), "in_chans": n.in_chans,
                "num_classes": n.num_classes}

    def with_space(self, space: ResNetSpace) -> ResNetMeasurable:
        return ResNetMeasurable(self.supernet, space)

    def input_shape(self, r: int) -> tuple[int, ...]:
        return (1, self.supernet.in_chans, r, r)

    def fixed_layers(self, r: int) -> list[ResNetLayer]:
        return []

    def slot_layers(self, r: int) -> list[list[ResNetLayer | None]]:
        if r not in self._grids:
            self._grids[r] = self._slot_layers(r)
        return self._grids[r]

    def _slot_layers(self, r: int) -> list[list[ResNetLayer | None]]:
        net, sp = self.supernet, self.space
        mid_in, inp = net.mid_input_widths, net.input_widths
        h = _out(r, 3, net.stem_stride)
        pooled = isinstance(net.stem_pool, nn.MaxPool2d)
        h_pool = _out(h, 3, 2) if pooled else 0
        slots: list[list[ResNetLayer | None]] = [
            [ResNetLayer("conv", r, net.in_chans, h, mid_in[a], stride=net.stem_stride, where=("stem_conv1",))
             for a in range(self.n_w)],
            [ResNetLayer("conv", h, mid_in[a], h, mid_in[a], residual=True, where=("stem_block",))
             for a in range(self.n_w)],
            [ResNetLayer("conv", h, mid_in[a], h, inp[b], pool_to=h_pool, where=("stem_conv2",))
             for a in range(self.n_w) for b in range(self.n_w)],
        ]
        h = h_pool or h
        in_widths = inp
        for s, stage in enumerate(net.stages):
            widths = net.stage_widths[s]
            for j, block in enumerate(stage[: sp.stage_slots[s]]):
                h_out = _out(h, 3, block.stride)
                ins = range(self.n_w) if j == 0 else [None]
                slots.append([
                    ResNetLayer("bottleneck", h, in_widths[a] if a is not None else widths[b], h_out, widths[b],
                                mid=block.mid_channels(widths[b], e), stride=block.stride,
                                down=not block.identity_shortcut, where=(s, j, widths[b], e))
                    for a in ins for b in range(self.n_w) for e in sp.expand_ratios])
                h = h_out
            in_widths = widths
        slots.append([ResNetLayer("head", h, w, 1, net.num_classes, where=("head",)) for w in in_widths])
        return slots

    def slot_choices(self, encoded: np.ndarray) -> np.ndarray:
        sp = self.space
        x = encoded
        w = x[:, sp.group_slices["w"]]
        e = x[:, sp.group_slices["e"]]
        d0 = x[:, sp.group_slices["d"].start]
        n = len(x)
        cols = [w[:, 0], np.where(d0 == 1, w[:, 0], -1), w[:, 0] * self.n_w + w[:, 1]]
        offset = 0
        w_in = w[:, 1]
        for s, n_slots in enumerate(sp.stage_slots):
            w_out = w[:, 2 + s]
            for j in range(n_slots):
                ej = e[:, offset + j]
                c = w_out * self.n_e + ej
                if j == 0:
                    c = c + w_in * self.n_w * self.n_e
                cols.append(np.where(ej >= 0, c, -1))
            offset += n_slots
            w_in = w_out
        cols.append(w_in)
        return np.stack(cols, axis=1).reshape(n, -1)

    @torch.no_grad()
    def build(self, layer: ResNetLayer) -> nn.Module:
        """A static module of ``layer`` sliced from the supernet's weights (configures the supernet's blocks:
        set an arch again before running it)."""
        net = self.supernet
        where = layer.where
        if where[0] in ("stem_conv1", "stem_block", "stem_conv2"):
            conv = getattr(net, where[0])
            conv.active_out_channels = layer.c_out
            static = conv.get_static(layer.c_in, ResidualConvBnAct) if layer.residual else conv.get_static(layer.c_in)
            return nn.Sequential(static, nn.MaxPool2d(3, 2, padding=1)) if layer.pool_to else static
        if where[0] == "head":
            return _PoolLinear(static_linear(net.classifier, layer.c_in))
        s, j, width, e = where
        block = net.stages[s][j]
        block.set_active(width, e)
        return block.get_static(layer.c_in)
