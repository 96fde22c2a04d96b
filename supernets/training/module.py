"""The LightningModule that trains any registered supernet with a phase schedule and a subnet sampler.

Each step: seed a generator from ``(seed, global_step)`` (identical on every rank and after a resume), let the
phase's sampler pick the subnets and resolutions, resize the batch per resolution, sum the subnets' losses
(hard labels + distillation) and take ONE optimizer step, the gradients of all subnets accumulated.

Validation (at the end of every phase, or every epoch) evaluates the largest, the smallest and a fixed set of
random subnets of the phase's space, each after BN recalibration on training batches, and logs
``val/top1_max``, ``val/top1_min``, ``val/top1_random`` (fractions) and their per-phase copies.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from supernets.base import Supernet
from supernets.bn import recalibrate_bn
from supernets.checkpoints import CKPT_KEY, mid_epoch_batches, resume_differences
from supernets.space import Arch
from supernets.training.callbacks import raise_diverged
from supernets.training.distillation import create_distill_loss
from supernets.training.samplers import StepPlan
from supernets.training.schedule import Phase, Schedule
from supernets.utils import resize_batch

__all__ = ["SupernetModule", "resize_batch"]


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def _without_dropout(model: Supernet) -> Supernet:
    """``model`` with every dropout rate set to 0 (OFA builds its teacher with ``dropout_rate=0``)."""
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
    return model


class SupernetModule(L.LightningModule):
    """Trains ``supernet`` through ``schedule``.

    Args:
        supernet: a built supernet (``create_supernet``).
        schedule: the phases to train (``build_schedule``).
        optimizer: ``optimizer(param_groups, lr=...)`` (a partial of a torch optimizer).
        seed: seeds the per-step subnet generator, the evaluation subnets and dropout.
        label_smoothing: for the hard-label cross-entropy.
        distill_loss: ``loss(student_logits, teacher_logits)`` (``create_distill_loss``), or its arguments
            ``{"name": "soft_ce" | "kl" | "alpha", **options}``.
        no_decay_bn_bias: exclude BN parameters and biases from weight decay (OFA's ``no_decay_keys``).
        eval_cfg: ``n_random`` (random subnets evaluated), ``calib_batches`` (BN recalibration batches),
            ``every`` (``"phase_end"`` or ``"epoch"``).
        channels_last: run convolutions in NHWC memory format (faster on CPU for MobileNet-like nets).
        meta: plain metadata stored in checkpoints (supernet name and kwargs, data config, ...).
    """

    def __init__(self, supernet: Supernet, schedule: Schedule, *, optimizer: Callable[..., torch.optim.Optimizer],
                 seed: int = 0, label_smoothing: float = 0.0, distill_loss: Callable[..., torch.Tensor] | dict[str, Any] | None = None,
                 no_decay_bn_bias: bool = True, eval_cfg: dict[str, Any] | None = None,
                 channels_last: bool = False, meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.supernet = supernet
        self.schedule = schedule
        self.optimizer_factory = optimizer
        self.seed = int(seed)
        self.label_smoothing = float(label_smoothing)
        if callable(distill_loss):  # built from the config's _target_ (loss.distill)
            self.distill = distill_loss
        else:
            dl = dict(distill_loss or {"name": "soft_ce"})
            self.distill = create_distill_loss(dl.pop("name", "soft_ce"), **dl)
        self.no_decay_bn_bias = bool(no_decay_bn_bias)
        self.eval_cfg = {"n_random": 3, "calib_batches": 10, "every": "phase_end", **(eval_cfg or {})}
        if self.eval_cfg["every"] not in ("phase_end", "epoch"):
            raise ValueError(f"eval.every must be 'phase_end' or 'epoch', got {self.eval_cfg['every']!r}")
        self.channels_last = bool(channels_last)
        self.meta = dict(meta or {})
        # A frozen copy of the full net for OFA's knowledge distillation, filled when a `teacher` phase starts.
        self.teacher: Supernet | None = None
        if any(p.uses_teacher for p in schedule.phases):
            # No dropout in the soft targets (OFA: teacher built with dropout_rate=0); BN still runs in train mode.
            self.teacher = _without_dropout(copy.deepcopy(supernet)).requires_grad_(False)
        self.register_buffer("teacher_ready", torch.zeros((), dtype=torch.bool))
        self.entered_phase = -1
        self.last_plan: StepPlan | None = None
        self.phase_results: dict[str, dict[str, float]] = {}
        self._val: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------ phases
    @property
    def phase_index(self) -> int:
        return self.schedule.phase_index(self.current_epoch)

    @property
    def phase(self) -> Phase:
        return self.schedule.phases[self.phase_index]

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def on_train_start(self) -> None:
        # the train loader has read it (SupernetDataModule.train_dataloader): a reloaded loader starts epochs whole
        self.resume_batches = 0

    def on_train_epoch_start(self) -> None:
        self._check_step_matches_epoch()
        i = self.phase_index
        if i > self.entered_phase:
            self._enter_phase(i)

    def _check_step_matches_epoch(self) -> None:
        """The phase follows the epoch and the learning rate the step: they must agree. They do not after resuming
        from a checkpoint written when ``trainer.max_steps`` stopped inside an epoch (Lightning still ends that
        epoch, and the checkpoint counts it as done), nor when the resumed run has another number of steps per
        epoch."""
        spe = getattr(self, "steps_per_epoch", None)
        if not spe:
            return
        epoch, step = int(self.current_epoch), int(self.global_step)
        if not epoch * spe <= step < (epoch + 1) * spe:
            raise RuntimeError(
                f"epoch {epoch} starts at optimizer step {step}, but with {spe} steps per epoch it spans steps "
                f"{epoch * spe}-{(epoch + 1) * spe - 1}. Either the checkpoint resumed from was written after "
                f"trainer.max_steps stopped inside an epoch (Lightning counts that epoch as finished), or this run "
                f"has another number of steps per epoch than the run that wrote it (the training batches, "
                f"trainer.limit_train_batches, the devices, trainer.accumulate_grad_batches and the batch size must "
                f"stay as they were). Resuming would train the phase of epoch {epoch} with the learning rate of "
                f"epoch {step // spe}. Resume with the first run's settings from a checkpoint written at an epoch "
                f"end (checkpoints/phase_<i>_<name>.ckpt, or last.ckpt of a run whose trainer.max_steps is a "
                f"multiple of its steps per epoch), or start the run again.")

    def _enter_phase(self, index: int) -> None:
        """What a phase does when it starts; recorded so a resumed run does not do it twice."""
        phase = self.schedule.phases[index]
        if phase.sort_channels:
            # OFA's re_organize_middle_weights(expand_ratio_stage): k >= 1 keeps the channel sets already trained
            self.supernet.sort_channels(expand_stage=phase.expand_stage)
        if phase.uses_teacher and not bool(self.teacher_ready):
            assert self.teacher is not None
            self.teacher.load_state_dict(self.supernet.state_dict())
            self.teacher.set_max_net()
            self.teacher_ready.fill_(True)
        if phase.reset_optimizer and self.entered_phase >= 0:
            for opt in self._optimizers():
                opt.state.clear()
        self.entered_phase = index

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        opts = self.optimizers(use_pl_optimizer=False)
        return list(opts) if isinstance(opts, (list, tuple)) else [opts]

    # ---------------------------------------------------------------------------- training
    def _input(self, x: torch.Tensor, resolution: int, cache: dict[int, torch.Tensor]) -> torch.Tensor:
        if resolution not in cache:
            xr = resize_batch(x, resolution)
            cache[resolution] = xr.contiguous(memory_format=torch.channels_last) if self.channels_last else xr
        return cache[resolution]

    def plan_for_step(self, step: int) -> StepPlan:
        """The subnets of global step ``step``: a function of ``(seed, step)`` only."""
        return self.phase.sampler(np.random.default_rng([self.seed, int(step)]))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        phase = self.phase
        plan = self.plan_for_step(self.global_step)
        self.last_plan = plan
        # Dropout draws from torch's global generator: re-seed it per step so a resumed run matches.
        torch.manual_seed(int(np.random.default_rng([self.seed, int(self.global_step), 1]).integers(2**62)))
        x, y = batch
        self.batches_in_epoch = batch_idx + 1  # recorded in a checkpoint written after this batch
        cache: dict[int, torch.Tensor] = {}
        teacher_logits: dict[int, torch.Tensor] = {}
        soft: torch.Tensor | None = None
        total = torch.zeros((), device=x.device)
        for k, arch in enumerate(plan.archs):
            xr = self._input(x, arch.r, cache)
            self.supernet.set_active_subnet(arch)
            logits = self.supernet(xr)
            if phase.uses_inplace and k > 0:
                # BigNAS / AttentiveNAS: the other subnets learn from the largest one's soft labels only.
                assert soft is not None
                loss = phase.kd_weight * self.distill(logits, soft)
            else:
                loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
                if phase.uses_teacher:
                    loss = loss + phase.kd_weight * self.distill(logits, self._teacher_logits(xr, arch.r, teacher_logits))
            if phase.uses_inplace and k == 0:
                soft = logits.detach()
            total = total + loss
        n = len(plan.archs)
        if not torch.isfinite(total):
            raise_diverged(self, float(total.detach()), batch_idx)
        self.log("train/loss", total.detach() / n, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        self.log("train/phase", float(self.phase_index), on_step=True, on_epoch=False, batch_size=len(y))
        return total

    @torch.no_grad()
    def _teacher_logits(self, x: torch.Tensor, r: int, cache: dict[int, torch.Tensor]) -> torch.Tensor:
        if r not in cache:
            assert self.teacher is not None
            self.teacher.train()  # OFA runs its teacher in train mode (batch statistics) under no_grad
            cache[r] = self.teacher(x).detach()
        return cache[r]

    # ---------------------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for name, p in self.supernet.named_parameters():
            if not p.requires_grad:
                continue
            is_bn_or_bias = p.ndim <= 1 or name.endswith(".bias")
            (no_decay if self.no_decay_bn_bias and is_bn_or_bias else decay).append(p)
        groups = [{"params": decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        base_lr = self.schedule.phases[0].lr
        opt = self.optimizer_factory(groups, lr=base_lr)
        self.steps_per_epoch = steps_per_epoch = self._steps_per_epoch()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.schedule.lr_lambda(base_lr, steps_per_epoch))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (not ``estimated_stepping_batches``: that one is cut by ``max_steps``,
        and the learning-rate curve must not depend on where a run stops)."""
        _ = self.trainer.estimated_stepping_batches  # makes the trainer load the train dataloader
        n = self.trainer.num_training_batches
        if not math.isfinite(n) or n <= 0:
            raise ValueError("supernet training needs a train dataloader with a length (epochs define the phases)")
        return max(math.ceil(int(n) / int(self.trainer.accumulate_grad_batches)), 1)

    # ---------------------------------------------------------------------------- validation
    def eval_subnets(self, phase: Phase) -> list[tuple[str, Arch]]:
        """The phase's largest and smallest subnets and its fixed random ones (seeded by ``seed``)."""
        space = phase.sampler.restricted
        rng = np.random.default_rng([self.seed, 7919])
        out = [("max", space.max_arch()), ("min", space.min_arch())]
        out += [("random", a) for a in space.sample(rng, int(self.eval_cfg["n_random"]))]
        return out

    def _validating(self) -> bool:
        if self.trainer.sanity_checking:
            return False
        return self.eval_cfg["every"] == "epoch" or self.schedule.is_phase_end(self.current_epoch)

    def _calibration_batches(self) -> Iterable:
        dm = self.trainer.datamodule
        if dm is None:
            raise RuntimeError("BN recalibration needs the trainer's datamodule (fit with datamodule=...)")
        return dm.train_dataloader()

    def on_validation_epoch_start(self) -> None:
        self._val = None
        if not self._validating():
            return
        train_bn = _bn_state(self.supernet)
        subnets = []
        for role, arch in self.eval_subnets(self.phase):
            self.supernet.set_active_subnet(arch)
            recalibrate_bn(self.supernet, self._calibration_batches(), int(self.eval_cfg["calib_batches"]),
                           transform=lambda x, r=arch.r: self._input(x.to(self.device), r, {}))
            subnets.append((role, arch, _bn_state(self.supernet)))
        n = len(subnets)
        self._val = {"train_bn": train_bn, "subnets": subnets,
                     "correct": torch.zeros(n, dtype=torch.float64, device=self.device),
                     "count": torch.zeros(n, dtype=torch.float64, device=self.device)}

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if self._val is None:
            return
        x, y = batch
        self.batches_in_epoch = batch_idx + 1  # recorded in a checkpoint written after this batch
        cache: dict[int, torch.Tensor] = {}
        for k, (_, arch, bn) in enumerate(self._val["subnets"]):
            self.supernet.load_state_dict(bn, strict=False)
            self.supernet.set_active_subnet(arch)
            pred = self.supernet(self._input(x, arch.r, cache)).argmax(-1)
            self._val["correct"][k] += (pred == y).sum()
            self._val["count"][k] += len(y)

    def on_validation_epoch_end(self) -> None:
        if self._val is None:
            return
        v, self._val = self._val, None
        self.supernet.load_state_dict(v["train_bn"], strict=False)
        correct = self.trainer.strategy.reduce(v["correct"], reduce_op="sum")
        count = self.trainer.strategy.reduce(v["count"], reduce_op="sum")
        acc = (correct / count.clamp(min=1)).tolist()
        roles = [role for role, _, _ in v["subnets"]]
        metrics = {
            "val/top1_max": acc[roles.index("max")],
            "val/top1_min": acc[roles.index("min")],
        }
        rand = [a for a, r in zip(acc, roles) if r == "random"]
        if rand:
            metrics["val/top1_random"] = float(np.mean(rand))
        phase = self.phase
        for key, value in metrics.items():
            self.log(key, value, prog_bar=key == "val/top1_max")
            self.log(f"{phase.name}/{key}", value)
        self.phase_results[phase.name] = {**metrics, "epoch": float(self.current_epoch)}

    # ---------------------------------------------------------------------------- checkpoints
    def checkpoint_metadata(self) -> dict[str, Any]:
        phase = self.phase
        return {
            **self.meta,
            "phase": {"index": self.phase_index, "name": phase.name, "entered": self.entered_phase,
                      "schedule": self.schedule.name, "phases": [p.name for p in self.schedule.phases]},
            "sampler": {**phase.sampler.state(), "seed": self.seed},
            "teacher_ready": bool(self.teacher_ready),
            "phase_results": self.phase_results,
            # batches of the current epoch trained on; a checkpoint written mid-epoch (every N steps) resumes after
            # them, with the same data order (EpochSeededSampler), subnets (a function of the step) and dropout
            "batches_in_epoch": int(getattr(self, "batches_in_epoch", 0)),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CKPT_KEY] = self.checkpoint_metadata()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(CKPT_KEY)
        if meta is None:
            raise ValueError("this checkpoint has no oncenas metadata: it was not written by supernets.training")
        want, got = self.meta.get("supernet"), meta.get("supernet")
        if want is not None and got != want:
            raise ValueError(f"checkpoint holds supernet {got!r}, this run trains {want!r}: resume with the "
                             f"same supernet config (supernet={got}) or start a new run")
        if meta.get("phase", {}).get("phases") not in (None, [p.name for p in self.schedule.phases]):
            raise ValueError(f"checkpoint was written by a schedule with phases {meta['phase']['phases']}, this run "
                             f"has {[p.name for p in self.schedule.phases]}; resume with the same schedule, or "
                             f"start a phase from it with init_from=<ckpt> instead of ckpt_path")
        differ = resume_differences(meta, self.meta)
        if differ:
            raise ValueError(f"checkpoint was written by a run with other settings that change the result "
                             f"({'; '.join(differ)}): resume with the checkpoint's settings, or start a new run "
                             f"(init_from=<ckpt> starts from its weights with the new settings)")
        self.entered_phase = int(meta.get("phase", {}).get("entered", -1))
        self.resume_batches = mid_epoch_batches(checkpoint)
        self.phase_results = dict(meta.get("phase_results", {}))
