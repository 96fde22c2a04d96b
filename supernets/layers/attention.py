"""Elastic transformer layers with AutoFormer's weight entanglement (Chen et al., *AutoFormer: Searching
Transformers for Visual Recognition*, ICCV 2021): every subnet runs the leading slices of the largest weights.

A :class:`DynamicViTBlock` holds a pre-norm ViT block at its largest shape; ``active_heads`` and
``active_hidden`` choose the heads (each ``head_dim`` wide, so q/k/v width = heads x head_dim, independent of the
embedding dimension) and the MLP width, and the embedding dimension is the width of the tokens it receives.
``get_static`` returns timm's own ``Block`` with the sliced weights copied in; its parameter names mirror the
dynamic block's (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``, ``norm1``, ``norm2``).

AutoFormer's ImageNet supernets add 2-D relative position encoding (:class:`RelativePosition2D`) to keys and
values; timm's attention has none, so those blocks get :class:`RelPosAttention` inside timm's ``Block``.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Attention, Block
from torch import nn

from supernets.layers.dynamic import prefix

__all__ = ["DynamicViTBlock", "RelPosAttention", "RelativePosition2D", "attention", "embed_tokens"]

LN_EPS = 1e-6  # timm's ViT LayerNorm


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              rel: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Scaled dot-product attention of ``(B, H, N, hd)`` tensors, with AutoFormer's relative position terms
    ``rel = (r_k, r_v)`` (each ``(N, N, hd)``) added to the logits and to the output when given.

    Written with explicit matmuls (not ``scaled_dot_product_attention``) so that torch's FLOP counter and the
    ONNX exporter see every product the analytic MAC count includes.
    """
    q = q * q.shape[-1] ** -0.5
    logits = q @ k.transpose(-2, -1)
    if rel is not None:
        logits = logits + torch.einsum("bhqd,qkd->bhqk", q, rel[0])
    attn = logits.softmax(dim=-1)
    out = attn @ v
    if rel is not None:
        out = out + torch.einsum("bhqk,qkd->bhqd", attn, rel[1])
    return out


