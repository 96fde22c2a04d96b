"""``train(cfg)``: build everything from a composed config (``configs/train.yaml``), fit, return the metrics.

``train.py`` is a thin Hydra wrapper around this function; tests call it directly with composed configs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from supernets.checkpoints import load_checkpoint, supernet_state_dict
from supernets.compose import build
from supernets.config_checks import check_int
from supernets.cpu import tune_malloc
from supernets.registry import checked_supernet_kwargs
from supernets.training.module import SupernetModule
from supernets.utils import to_plain

log = logging.getLogger(__name__)

__all__ = ["build_supernet", "train"]


def build_supernet(supernet_cfg: Mapping[str, Any], datamodule: Any | None = None):
    """A supernet from its config (``_target_``, the builder, e.g. ``supernets.registry.create_supernet``;
    ``name`` + kwargs), built with ``hydra.utils.instantiate``; ``num_classes`` / ``in_chans`` left unset (null)
    are taken from the data module first. Returns ``(supernet, name, kwargs)`` (kwargs as checkpoints record them:
    without ``_target_``, which names the builder, not the network)."""
    kwargs = dict(to_plain(supernet_cfg))
    target = kwargs.pop("_target_", None)
    if not target:
        raise ValueError(f"supernet config needs a '_target_' naming its builder (supernets.registry.create_supernet "
                         f"for the registered supernets, see configs/supernet/*.yaml), got keys {sorted(kwargs)}")
    name = kwargs.pop("name", None)
    if not name:
        raise ValueError(f"supernet config needs a 'name' (one of the registered supernets), got {kwargs}")
    kwargs = checked_supernet_kwargs(name, kwargs)  # also what the checkpoint records: ints, checked
    for key in ("num_classes", "in_chans"):
        if kwargs.get(key) is None:
            if datamodule is None:
                raise ValueError(f"supernet.{key} is not set and there is no data module to take it from")
            kwargs[key] = int(getattr(datamodule, key))
        elif datamodule is not None and int(kwargs[key]) != int(getattr(datamodule, key)):
            raise ValueError(f"supernet.{key}={kwargs[key]} does not match data {datamodule.name!r} "
                             f"({key}={getattr(datamodule, key)}); set supernet.{key}=null to follow the data")
    if "resolutions" in kwargs and kwargs["resolutions"] is not None:
        kwargs["resolutions"] = [int(r) for r in kwargs["resolutions"]]
    model = build("supernet", {"_target_": target, "name": name, **kwargs})
    # Pretrained weights (create_supernet(..., pretrained=<file>)) are the starting point only: checkpoints hold the
    # trained weights, so the kwargs they record must rebuild the supernet without needing that file again.
    kwargs.pop("pretrained", None)
    return model, name, kwargs


def _instantiate_all(group: Any) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group dict (callbacks, loggers)."""
    if not group:
        return []
    out = []
    for _, node in group.items():
        if isinstance(node, (DictConfig, Mapping)) and "_target_" in node:
            out.append(instantiate(node))
    return out


def _distill_loss(node: Any):
    """The soft-target loss ``loss.distill`` names (``_target_``: ``create_distill_loss`` with its ``name``)."""
    if node is None:
        return None
    if "_target_" not in node:
        raise ValueError("loss.distill needs a '_target_' naming its builder (supernets.training.distillation."
                         f"create_distill_loss, see configs/train.yaml), got keys {sorted(node)}")
    return build("loss.distill", node)


def _init_from(module: SupernetModule, path: str, name: str) -> None:
    """Start from another run's weights (e.g. the checkpoint of the previous phase); trainer state is fresh."""
    ckpt = load_checkpoint(path)
    meta = ckpt["oncenas"]
    if meta.get("supernet") != name:
        raise ValueError(f"init_from checkpoint {path} holds supernet {meta.get('supernet')!r}, this run trains "
                         f"{name!r}; pick a checkpoint of the same supernet")
    module.supernet.load_state_dict(supernet_state_dict(ckpt))
    teacher = supernet_state_dict(ckpt, "teacher.")
    if module.teacher is not None and teacher and meta.get("teacher_ready"):
        module.teacher.load_state_dict(teacher)
        module.teacher.set_max_net()
        module.teacher_ready.fill_(True)


