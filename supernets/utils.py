"""Small helpers shared by the supernet families."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["band_offsets", "make_divisible", "make_divisible_np", "permute_bn_"]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never below 90 % of ``v`` (MobileNet/OFA rule)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return int(new)


def make_divisible_np(v: np.ndarray, divisor: int = 8, min_value: int | None = None) -> np.ndarray:
    """Vectorised :func:`make_divisible` over an array of non-negative values."""
    v = np.asarray(v, dtype=np.float64)
    min_value = divisor if min_value is None else min_value
    new = np.maximum(min_value, np.floor(v + divisor / 2).astype(np.int64) // divisor * divisor)
    return np.where(new < 0.9 * v, new + divisor, new).astype(np.int64)


@torch.no_grad()
def permute_bn_(bn: torch.nn.modules.batchnorm._BatchNorm, idx: torch.Tensor) -> None:
    """Permute a BatchNorm's channels in place (affine parameters and running statistics)."""
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        if t is not None:
            t.copy_(t.index_select(0, idx))


def band_offsets(n: int, widths: list[int], expand_stage: int, device: torch.device | None = None) -> torch.Tensor:
    """Per-channel importance offsets for OFA's banded re-sort (``re_organize_middle_weights(expand_ratio_stage)``).

    In progressive shrinking's k-th expand phase (k ≥ 1) channels move only within the bands cut by the k+1
    largest of ``widths`` (the middle widths of the expand ratios), so the channel sets earlier phases trained
    stay in place. Bands further right rank lower, 1e5 (OFA's constant) apart; L1 importances are far
    smaller, so no channel crosses a band edge. ``expand_stage`` 0 gives all zeros: a free sort.

    Args:
        n: number of channels.
        widths: the middle widths the expand ratios give (any order).
        expand_stage: how many expand phases came before (OFA's ``expand_ratio_stage``).
        device: where the offsets live (the importances' device).
    """
    offsets = torch.zeros(n, dtype=torch.float64, device=device)
    if expand_stage <= 0:
        return offsets
    edges = sorted(set(widths), reverse=True)[: expand_stage + 1]
    for i in range(1, len(edges)):
        offsets[edges[i] : edges[i - 1]] -= 1e5 * (len(edges) - i)
    return offsets
