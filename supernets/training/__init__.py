"""Supernet training: the LightningModule, subnet samplers, schedules, distillation losses, data modules,
checkpoints, and ``train(cfg)`` behind ``train.py``."""

from __future__ import annotations

from supernets.training.pipeline import train

__all__ = ["train"]
