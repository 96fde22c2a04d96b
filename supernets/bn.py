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

    Raises:
        ValueError: ``n_batches`` below 1, or no batch at all; the earlier statistics are then kept (also when
            the forward pass fails).
    """
    if n_batches < 1:
        raise ValueError(f"recalibrate_bn needs n_batches >= 1 to estimate statistics, got {n_batches!r}")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    # The statistics before the reset, restored if recalibration fails: a bad loader must not wipe them.
    before = [{k: t.clone() for k, t in m.named_buffers(recurse=False)} for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    model.eval()
    for m in bns:
        m.train()
    used = 0
    ok = False
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
        ok = used > 0
    finally:
        for m, (momentum, _), old in zip(bns, saved, before):
            m.momentum = momentum
            if not ok:
                for k, t in m.named_buffers(recurse=False):
                    t.copy_(old[k])
        model.eval()
    if not ok:
        raise ValueError("recalibrate_bn got no batches (the running statistics are unchanged): pass a non-empty "
                         "loader")
    return used
