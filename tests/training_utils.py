"""Tiny overrides that make any training config run in seconds on CPU (used by the training tests)."""

from __future__ import annotations

from pathlib import Path


def tiny_overrides(output_dir: Path, *, resolutions: tuple[int, ...] = (20, 24), max_steps: int = 2,
                   batches: int = 2, batch_size: int = 8) -> list[str]:
    """Synthetic data, a couple of small batches, one calibration batch, validation every epoch, no logger."""
    res = list(resolutions)
    return [
        "data=synthetic",
        f"data.batch_size={batch_size}",
        f"data.val_batch_size={batch_size}",
        f"data.n_train={batch_size * batches}",
        f"data.n_val={batch_size}",
        f"data.image_size={max(res)}",
        "data.in_chans=3",
        "data.num_workers=0",
        "supernet.num_classes=null",
        "supernet.in_chans=null",
        f"supernet.resolutions=[{','.join(map(str, res))}]",
        "trainer=cpu",
        f"trainer.max_steps={max_steps}",
        f"trainer.limit_train_batches={batches}",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "eval.every=epoch",
        "eval.calib_batches=1",
        "eval.n_random=1",
        "logger=csv",
        "callbacks=none",
        "threads=1",  # one intra-op thread: tiny tensors gain nothing from more, and shared CPUs lose a lot
        f"paths.output_dir={output_dir}",
    ]


class KillAt:
    """A callback that raises at the start of optimizer step ``step``: a preempted run (nothing of that step saved).
    Built lazily from Lightning so that importing this module stays cheap."""

    def __new__(cls, step: int):
        from lightning.pytorch.callbacks import Callback

        class _Kill(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                if trainer.global_step == step:
                    raise RuntimeError(f"preempted at step {step}")

        return _Kill()
