"""MACs and parameters of static subnets, counted by torch's own FLOP counter.

The figures count the multiply-accumulates of convolutions and linear layers (SE included; BN,
activations, pooling and biases excluded), the convention OFA's counter and DyNAS-T use.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs", "count_params"]


@torch.no_grad()
def count_macs(module: nn.Module, resolution: int, in_chans: int = 3) -> int:
    """Multiply-accumulates of one forward pass on a ``1×in_chans×r×r`` input."""
    was_training = module.training
    module.eval()
    try:
        param = next(module.parameters(), None)
        x = torch.zeros(1, in_chans, resolution, resolution, device=param.device if param is not None else None)
        with FlopCounterMode(display=False) as counter:
            module(x)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops()) // 2  # the counter reports 2 FLOPs per multiply-accumulate


def count_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))
