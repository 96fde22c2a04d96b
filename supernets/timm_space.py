"""The search space of a timm CNN turned into a supernet (:mod:`supernets.timm_supernet`).

Declared once from the wrapped model's own shape: per stage an elastic depth (the first ``d`` blocks run; the
stage's first block always runs), per block slot an elastic depthwise kernel (``ks``, only where the block has a
depthwise conv: OFA's centre crop + transform) and an elastic width ``e``, the fraction of the block's original
middle channels it keeps (the expand ratio of an inverted residual, the bottleneck width of a ResNet block,
relative to the pretrained model). A block the wrapper cannot make elastic keeps one choice in every slot.

String form: ``r=224_d=1-2-2-3-3-4-1_ks=3-3-3-5-5-...-x_e=1.0-1.0-0.75-...``; ``x`` marks a block its stage's
depth leaves out. ``ks`` is absent when no block has a depthwise conv (ResNets), and ``ks`` ``0`` marks a block
without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from supernets.space import Arch, Column, SearchSpace, check_increasing, gene_list, stage_slot_mask

__all__ = ["TimmSpace"]


@dataclass(frozen=True)
class TimmSpace(SearchSpace):
    """Elastic depth / kernel / width of a wrapped timm CNN.

    Attributes:
        stage_blocks: blocks per stage of the original model (the largest depth of each stage).
        min_depths: the smallest depth of each stage (its first block, and any block that changes the shape,
            always runs).
        block_kernels: per block slot, the original depthwise kernel size, or 0 where the kernel is fixed.
        block_elastic: per block slot, 1 where the width is elastic (inverted residual, bottleneck), else 0.
        kernel_sizes: kernel choices; a block offers those up to its own kernel with the same parity.
        expand_ratios: width choices as fractions of each block's original middle channels (1.0 included).
        resolutions: input resolutions.
    """

    name: str = "timm"
    stage_blocks: tuple[int, ...] = (1,)
    min_depths: tuple[int, ...] = (1,)
    block_kernels: tuple[int, ...] = (0,)
    block_elastic: tuple[int, ...] = (0,)
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[float, ...] = (0.5, 0.75, 1.0)
    resolutions: tuple[int, ...] = (224,)

    def __post_init__(self) -> None:
        check_increasing(kernel_sizes=self.kernel_sizes, expand_ratios=self.expand_ratios,
                          resolutions=self.resolutions)
        if self.expand_ratios[-1] != 1.0 or self.expand_ratios[0] <= 0:
            raise ValueError(f"expand_ratios are fractions of the original width in (0, 1] ending with 1.0 (the "
                             f"pretrained block), got {self.expand_ratios}")
        n = sum(self.stage_blocks)
        if len(self.min_depths) != len(self.stage_blocks):
            raise ValueError(f"min_depths needs one value per stage ({len(self.stage_blocks)}), got {self.min_depths}")
        for s, (lo, hi) in enumerate(zip(self.min_depths, self.stage_blocks)):
            if not 1 <= lo <= hi:
                raise ValueError(f"stage {s}: min depth {lo} must lie in [1, {hi}] (its block count)")
        for label, seq in (("block_kernels", self.block_kernels), ("block_elastic", self.block_elastic)):
            if len(seq) != n:
                raise ValueError(f"{label} needs one value per block ({n}), got {len(seq)}")

    # ------------------------------------------------------------------------------- per slot
    @property
    def n_stages(self) -> int:
        return len(self.stage_blocks)

    @property
    def n_slots(self) -> int:
        return sum(self.stage_blocks)

    @property
    def has_kernels(self) -> bool:
        return any(self.block_kernels)

    def kernel_choices(self, slot: int) -> tuple[int, ...]:
        k = self.block_kernels[slot]
        if k == 0:
            return (0,)
        return (*(c for c in self.kernel_sizes if c < k and (k - c) % 2 == 0), k)

    def expand_choices(self, slot: int) -> tuple[float, ...]:
        return tuple(self.expand_ratios) if self.block_elastic[slot] else (1.0,)

    def depth_choices(self, stage: int) -> tuple[int, ...]:
        return tuple(range(self.min_depths[stage], self.stage_blocks[stage] + 1))

    def stage_of_slot(self, slot: int) -> tuple[int, int]:
        """``(stage, index in stage)`` of a flat block slot."""
        for s, n in enumerate(self.stage_blocks):
            if slot < n:
                return s, slot
            slot -= n
        raise IndexError(f"block slot out of range for space {self.name!r}")

    # ---------------------------------------------------------------------------------- layout
    def _build_columns(self) -> tuple[Column, ...]:
        cols = [Column("r", -1, tuple(self.resolutions))]
        cols += [Column("d", s, self.depth_choices(s)) for s in range(self.n_stages)]
        if self.has_kernels:
            cols += [Column("ks", i, self.kernel_choices(i)) for i in range(self.n_slots)]
        cols += [Column("e", i, self.expand_choices(i)) for i in range(self.n_slots)]
        return tuple(cols)

    def _active_mask(self, encoded: np.ndarray) -> np.ndarray:
        d_sl = slice(1, 1 + self.n_stages)
        depth = np.asarray(self.min_depths)[None, :] + encoded[:, d_sl]
        slot = stage_slot_mask(depth, self.stage_blocks)
        head = np.ones((encoded.shape[0], 1 + self.n_stages), dtype=bool)
        return np.concatenate([head, *([slot] * (2 if self.has_kernels else 1))], axis=1)

    def count(self) -> int:
        total = 1
        start = 0
        for s, n in enumerate(self.stage_blocks):
            per = [len(self.kernel_choices(start + j)) * len(self.expand_choices(start + j)) for j in range(n)]
            total *= sum(int(np.prod(per[:d])) for d in self.depth_choices(s))
            start += n
        return total

    def from_ofa_dict(self, config: Mapping[str, Any]) -> Arch:
        """From ``{"d": [...], "e": [...], "ks": [...] (when the space has kernels), "r": int}``."""
        keys = ("d", "e", "r") + (("ks",) if self.has_kernels else ())
        missing = [k for k in keys if k not in config]
        if missing:
            raise ValueError(f"a dict of space {self.name!r} needs keys {list(keys)}; missing {missing}")
        genes = {k: config[k] if k == "r" else gene_list(config, k) for k in keys}
        return self.arch(**genes)

    def to_ofa_dict(self, arch: Arch) -> dict[str, Any]:
        out: dict[str, Any] = {"d": list(arch.d), "r": arch.r}
        out["e"] = [self.expand_choices(i)[0] if v is None else v for i, v in enumerate(arch.e)]
        if self.has_kernels:
            out["ks"] = [self.kernel_choices(i)[0] if v is None else v for i, v in enumerate(arch.ks)]
        return out
