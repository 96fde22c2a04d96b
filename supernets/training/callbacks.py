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

__all__ = ["PhaseCheckpoint", "PhaseProgressBar", "SubnetTrace", "weights_digest"]


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
