"""The elastic ViT search space (AutoFormer, Chen et al. ICCV 2021; ElasticViT, Tang et al. ICCV 2023).

Genes: one embedding dimension for the whole network, a depth (later layers dropped), and per layer a number of
heads and an MLP ratio. The input resolution ``r`` is a gene like in the CNN spaces (one choice for the
published spaces: ViTs are trained at one size).

Columns: ``r``, ``embed``, ``d``, ``heads[0..max_depth)``, ``mlp[0..max_depth)``; ``heads``/``mlp`` slots at or
beyond the depth are unused (``x`` in the string form), e.g. ``r=32_embed=64_d=3_heads=2-1-3-x_mlp=2.0-3.0-4.0-x``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from supernets.space import Arch, Column, SearchSpace, check_increasing

__all__ = ["VitSpace"]


@dataclass(frozen=True)
class VitSpace(SearchSpace):
    """Elastic ViT space: ``embed_dims`` (one per network), ``depths``, and per layer ``num_heads`` and
    ``mlp_ratios`` (hidden width ``int(embed * ratio)``, as AutoFormer)."""

    name: str = "vit"
    embed_dims: tuple[int, ...] = (192, 216, 240)
    num_heads: tuple[int, ...] = (3, 4)
    mlp_ratios: tuple[float, ...] = (3.5, 4.0)
    depths: tuple[int, ...] = (12, 13, 14)
    resolutions: tuple[int, ...] = (224,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mlp_ratios", tuple(float(m) for m in self.mlp_ratios))
        check_increasing(embed_dims=self.embed_dims, num_heads=self.num_heads, mlp_ratios=self.mlp_ratios,
                          depths=self.depths, resolutions=self.resolutions)
        if min(self.depths) < 1 or min(self.num_heads) < 1 or min(self.embed_dims) < 1 or min(self.mlp_ratios) <= 0:
            raise ValueError(f"space {self.name!r}: depths, heads and embed dims must be >= 1 and MLP ratios > 0, got "
                             f"depths {self.depths}, heads {self.num_heads}, embed {self.embed_dims}, "
                             f"mlp {self.mlp_ratios}")

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def _build_columns(self) -> tuple[Column, ...]:
        cols = [Column("r", -1, tuple(self.resolutions)), Column("embed", -1, tuple(self.embed_dims)),
                Column("d", -1, tuple(self.depths))]
        cols += [Column("heads", i, tuple(self.num_heads)) for i in range(self.max_depth)]
        cols += [Column("mlp", i, tuple(self.mlp_ratios)) for i in range(self.max_depth)]
        return tuple(cols)

    def _active_mask(self, encoded: np.ndarray) -> np.ndarray:
        depth = np.asarray(self.depths)[encoded[:, 2]]
        slot = np.arange(self.max_depth)[None, :] < depth[:, None]
        head = np.ones((encoded.shape[0], 3), dtype=bool)
        return np.concatenate([head, slot, slot], axis=1)

    def count(self) -> int:
        per_layer = len(self.num_heads) * len(self.mlp_ratios)
        return len(self.embed_dims) * sum(per_layer**d for d in self.depths)

    def from_autoformer_dict(self, config: Mapping[str, Any], resolution: int | None = None) -> Arch:
        """An arch from AutoFormer's subnet config: a whole ``AutoFormer-*.yaml`` (its ``RETRAIN`` section is
        read) or the section itself, ``{"EMBED_DIM": int, "DEPTH": int, "NUM_HEADS": [DEPTH], "MLP_RATIO": [DEPTH]}``.

        Args:
            config: the parsed YAML.
            resolution: the ``r`` gene; defaults to the space's only resolution.
        """
        cfg = config.get("RETRAIN", config) if isinstance(config, Mapping) else config
        if not isinstance(cfg, Mapping):
            raise ValueError(f"an AutoFormer subnet config must be a mapping, got {type(config).__name__}")
        missing = [k for k in ("EMBED_DIM", "DEPTH", "NUM_HEADS", "MLP_RATIO") if k not in cfg]
        if missing:
            raise ValueError(f"AutoFormer subnet config needs keys EMBED_DIM, DEPTH, NUM_HEADS, MLP_RATIO; "
                             f"missing {missing} (given keys {sorted(cfg)})")
        depth = cfg["DEPTH"]
        heads, mlp = list(cfg["NUM_HEADS"]), [float(m) for m in cfg["MLP_RATIO"]]
        for key, vals in (("NUM_HEADS", heads), ("MLP_RATIO", mlp)):
            if len(vals) < depth:
                raise ValueError(f"AutoFormer subnet config: {key} has {len(vals)} values for DEPTH {depth}")
        if resolution is None:
            if len(self.resolutions) != 1:
                raise ValueError(f"space {self.name!r} has resolutions {list(self.resolutions)}: pass resolution=")
            resolution = self.resolutions[0]
        pad = [None] * (self.max_depth - depth)
        return self.arch(r=resolution, embed=cfg["EMBED_DIM"], d=depth, heads=heads[:depth] + pad,
                         mlp=mlp[:depth] + pad)

    def to_autoformer_dict(self, arch: Arch) -> dict[str, Any]:
        """The ``RETRAIN`` form of an arch (inverse of :meth:`from_autoformer_dict`)."""
        d = arch.d
        return {"EMBED_DIM": arch.embed, "DEPTH": d, "NUM_HEADS": list(arch.heads[:d]),
                "MLP_RATIO": list(arch.mlp[:d])}
