"""Small helpers shared by the supernet families, the predictors and the search (each written once here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import make_divisible

__all__ = ["band_offsets", "copy_bn_", "make_divisible", "make_divisible_np", "permute_bn_", "resize_batch", "to_plain"]

# ``make_divisible`` is timm's (``timm.layers.make_divisible``): round to the nearest multiple of ``divisor``,
# never below ``min_value`` (default ``divisor``) nor below 90 % of the value, the MobileNet/OFA rule.


def make_divisible_np(v: np.ndarray, divisor: int = 8, min_value: int | None = None) -> np.ndarray:
    """Vectorised :func:`make_divisible` over an array of non-negative values (the search encodes whole
    populations at once; ``tests/test_ofa_mbv3.py`` checks it against timm's scalar rule)."""
    v = np.asarray(v, dtype=np.float64)
    min_value = min_value or divisor  # timm's rule: a falsy min_value means ``divisor``
    new = np.maximum(min_value, np.floor(v + divisor / 2).astype(np.int64) // divisor * divisor)
    return np.where(new < 0.9 * v, new + divisor, new).astype(np.int64)


def to_plain(obj: Any) -> Any:
    """Configs and numbers as plain, YAML-safe Python: an OmegaConf node -> containers (interpolations resolved),
    mappings -> ``dict`` with ``str`` keys, lists/tuples/arrays -> lists, numpy scalars -> Python numbers, paths ->
    ``str``; anything else is returned as is. Checkpoints (``torch.load(weights_only=True)``) and ``yaml.safe_dump``
    accept only such values."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(obj):
            obj = OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def resize_batch(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize a batch of images to ``resolution``² (bilinear; antialiased when shrinking): how a subnet at
    resolution ``r`` sees the data, in training, evaluation and export alike."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=resolution < x.shape[-1])


@torch.no_grad()
def copy_bn_(dst: torch.nn.modules.batchnorm._BatchNorm, src: torch.nn.modules.batchnorm._BatchNorm) -> None:
    """Copy the first ``dst.num_features`` channels of ``src`` (affine and running statistics, eps, momentum) into
    ``dst``, in place: how every family extracts a static BN from an elastic one."""
    c = dst.num_features
    if c > src.num_features:
        raise ValueError(f"copy_bn_: the target BatchNorm has {c} channels, the source only {src.num_features}")
    dst.weight.copy_(src.weight[:c])
    dst.bias.copy_(src.bias[:c])
    dst.running_mean.copy_(src.running_mean[:c])
    dst.running_var.copy_(src.running_var[:c])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.eps, dst.momentum = src.eps, src.momentum


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
