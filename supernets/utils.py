"""Small helpers shared by the supernet families."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["make_divisible", "make_divisible_np", "permute_bn_"]


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
