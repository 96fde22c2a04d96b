"""Batch-norm recalibration: a subnet's running statistics, recomputed on a few batches.

Subnets share BN statistics in the supernet, so they must be re-estimated for each subnet before it is
evaluated (OFA's ``set_running_statistics``). Statistics are a cumulative average over the batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["recalibrate_bn"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, n_batches: int = 20,
                   transform=None) -> int:
    """Reset and re-estimate the running statistics of every BatchNorm in ``model``.

    Args:
        model: the network (a supernet with its active subnet set, or a static subnet).
        batches: an iterable of inputs or ``(inputs, targets)`` pairs (a DataLoader).
        n_batches: how many batches to average over.
        transform: optional callable applied to each input batch (e.g. resize to the subnet's resolution).

    Returns:
        The number of batches used. The model is left in eval mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    model.eval()
    for m in bns:
        m.train()
    used = 0
    try:
        for batch in batches:
            if used >= n_batches:
                break
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if transform is not None:
                x = transform(x)
            param = next(model.parameters())
            model(x.to(param.device))
            used += 1
    finally:
        for m, (momentum, _) in zip(bns, saved):
            m.momentum = momentum
        model.eval()
    if used == 0:
        raise ValueError("recalibrate_bn got no batches: pass a non-empty loader")
    return used