def train(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Train a supernet as configured; returns the final metrics (``val/top1_max``, ``val/top1_min``,
    ``val/top1_random``, per-phase copies ``<phase>/val/...``, ``train/loss``, ``time/fit_s``)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    seed = check_int("seed", cfg.get("seed", 0), min=0)
    L.seed_everything(seed, workers=True)
    tune_malloc()
    if cfg.get("threads") is not None:
        torch.set_num_threads(check_int("threads", cfg.threads, min=1))

    if "_target_" not in cfg.data:
        raise ValueError("data config needs a '_target_' naming its builder (supernets.data.modules.create_datamodule, "
                         f"see configs/data/*.yaml), got keys {sorted(cfg.data)}")
    dm = build("data", cfg.data)  # configs/data/*.yaml name their builder (create_datamodule)
    supernet, name, kwargs = build_supernet(cfg.supernet, dm)

    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    if not loggers:  # Lightning refuses a LearningRateMonitor without a logger: it has nowhere to write (logger=none)
        kept = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        if len(kept) < len(callbacks):
            log.info("logger=none: the learning-rate monitor (callbacks.lr_monitor) is left out, it only writes to "
                     "loggers")
        callbacks = kept
    trainer_cfg = to_plain(cfg.trainer)
    trainer = instantiate(trainer_cfg, max_epochs=1, callbacks=callbacks, logger=loggers or False, _convert_="all")
    # Learning rates in a schedule file are for its base batch: scale them to this run's global batch.
    world = int(trainer.world_size) * int(trainer.accumulate_grad_batches)
    schedule_cfg = to_plain(cfg.schedule)
    if "_target_" not in schedule_cfg:
        raise ValueError("schedule config needs a '_target_' naming its builder (supernets.training.schedule."
                         f"create_schedule with _partial_: true, see configs/schedule/*.yaml), got keys {sorted(schedule_cfg)}")
    macs_params = getattr(supernet, "macs_params", None)
    make_schedule = build("schedule", schedule_cfg, _partial_=True, _recursive_=False)  # phases' samplers: built per phase
    schedule = make_schedule(supernet.space, global_batch_size=dm.batch_size * world,
                             cost_fn=None if macs_params is None else (lambda x: macs_params(x)[0]))
    # Checkpoints record the schedule itself; the builder keys say how this run built it, not what it trains.
    schedule_cfg = {k: v for k, v in schedule_cfg.items() if k not in ("_target_", "_partial_", "_recursive_")}
    trainer.fit_loop.max_epochs = schedule.total_epochs

    meta = {
        "supernet": name,
        "supernet_kwargs": kwargs,
        "space": repr(supernet.space),
        "data": dm.config,
        "schedule": schedule_cfg,
        "seed": seed,
    }
    module = SupernetModule(
        supernet,
        schedule,
        optimizer=instantiate(cfg.optimizer),
        seed=seed,
        label_smoothing=float(cfg.loss.get("label_smoothing", 0.0)),
        distill_loss=_distill_loss(cfg.loss.get("distill")),
        no_decay_bn_bias=bool(cfg.loss.get("no_decay_bn_bias", True)),
        eval_cfg=to_plain(cfg.get("eval")),
        channels_last=bool(cfg.get("channels_last", False)),
        meta=meta,
    )
    if cfg.get("init_from"):
        _init_from(module, str(cfg.init_from), name)
    if cfg.get("ckpt_path"):
        load_checkpoint(str(cfg.ckpt_path))  # a missing, truncated or foreign file is named before Lightning reads it

    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    elapsed = time.perf_counter() - start

    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    for phase, res in module.phase_results.items():
        for key, value in res.items():
            metrics[f"{phase}/{key}"] = float(value)
    metrics["time/fit_s"] = elapsed
    metrics["trainer/global_step"] = int(trainer.global_step)
    ckpt_cb = getattr(trainer, "checkpoint_callback", None)
    if ckpt_cb is not None and getattr(ckpt_cb, "last_model_path", ""):
        metrics["checkpoint"] = ckpt_cb.last_model_path
    return metrics
