"""Moved to :mod:`supernets.checkpoints` (below training, so search and predictors load checkpoints without
importing it); these names stay importable from here for callers above training."""

from __future__ import annotations

from supernets.checkpoints import (
    CKPT_KEY,
    load_checkpoint,
    load_supernet,
    mid_epoch_batches,
    resume_differences,
    supernet_state_dict,
)

__all__ = ["CKPT_KEY", "load_checkpoint", "load_supernet", "mid_epoch_batches", "resume_differences",
           "supernet_state_dict"]