class RelativePosition2D(nn.Module):
    """AutoFormer's 2-D relative position table for one of keys/values: a vertical and a horizontal table of
    ``2 * max_relative_position + 2`` rows (row 0 is the class token's), each ``head_dim`` wide.

    For ``N`` tokens (a class token, then a square grid of patches in row-major order) it returns the
    ``(N, N, head_dim)`` embeddings ``table_v[dy] + table_h[dx]`` of the clipped grid offsets.
    """

    def __init__(self, head_dim: int, max_relative_position: int = 14) -> None:
        super().__init__()
        self.max_relative_position = int(max_relative_position)
        rows = 2 * self.max_relative_position + 2
        self.table_v = nn.Parameter(torch.zeros(rows, head_dim))
        self.table_h = nn.Parameter(torch.zeros(rows, head_dim))
        trunc_normal_(self.table_v, std=0.02)
        trunc_normal_(self.table_h, std=0.02)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a few token counts per module, kept for its lifetime
    def _indices(self, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        side = round((n_tokens - 1) ** 0.5)
        if side * side != n_tokens - 1:
            raise ValueError(f"relative position encoding needs a class token and a square patch grid; got "
                             f"{n_tokens} tokens")
        pos = torch.arange(n_tokens - 1)
        m = self.max_relative_position
        out = []
        for coord in (pos // side, pos % side):
            d = (coord[None, :] - coord[:, None]).clamp(-m, m) + m + 1
            out.append(F.pad(d, (1, 0, 1, 0), value=0))  # the class token's row and column use row 0
        return out[0], out[1]

    def forward(self, n_tokens: int) -> torch.Tensor:
        iv, ih = self._indices(int(n_tokens))
        return self.table_v[iv.to(self.table_v.device)] + self.table_h[ih.to(self.table_h.device)]


class RelPosAttention(nn.Module):
    """Multi-head self-attention with AutoFormer's relative position encoding, shaped for timm's ``Block``
    (``attn_layer=functools.partial(RelPosAttention, head_dim=64)``); timm's extra options are accepted and
    must be left at their defaults."""

    def __init__(self, dim: int, num_heads: int = 8, *, head_dim: int = 64, max_relative_position: int = 14,
                 qkv_bias: bool = True, **timm_kwargs: Any) -> None:
        super().__init__()
        self.num_heads, self.head_dim = int(num_heads), int(head_dim)
        inner = self.num_heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim)
        self.rel_k = RelativePosition2D(head_dim, max_relative_position)
        self.rel_v = RelativePosition2D(head_dim, max_relative_position)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("RelPosAttention takes no attention mask (ViT classification attends to all tokens)")
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = attention(q, k, v, (self.rel_k(n), self.rel_v(n)))
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class _Linear(nn.Linear):
    """A linear layer that runs its leading ``(out, in)`` slice."""

    def run(self, x: torch.Tensor, out_features: int) -> torch.Tensor:
        w = prefix(self.weight, out_features, x.shape[-1])
        return F.linear(x, w, None if self.bias is None else prefix(self.bias, out_features))


class _LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = x.shape[-1]
        return F.layer_norm(x, (e,), prefix(self.weight, e), prefix(self.bias, e), self.eps)


class DynamicAttention(nn.Module):
    """Attention at its largest shape: q/k/v of ``max_heads * head_dim`` each, laid out as three leading blocks
    (as timm's ``qkv``), so ``h`` heads use rows ``[:h*hd]`` of each block and columns ``[:embed]``."""

    def __init__(self, max_embed: int, max_heads: int, head_dim: int, rel_pos: int | None = None) -> None:
        super().__init__()
        self.max_heads, self.head_dim = int(max_heads), int(head_dim)
        inner = self.max_heads * self.head_dim
        self.qkv = _Linear(max_embed, 3 * inner)
        self.proj = _Linear(inner, max_embed)
        self.rel_pos = rel_pos
        self.rel_k = RelativePosition2D(head_dim, rel_pos) if rel_pos is not None else None
        self.rel_v = RelativePosition2D(head_dim, rel_pos) if rel_pos is not None else None
        self.active_heads = self.max_heads

    def qkv_weights(self, embed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The active ``(3 * h * hd, embed)`` weight and its bias."""
        h, inner = self.active_heads * self.head_dim, self.max_heads * self.head_dim
        w = self.qkv.weight.view(3, inner, -1)
        b = self.qkv.bias.view(3, inner)
        return prefix(w, 3, h, embed).reshape(3 * h, embed), prefix(b, 3, h).reshape(3 * h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, e = x.shape
        w, bias = self.qkv_weights(e)
        q, k, v = F.linear(x, w, bias).reshape(b, n, 3, self.active_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        rel = None if self.rel_k is None else (self.rel_k(n), self.rel_v(n))
        out = attention(q, k, v, rel).transpose(1, 2).reshape(b, n, -1)
        return self.proj.run(out, e)


class DynamicMlp(nn.Module):
    def __init__(self, max_embed: int, max_hidden: int) -> None:
        super().__init__()
        self.fc1 = _Linear(max_embed, max_hidden)
        self.fc2 = _Linear(max_hidden, max_embed)
        self.active_hidden = int(max_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2.run(F.gelu(self.fc1.run(x, self.active_hidden)), x.shape[-1])


class DynamicViTBlock(nn.Module):
    """Pre-norm ViT block (``x + attn(norm1(x))``, ``x + mlp(norm2(x))``) with elastic heads and MLP width."""

    def __init__(self, max_embed: int, max_heads: int, head_dim: int, max_hidden: int,
                 rel_pos: int | None = None) -> None:
        super().__init__()
        self.norm1 = _LayerNorm(max_embed, eps=LN_EPS)
        self.attn = DynamicAttention(max_embed, max_heads, head_dim, rel_pos)
        self.norm2 = _LayerNorm(max_embed, eps=LN_EPS)
        self.mlp = DynamicMlp(max_embed, max_hidden)

    def set_active(self, heads: int, hidden: int) -> None:
        """Choose the active number of heads and MLP hidden width."""
        self.attn.active_heads, self.mlp.active_hidden = int(heads), int(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    @torch.no_grad()
    def get_static(self, embed: int) -> Block:
        """timm's ``Block`` with this block's active slices (``embed`` wide tokens) copied in."""
        heads, hidden, hd = self.attn.active_heads, self.mlp.active_hidden, self.attn.head_dim
        # timm sizes the MLP as int(dim * mlp_ratio); half a unit over keeps float rounding from cutting one off.
        # timm's Block takes an attention class, not one configured with a head width: build it with one head
        # (any embed divides by 1) and swap the configured module in.
        block = Block(embed, 1, mlp_ratio=(hidden + 0.5) / embed, qkv_bias=True)
        if self.attn.rel_pos is None:
            block.attn = Attention(embed, heads, attn_head_dim=hd, qkv_bias=True)
            # Explicit matmuls: torch's FLOP counter does not count the CPU fused kernel, and the MAC contract is
            # that count_macs of the extracted subnet equals macs_params.
            block.attn.fused_attn = False
        else:
            block.attn = RelPosAttention(embed, heads, head_dim=hd, max_relative_position=self.attn.rel_pos)
        if block.mlp.fc1.out_features != hidden:
            raise AssertionError(f"timm sized the MLP {block.mlp.fc1.out_features}, expected {hidden}")
        w, b = self.attn.qkv_weights(embed)
        block.attn.qkv.weight.copy_(w)
        block.attn.qkv.bias.copy_(b)
        for dst, src, shape in ((block.attn.proj, self.attn.proj, (embed, heads * hd)),
                                (block.mlp.fc1, self.mlp.fc1, (hidden, embed)),
                                (block.mlp.fc2, self.mlp.fc2, (embed, hidden))):
            dst.weight.copy_(prefix(src.weight, *shape))
            dst.bias.copy_(prefix(src.bias, shape[0]))
        for dst, src in ((block.norm1, self.norm1), (block.norm2, self.norm2)):
            dst.weight.copy_(src.weight[:embed])
            dst.bias.copy_(src.bias[:embed])
        if self.attn.rel_k is not None:
            block.attn.rel_k.load_state_dict(self.attn.rel_k.state_dict())
            block.attn.rel_v.load_state_dict(self.attn.rel_v.state_dict())
        return block


def embed_tokens(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor,
                 patch: int) -> torch.Tensor:
    """Patch embedding, class token and position embedding; the position embedding is resampled (timm's
    ``resample_abs_pos_embed``) when the input's patch grid differs from the one it was allocated for."""
    x = F.conv2d(x, weight, bias, stride=patch)
    grid = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    if pos.shape[1] != x.shape[1] + 1:
        side = round((pos.shape[1] - 1) ** 0.5)
        pos = resample_abs_pos_embed(pos, list(grid), [side, side], num_prefix_tokens=1)
    return torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1) + pos
