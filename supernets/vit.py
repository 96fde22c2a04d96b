"""Elastic vision transformers: AutoFormer's supernets (Chen et al., *AutoFormer: Searching Transformers for
Visual Recognition*, ICCV 2021) and a CPU-sized ViT supernet for 32-px images.

Genes (see :class:`~supernets.vit_space.VitSpace`): one embedding dimension, a depth (later layers dropped),
and per layer the number of heads and the MLP ratio. Weight entanglement as AutoFormer: every subnet runs the
leading slices of the largest weights; heads are ``head_dim`` wide (AutoFormer: 64), so q/k/v width is
``heads * head_dim`` whatever the embedding dimension. Layout (timm's ViT):

    patch embedding (conv p x p / p) · class token · absolute position embedding
    pre-norm blocks: x + attn(LN(x)) · x + MLP(LN(x))      (AutoFormer's ImageNet spaces: + 2-D relative
                                                            position tables on keys and values, distance 14)
    LN · class token · linear head

The weights are allocated at AutoFormer's ``SUPERNET`` shapes, which can exceed the search space's largest choice
(supernet-T allocates embed 256 for choices up to 240). Extraction gives timm ``Block`` modules (see
:mod:`supernets.layers.attention`); MACs count every matmul (projections, attention products, relative position
products, patch embedding, head), as torch's FLOP counter does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from timm.layers import trunc_normal_
from torch import nn

from supernets.base import Supernet
from supernets.layers.attention import LN_EPS, DynamicViTBlock, embed_tokens
from supernets.layers.dynamic import prefix
from supernets.registry import register_supernet
from supernets.space import Arch
from supernets.vit_space import VitSpace

__all__ = ["ElasticViT", "ViTSubnet", "autoformer_b", "autoformer_s", "autoformer_space", "autoformer_t",
           "vit_cifar_tiny"]


class ViTSubnet(nn.Module):
    """A static ViT extracted from an :class:`ElasticViT`: plain conv/linear/LayerNorm layers and timm blocks,
    parameter names mirroring the supernet's."""

    def __init__(self, *, patch_embed: nn.Conv2d, cls_token: torch.Tensor, pos_embed: torch.Tensor,
                 blocks: nn.Sequential, norm: nn.LayerNorm, head: nn.Linear, dropout: float = 0.0) -> None:
        super().__init__()
        self.patch_size = patch_embed.kernel_size[0]
        self.patch_embed = patch_embed
        self.cls_token = nn.Parameter(cls_token)
        self.pos_embed = nn.Parameter(pos_embed)
        self.blocks = blocks
        self.norm = norm
        self.dropout = nn.Dropout(dropout)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pe = self.patch_embed
        x = self.blocks(embed_tokens(x, pe.weight, pe.bias, self.cls_token, self.pos_embed, self.patch_size))
        return self.head(self.dropout(self.norm(x)[:, 0]))


