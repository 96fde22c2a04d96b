"""Lightning callbacks for supernet training: a progress bar that names the phase, per-phase checkpoints,
and a per-rank record of the sampled subnets and final weights (used to check distributed runs)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

__all__ = ["PhaseCheckpoint", "PhaseProgressBar", "SubnetTrace", "TrainingDiverged", "raise_diverged",
           "weights_digest"]


class TrainingDiverged(RuntimeError):
    """The training loss is NaN or infinite: every later step would only spread it into the weights."""


def raise_diverged(module: Any, loss: float, batch_idx: int) -> None:
    """Stop the run at the first non-finite loss, naming the phase, the step and the likely cause. Raised inside
    the training step, before the optimizer step and before any checkpoint of this epoch or phase is written, so
    nothing diverged is saved as a finished phase (earlier epochs' checkpoints stay valid)."""
    phase = module.phase
    trainer = getattr(module, "_trainer", None)
    lrs = []
    if trainer is not None:
        lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups][:1]
    lr = f"{lrs[0]:.4g}" if lrs else "?"
    raise TrainingDiverged(
        f"training diverged: the loss is {loss} in phase {module.phase_index} {phase.name!r} at optimizer step "
        f"{int(module.global_step)} (epoch {int(module.current_epoch)}, batch {batch_idx}). The likely cause is a "
        f"learning rate too high for this batch (now {lr}; schedule.phases[{module.phase_index}].lr={phase.lr:g}): "
        f"lower it and start again from the last good checkpoint. No checkpoint of this epoch was written.")


class PhaseProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar with the current phase name next to the epoch and the loss."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        phase = getattr(pl_module, "phase", None)
        if phase is not None:
            metrics = {"phase": phase.name, **metrics}
        return metrics


class PhaseCheckpoint(Callback):
    """Saves ``<dirpath>/phase_<i>_<name>.ckpt`` when a phase's last epoch ends (after its validation), so any
    later phase can start from it (``init_from=...``)."""

    def __init__(self, dirpath: str | os.PathLike) -> None:
        self.dirpath = Path(dirpath)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        schedule = getattr(pl_module, "schedule", None)
        if schedule is None or trainer.sanity_checking or not schedule.is_phase_end(trainer.current_epoch):
            return
        i = schedule.phase_index(trainer.current_epoch)
        trainer.save_checkpoint(self.dirpath / f"phase_{i}_{schedule.phases[i].name}.ckpt", weights_only=False)


def weights_digest(module: Any) -> str:
    """SHA-256 of a module's parameters in order (equal digests = equal weights). BN running statistics are
    left out: each rank accumulates them on its own data shard, and evaluation recalibrates them anyway."""
    h = hashlib.sha256()
    for key, value in module.named_parameters():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class SubnetTrace(Callback):
    """Writes ``<dirpath>/subnets_rank<r>.jsonl``: per step the archs trained; at the end, a weights digest.

    A distributed run is consistent when every rank wrote the same lines.
    """

    def __init__(self, dirpath: str | os.PathLike) -> None:
        self.dirpath = Path(dirpath)
        self._lines: list[str] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        plan = getattr(pl_module, "last_plan", None)
        if plan is not None:
            self._lines.append(json.dumps({"step": trainer.global_step - 1, "archs": [str(a) for a in plan.archs]}))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lines.append(json.dumps({"weights": weights_digest(pl_module.supernet)}))
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"subnets_rank{trainer.global_rank}.jsonl"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(self._lines) + "\n")
        os.replace(tmp, path)
