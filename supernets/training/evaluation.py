"""Top-1 of chosen subnets of a trained supernet, each after BN recalibration (outside Lightning)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from supernets.base import Supernet
from supernets.bn import recalibrate_bn
from supernets.space import Arch
from supernets.utils import resize_batch

__all__ = ["evaluate_archs"]


@torch.no_grad()
def evaluate_archs(supernet: Supernet, archs: Sequence[Arch], datamodule, *, calib_batches: int = 10,
                   channels_last: bool = False) -> list[float]:
    """Top-1 (fraction) of each arch on the data module's held-out split, after recalibrating BN on its
    training split at the arch's resolution. The supernet's BN statistics are restored afterwards."""
    datamodule.setup()
    saved = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k or "num_batches" in k}
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    try:
        for arch in archs:
            supernet.set_active_subnet(arch)

            def prep(x: torch.Tensor, r: int = arch.r) -> torch.Tensor:
                return resize_batch(x, r).contiguous(memory_format=fmt)

            recalibrate_bn(supernet, datamodule.train_dataloader(), calib_batches, transform=prep)
            correct = total = 0
            for x, y in datamodule.val_dataloader():
                correct += int((supernet(prep(x)).argmax(-1) == y).sum())
                total += len(y)
            out.append(correct / max(total, 1))
    finally:
        supernet.load_state_dict(saved, strict=False)
    return out