class ElasticViT(Supernet):
    """Elastic ViT over a :class:`VitSpace`.

    Args:
        space: the search space. The position embedding is allocated for its largest resolution and resampled
            (bicubic, timm's ``resample_abs_pos_embed``) for smaller ones, as FlexiViT/timm do.
        patch_size: patch width in pixels.
        head_dim: width of every head (AutoFormer: 64).
        max_embed / max_heads / max_mlp_ratio / max_depth: the allocated weight shapes (AutoFormer's ``SUPERNET``);
            default to the space's largest choices.
        rel_pos: maximum relative distance of AutoFormer's 2-D relative position encoding (14), or ``None``.
        num_classes: classifier outputs.
        in_chans: input image channels.
        dropout: dropout rate before the classifier.
    """

    name = "vit"

    def __init__(self, space: VitSpace, *, patch_size: int, head_dim: int = 64, max_embed: int | None = None,
                 max_heads: int | None = None, max_mlp_ratio: float | None = None, max_depth: int | None = None,
                 rel_pos: int | None = None, num_classes: int = 1000, in_chans: int = 3,
                 dropout: float = 0.0) -> None:
        if not isinstance(space, VitSpace):
            raise ValueError(f"ElasticViT needs a VitSpace, got {type(space).__name__}")
        if any(r % patch_size for r in space.resolutions):
            raise ValueError(f"space {space.name!r}: ElasticViT needs resolutions divisible by the patch size "
                             f"{patch_size}, got resolutions {list(space.resolutions)}")
        self_max = {"max_embed": (max_embed, max(space.embed_dims)), "max_heads": (max_heads, max(space.num_heads)),
                    "max_mlp_ratio": (max_mlp_ratio, max(space.mlp_ratios)), "max_depth": (max_depth, space.max_depth)}
        for key, (given, needed) in self_max.items():
            if given is not None and given < needed:
                raise ValueError(f"{key}={given} is below the space's largest choice {needed} (space {space.name!r})")
        super().__init__(space)
        self.num_classes, self.in_chans = int(num_classes), int(in_chans)
        self.patch_size, self.head_dim, self.rel_pos = int(patch_size), int(head_dim), rel_pos
        self.max_embed = int(max_embed or max(space.embed_dims))
        self.max_heads = int(max_heads or max(space.num_heads))
        self.max_mlp_ratio = float(max_mlp_ratio or max(space.mlp_ratios))
        n_layers = int(max_depth or space.max_depth)
        self.n_patches = (max(space.resolutions) // self.patch_size) ** 2
        e = self.max_embed
        self.patch_embed = nn.Conv2d(in_chans, e, self.patch_size, self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.n_patches + 1, e))
        self.blocks = nn.ModuleList(
            DynamicViTBlock(e, self.max_heads, self.head_dim, int(e * self.max_mlp_ratio), rel_pos)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(e, eps=LN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(e, num_classes)
        self._embed, self._depth = e, n_layers
        self._init_weights()
        self.set_max_net()

    def _init_weights(self) -> None:
        # timm's ViT init: truncated normal (std 0.02) for linears and the token/position embeddings.
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------ elastic state
    def _apply_arch(self, arch: Arch) -> None:
        self._embed, self._depth = int(arch.embed), int(arch.d)
        for block, h, m in zip(self.blocks, arch.heads, arch.mlp):
            if h is not None:
                block.set_active(h, int(self._embed * m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self._embed
        x = embed_tokens(x, prefix(self.patch_embed.weight, e), prefix(self.patch_embed.bias, e),
                    prefix(self.cls_token, 1, 1, e), prefix(self.pos_embed, 1, self.pos_embed.shape[1], e),
                    self.patch_size)
        for j in range(self._depth):
            x = self.blocks[j](x)
        x = F.layer_norm(x[:, 0], (e,), prefix(self.norm.weight, e), prefix(self.norm.bias, e), self.norm.eps)
        return F.linear(self.dropout(x), prefix(self.head.weight, self.num_classes, e), self.head.bias)

    # ------------------------------------------------------------------------------ extraction
    @torch.no_grad()
    def get_active_subnet(self) -> ViTSubnet:
        """A static :class:`ViTSubnet` of the active arch (timm blocks, copied weights), on the supernet's device
        and in its dtype."""
        self.active_arch  # noqa: B018 - makes sure an arch is set
        e = self._embed
        patch = nn.Conv2d(self.in_chans, e, self.patch_size, self.patch_size)
        patch.weight.copy_(self.patch_embed.weight[:e])
        patch.bias.copy_(self.patch_embed.bias[:e])
        norm = nn.LayerNorm(e, eps=LN_EPS)
        norm.weight.copy_(self.norm.weight[:e])
        norm.bias.copy_(self.norm.bias[:e])
        head = nn.Linear(e, self.num_classes)
        head.weight.copy_(self.head.weight[:, :e])
        head.bias.copy_(self.head.bias)
        subnet = ViTSubnet(
            patch_embed=patch, cls_token=self.cls_token[..., :e].clone(), pos_embed=self.pos_embed[..., :e].clone(),
            blocks=nn.Sequential(*(self.blocks[j].get_static(e) for j in range(self._depth))),
            norm=norm, head=head, dropout=self.dropout.p)
        p = self.head.weight
        return subnet.to(device=p.device, dtype=p.dtype).train(self.training)

    def latency_layers(self) -> Any:
        """Its measurable layers for latency tables (:mod:`supernets.measurable`)."""
        from supernets.measurable_vit import VitMeasurable

        return VitMeasurable(self)

    def sort_channels(self, expand_stage: int = 0) -> None:
        """Nothing to re-sort: AutoFormer trains the leading slices as they are (no importance sorting)."""

    # ------------------------------------------------------------------------------ costs
    def macs_params(self, archs: Arch | Iterable[Arch] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Analytic MACs (every matmul, at each arch's resolution) and parameters (all of the extracted subnet)
        of a batch of archs, vectorised with numpy; equal to ``count_macs``/``count_params`` of the subnets.

        Per layer with ``N`` tokens, embed ``E``, ``h`` heads of width ``hd`` and MLP width ``M``: q/k/v
        ``N*E*3*h*hd``, the two attention products ``2*h*N*N*hd`` (twice that with relative positions),
        projection ``N*h*hd*E``, MLP ``2*N*E*M``.
        """
        space: VitSpace = self.space  # type: ignore[assignment]
        x = space.normalize(archs if isinstance(archs, np.ndarray) else space.encode(archs))
        e = space.values(x, "embed")[:, 0].astype(np.int64)
        heads = np.nan_to_num(space.values(x, "heads"), nan=0.0).astype(np.int64)
        hidden = np.floor(e[:, None] * np.nan_to_num(space.values(x, "mlp"), nan=0.0)).astype(np.int64)
        on = heads > 0
        n_patches = (space.values(x, "r")[:, 0].astype(np.int64) // self.patch_size) ** 2
        n_tok = (n_patches + 1)[:, None]
        hd, k2 = self.head_dim, self.patch_size**2 * self.in_chans
        inner = heads * hd
        rel = 0 if self.rel_pos is None else 4 * (2 * self.rel_pos + 2) * hd
        ec = e[:, None]
        layer_macs = (n_tok * ec * 3 * inner + (4 if rel else 2) * n_tok * n_tok * inner + n_tok * inner * ec
                      + 2 * n_tok * ec * hidden)
        layer_params = (4 * ec + ec * 3 * inner + 3 * inner + rel + inner * ec + ec + 2 * ec * hidden + hidden + ec)
        macs = n_patches * e * k2 + (layer_macs * on).sum(1) + e * self.num_classes
        params = (k2 * e + e + e + (self.n_patches + 1) * e + (layer_params * on).sum(1) + 2 * e + e * self.num_classes
                  + self.num_classes)
        return macs.astype(np.int64), params.astype(np.int64)


# ------------------------------------------------------------------------------------ builders
_AUTOFORMER_FILES = {"t": "supernet-T.yaml", "s": "supernet-S.yaml", "b": "supernet-B.yaml"}


def autoformer_space(size: str, **overrides: Any) -> tuple[VitSpace, dict[str, Any]]:
    """AutoFormer's published space ``size`` in ``{"t", "s", "b"}`` read from its bundled
    ``supernet-*.yaml`` (``SEARCH_SPACE``), and the allocated shapes (``SUPERNET``) as ElasticViT kwargs.
    ``overrides`` replace space fields (e.g. ``mlp_ratios=(3.0, 3.5, 4.0)``)."""
    if size not in _AUTOFORMER_FILES:
        raise ValueError(f"unknown AutoFormer size {size!r}; sizes are {sorted(_AUTOFORMER_FILES)}")
    text = resources.files("supernets.data").joinpath("autoformer", _AUTOFORMER_FILES[size]).read_text("utf-8")
    cfg = yaml.safe_load(text)
    ss, sup = cfg["SEARCH_SPACE"], cfg["SUPERNET"]
    fields: dict[str, Any] = {
        "embed_dims": tuple(int(v) for v in ss["EMBED_DIM"]), "num_heads": tuple(int(v) for v in ss["NUM_HEADS"]),
        "mlp_ratios": tuple(float(v) for v in ss["MLP_RATIO"]), "depths": tuple(int(v) for v in ss["DEPTH"]),
        "resolutions": (224,),
    }
    unknown = set(overrides) - set(fields)
    if unknown:
        raise ValueError(f"unknown AutoFormer space field(s) {sorted(unknown)}; fields are {sorted(fields)}")
    fields.update({k: tuple(v) for k, v in overrides.items() if v is not None})
    alloc = {"max_embed": int(sup["EMBED_DIM"]), "max_heads": int(sup["NUM_HEADS"]),
             "max_mlp_ratio": float(sup["MLP_RATIO"]), "max_depth": int(sup["DEPTH"])}
    return VitSpace(name=f"autoformer_{size}", **fields), alloc


def _autoformer(size: str, num_classes: int, in_chans: int, dropout: float,
                overrides: Mapping[str, Sequence[float] | None]) -> ElasticViT:
    space, alloc = autoformer_space(size, **overrides)
    # AutoFormer's ImageNet runs: patch 16 at 224 px, 64-wide heads, relative positions up to distance 14.
    return ElasticViT(space, patch_size=16, head_dim=64, rel_pos=14, num_classes=num_classes, in_chans=in_chans,
                      dropout=dropout, **alloc)


# ------------------------------------------------------------------------------------ entry points
@register_supernet
def autoformer_t(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0,
                 mlp_ratios: Sequence[float] | None = None) -> ElasticViT:
    """AutoFormer-T's supernet (supernet-T.yaml): embed 192/216/240, heads 3-4, MLP 3.5/4, depth 12-14;
    weights for embed 256, 4 heads, MLP 4, 14 layers. Its published subnet uses MLP 3.0 on three layers: load it
    into ``autoformer_t(mlp_ratios=(3.0, 3.5, 4.0))`` (same weights, a wider space)."""
    return _autoformer("t", num_classes, in_chans, dropout, {"mlp_ratios": mlp_ratios})


@register_supernet
def autoformer_s(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0,
                 mlp_ratios: Sequence[float] | None = None) -> ElasticViT:
    """AutoFormer-S's supernet (supernet-S.yaml): embed 320/384/448, heads 5-7, MLP 3/3.5/4, depth 12-14."""
    return _autoformer("s", num_classes, in_chans, dropout, {"mlp_ratios": mlp_ratios})


@register_supernet
def autoformer_b(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0,
                 mlp_ratios: Sequence[float] | None = None) -> ElasticViT:
    """AutoFormer-B's supernet (supernet-B.yaml): embed 528/576/624, heads 9-10, MLP 3/3.5/4, depth 14-16;
    weights for embed 640."""
    return _autoformer("b", num_classes, in_chans, dropout, {"mlp_ratios": mlp_ratios})


@register_supernet
def vit_cifar_tiny(*, num_classes: int = 10, in_chans: int = 3, dropout: float = 0.0,
                   resolutions: Sequence[int] | None = (32,)) -> ElasticViT:
    """A CPU-sized elastic ViT for 32-px images (CIFAR-10): patch 4 (64 patches + class token, the token count of
    AutoFormer's 16-px patches at 128 px), 32-wide heads, embed 48/72/96, heads 1-3, MLP ratio 2/3/4, depth 2-4.

    Why these ranges: the largest subnet (96 wide, 4 layers, 0.46 M weights, 32 M MACs) is ViT-Lite sized and
    trains a CIFAR-10 epoch on two CPU cores in minutes; the smallest (48 wide, 1 head, 2 layers, 2.7 M MACs) is a
    12x smaller network, so the samplers have real size differences to tell apart; three choices per gene (two
    above the minimum) keep a middle subnet well defined."""
    space = VitSpace(name="vit_cifar_tiny", embed_dims=(48, 72, 96), num_heads=(1, 2, 3),
                     mlp_ratios=(2.0, 3.0, 4.0), depths=(2, 3, 4), resolutions=tuple(resolutions or (32,)))
    return ElasticViT(space, patch_size=4, head_dim=32, num_classes=num_classes, in_chans=in_chans, dropout=dropout)
