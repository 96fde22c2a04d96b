"""The elastic ViT's measurable layers (:mod:`supernets.measurable`): patch embedding, transformer blocks, head.

Key grammar (``-`` separated ``name:value`` fields after the layer kind)::

    vitembed-in:32x32x3-patch:4-dim:96                           (patch conv + class token + position embedding)
    vitblock-tokens:65-dim:96-heads:3-hd:32-mlp:384              (pre-norm block; "-rel:14" with AutoFormer's
                                                                  relative positions)
    vithead-tokens:65-dim:96-out:10                              (final LayerNorm, class token, classifier)

Slots, in network order: the patch embedding (choice: embed dim), one slot per layer (choice: embed dim x heads x
MLP ratio; unused beyond the depth), the head (embed dim). No fixed layers: every layer's width follows ``embed``.
Blocks are keyed by what their latency depends on (tokens, embed dim, heads and head width, MLP width), so the
blocks of every layer share table rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from supernets.layers.attention import embed_tokens
from supernets.measurable import MeasurableLayers
from supernets.vit_space import VitSpace

__all__ = ["VitLayer", "VitMeasurable"]


@dataclass(frozen=True)
class VitLayer:
    """One measurable layer of an elastic ViT subnet."""

    kind: str  # embed | block | head
    tokens: int
    dim: int
    heads: int = 0
    head_dim: int = 0
    mlp: int = 0
    rel_pos: int = 0  # AutoFormer's relative position distance (0: none)
    image: int = 0  # embed: input size in pixels
    in_chans: int = 0
    patch: int = 0
    out: int = 0  # head: classes
    #: the supernet block (layer index) whose weights a block is built from (not part of the key)
    where: int = field(default=0, compare=False)

    @property
    def key(self) -> str:
        if self.kind == "embed":
            return f"vitembed-in:{self.image}x{self.image}x{self.in_chans}-patch:{self.patch}-dim:{self.dim}"
        if self.kind == "block":
            return (f"vitblock-tokens:{self.tokens}-dim:{self.dim}-heads:{self.heads}-hd:{self.head_dim}-mlp:{self.mlp}"
                    + (f"-rel:{self.rel_pos}" if self.rel_pos else ""))
        if self.kind == "head":
            return f"vithead-tokens:{self.tokens}-dim:{self.dim}-out:{self.out}"
        raise ValueError(f"unknown ViT layer kind {self.kind!r}; expected embed, block or head")

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.kind == "embed":
            return (1, self.in_chans, self.image, self.image)
        return (1, self.tokens, self.dim)

    def features(self) -> dict[str, float]:
        m, n, e = 1e-6, self.tokens, self.dim
        f = {"const": 1.0}
        if self.kind == "embed":
            f["macs_conv"] = (n - 1) * e * self.in_chans * self.patch**2 * m
            f["act_io"] = (self.in_chans * self.image**2 + n * e) * m
        elif self.kind == "block":
            inner = self.heads * self.head_dim
            products = (4 if self.rel_pos else 2) * n * n * inner
            f["macs_fc"] = (n * e * 4 * inner + 2 * n * e * self.mlp + products) * m
            f["act_io"] = 2 * n * e * m
            f["act_mid"] = (n * 4 * inner + self.heads * n * n + n * self.mlp) * m
        else:
            f["macs_fc"] = e * self.out * m
            f["act_io"] = n * e * m
        return f


class _Embed(nn.Module):
    def __init__(self, subnet: nn.Module) -> None:
        super().__init__()
        self.subnet = subnet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.subnet
        return embed_tokens(x, s.patch_embed.weight, s.patch_embed.bias, s.cls_token, s.pos_embed, s.patch_size)


class _Head(nn.Module):
    def __init__(self, norm: nn.LayerNorm, head: nn.Linear) -> None:
        super().__init__()
        self.norm, self.head = norm, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.layer_norm(x[:, 0], self.norm.normalized_shape, self.norm.weight, self.norm.bias,
                                      self.norm.eps))


class VitMeasurable(MeasurableLayers):
    """The measurable layers of an :class:`~supernets.vit.ElasticViT` over ``space`` (default: its own)."""

    def __init__(self, supernet: Any, space: VitSpace | None = None) -> None:
        self.supernet = supernet
        self.space = supernet.space if space is None else space
        sp = self.space
        self.n_e, self.n_h, self.n_m = len(sp.embed_dims), len(sp.num_heads), len(sp.mlp_ratios)
        self.slot_group = (0, *([1] * sp.max_depth), 2)
        self.slot_elastic = (False, *([True] * sp.max_depth), False)
        self._grids: dict[int, list[list[VitLayer | None]]] = {}

    @property
    def n_choices(self) -> int:
        return self.n_e * self.n_h * self.n_m

    @property
    def description(self) -> dict[str, Any]:
        n = self.supernet
        return {"family": "vit", "patch_size": n.patch_size, "head_dim": n.head_dim, "rel_pos": n.rel_pos,
                "max_embed": n.max_embed, "in_chans": n.in_chans, "num_classes": n.num_classes}

    def with_space(self, space: VitSpace) -> VitMeasurable:
        return VitMeasurable(self.supernet, space)

    def input_shape(self, r: int) -> tuple[int, ...]:
        return (1, self.supernet.in_chans, r, r)

    def fixed_layers(self, r: int) -> list[VitLayer]:
        return []

    def slot_layers(self, r: int) -> list[list[VitLayer | None]]:
        if r not in self._grids:
            net, sp = self.supernet, self.space
            tokens = (r // net.patch_size) ** 2 + 1
            embed = [VitLayer("embed", tokens, e, image=r, in_chans=net.in_chans, patch=net.patch_size)
                     for e in sp.embed_dims]
            blocks = [[VitLayer("block", tokens, e, heads=h, head_dim=net.head_dim, mlp=int(e * m),
                                rel_pos=net.rel_pos or 0, where=j)
                       for e in sp.embed_dims for h in sp.num_heads for m in sp.mlp_ratios]
                      for j in range(sp.max_depth)]
            head = [VitLayer("head", tokens, e, out=net.num_classes) for e in sp.embed_dims]
            self._grids[r] = [embed, *blocks, head]
        return self._grids[r]

    def slot_choices(self, encoded: np.ndarray) -> np.ndarray:
        sp = self.space
        e = encoded[:, sp.group_slices["embed"]]
        h = encoded[:, sp.group_slices["heads"]]
        m = encoded[:, sp.group_slices["mlp"]]
        blocks = np.where(h >= 0, (e * self.n_h + h) * self.n_m + m, -1)
        return np.concatenate([e, blocks, e], axis=1)

    @torch.no_grad()
    def build(self, layer: VitLayer) -> nn.Module:
        """A static module of ``layer`` sliced from the supernet's weights (configures the supernet: set an arch
        again before running it)."""
        net, sp = self.supernet, self.space
        arch = sp.arch(r=layer.input_shape[-1] if layer.kind == "embed" else sp.resolutions[0], embed=layer.dim,
                       d=min(sp.depths), heads=[max(sp.num_heads)] * sp.max_depth,
                       mlp=[max(sp.mlp_ratios)] * sp.max_depth)
        if layer.kind == "block":
            block = net.blocks[layer.where]
            block.set_active(layer.heads, layer.mlp)
            return block.get_static(layer.dim)
        net.set_active_subnet(arch)
        sub = net.get_active_subnet()
        return _Embed(sub) if layer.kind == "embed" else _Head(sub.norm, sub.head)
