"""Training runs end to end: every experiment config, resuming mid-phase, phases run alone, checkpoints."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from supernets.checkpoints import load_checkpoint, load_supernet
from supernets.paths import CONFIG_DIR
from supernets.training import train
from supernets.training.callbacks import weights_digest
from tests.training_utils import tiny_overrides

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
IMAGENET_SIZED = ("ofa_mbv3", "ofa_resnet", "bignas_mbv3")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_two_training_steps_and_one_validation(compose_config, tmp_path, experiment):
    res = (32, 40) if experiment in IMAGENET_SIZED else (20, 24)
    cfg = compose_config("train", [f"experiment={experiment}", *tiny_overrides(tmp_path, resolutions=res, batch_size=4)])
    metrics = train(cfg)
    assert metrics["trainer/global_step"] == 2
    for key in ("val/top1_max", "val/top1_min", "val/top1_random"):
        assert 0.0 <= metrics[key] <= 1.0
    assert torch.isfinite(torch.tensor(metrics["train/loss_epoch"]))
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").is_file()


# A schedule whose middle phase spans two epochs, so stopping after epoch 2 stops mid-phase: the teacher
# snapshot, the sorted channels and the optimizer state must all come back on resume.
RESUME_SCHEDULE = [
    "schedule=ps_tiny",
    "schedule.phases=[{name: teacher, epochs: 1, lr: 0.05, distill: none},"
    " {name: kernel, epochs: 2, lr: 0.02, choices: {ks: all}, sampler: {_target_: supernets.training.samplers.UniformSampler, n_subnets: 2}},"
    " {name: expand, epochs: 1, lr: 0.02, choices: all, sort_channels: true, sampler: {_target_: supernets.training.samplers.UniformSampler, n_subnets: 2}}]",
]


def _resume_cfg(compose_config, out, *extra):
    base = tiny_overrides(out, max_steps=-1, batches=2, batch_size=8)
    base = [o for o in base if o != "callbacks=none"]
    return compose_config("train", [*base, *RESUME_SCHEDULE, "callbacks=default",
                                    "callbacks.progress_bar=null", *extra])


def test_resume_mid_phase_gives_the_same_weights_as_an_uninterrupted_run(compose_config, tmp_path):
    full = _resume_cfg(compose_config, tmp_path / "full")
    m_full = train(full)
    assert m_full["trainer/global_step"] == 8
    first = _resume_cfg(compose_config, tmp_path / "part", "trainer.max_steps=4")
    m_first = train(first)
    assert m_first["trainer/global_step"] == 4
    ckpt = tmp_path / "part" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(ckpt)["oncenas"]["phase"]["name"] == "kernel"
    second = _resume_cfg(compose_config, tmp_path / "part", f"ckpt_path={ckpt}")
    m_second = train(second)
    assert m_second["trainer/global_step"] == 8
    a, _ = load_supernet(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b, meta = load_supernet(tmp_path / "part" / "checkpoints" / "last.ckpt")
    assert weights_digest(a) == weights_digest(b)
    assert m_full["val/top1_max"] == m_second["val/top1_max"]
    assert meta["phase"]["name"] == "expand" and meta["supernet"] == "ofa_mbv3_tiny"
    # The resumed run logs next to the first one instead of overwriting its metrics.
    logged = [pd.read_csv(tmp_path / "part" / "csv" / f"version_{v}" / "metrics.csv") for v in (0, 1)]
    assert logged[0]["step"].max() < 4 <= logged[1]["step"].min()


def test_resume_mid_epoch_from_a_step_checkpoint_gives_the_same_weights_as_an_uninterrupted_run(compose_config,
                                                                                                 tmp_path):
    # 3 batches per epoch, a checkpoint every 2 steps, preempted at step 5: the last checkpoint (step 4) lies one
    # batch into epoch 1. Resuming must skip that batch of the same permutation, not replay the epoch from its start.
    every = ["data.n_train=24", "trainer.limit_train_batches=3", "callbacks.step_checkpoint.every_n_train_steps=2",
             "schedule.phases=[{name: teacher, epochs: 1, lr: 0.05, distill: none}, {name: kernel, epochs: 1, "
             "lr: 0.02, choices: {ks: all}, sampler: {_target_: supernets.training.samplers.UniformSampler, n_subnets: 2}}]"]
    m_full = train(_resume_cfg(compose_config, tmp_path / "full", *every))
    assert m_full["trainer/global_step"] == 6
    with pytest.raises(RuntimeError, match="preempted at step 5"):
        train(_resume_cfg(compose_config, tmp_path / "part", *every, "+callbacks.kill._target_=tests.training_utils.KillAt",
                          "+callbacks.kill.step=5"))
    ckpt = tmp_path / "part" / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(ckpt)
    assert (saved["global_step"], saved["epoch"], saved["oncenas"]["batches_in_epoch"]) == (4, 1, 1)  # mid-epoch
    m_second = train(_resume_cfg(compose_config, tmp_path / "part", *every, f"ckpt_path={ckpt}"))
    assert m_second["trainer/global_step"] == 6
    a, _ = load_supernet(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b, _ = load_supernet(ckpt)
    assert weights_digest(a) == weights_digest(b)


def test_resume_from_a_checkpoint_written_inside_an_epoch_is_refused(compose_config, tmp_path):
    # max_steps=3 with 2 steps per epoch stops inside epoch 1; Lightning still ends the epoch and the checkpoint
    # counts it as done, so a resumed run would take the phase from epoch 2 and the learning rate from step 3.
    train(_resume_cfg(compose_config, tmp_path, "trainer.max_steps=3"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(RuntimeError, match="stopped inside an epoch"):
        train(_resume_cfg(compose_config, tmp_path, f"ckpt_path={ckpt}"))


def test_resume_with_another_number_of_steps_per_epoch_is_refused(compose_config, tmp_path):
    # A clean epoch-end checkpoint (2 epochs of 2 steps), resumed with 1 batch per epoch: phase and learning rate
    # would disagree again, and the error must name this cause too.
    train(_resume_cfg(compose_config, tmp_path, "trainer.max_steps=4"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(RuntimeError, match="another number of steps per epoch"):
        train(_resume_cfg(compose_config, tmp_path, f"ckpt_path={ckpt}", "trainer.limit_train_batches=1"))


def test_a_phase_runs_alone_from_the_previous_phase_checkpoint(compose_config, tmp_path):
    cfg = _resume_cfg(compose_config, tmp_path / "a", "schedule.end_phase=teacher")
    train(cfg)
    teacher_ckpt = tmp_path / "a" / "checkpoints" / "phase_0_teacher.ckpt"
    assert teacher_ckpt.is_file()
    cfg = _resume_cfg(compose_config, tmp_path / "b", "schedule.start_phase=kernel", "schedule.end_phase=kernel",
                      f"init_from={teacher_ckpt}")
    metrics = train(cfg)
    assert metrics["trainer/global_step"] == 4 and "kernel/val/top1_max" in metrics
    teacher, _ = load_supernet(teacher_ckpt)
    ckpt = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")
    # OFA's teacher is the full network of the previous phase, frozen.
    snap = {k[len("teacher."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("teacher.")}
    assert all(torch.equal(snap[k], v) for k, v in teacher.named_parameters())


def test_checkpoint_carries_metadata_and_refuses_another_supernet(compose_config, tmp_path):
    cfg = _resume_cfg(compose_config, tmp_path, "schedule.end_phase=teacher")
    train(cfg)
    path = tmp_path / "checkpoints" / "last.ckpt"
    model, meta = load_supernet(path, supernet="ofa_mbv3_tiny")
    assert meta["supernet_kwargs"]["resolutions"] == [20, 24] and meta["data"]["name"] == "synthetic"
    assert meta["space"] == repr(model.space) and meta["sampler"]["seed"] == 0
    # the configs' _target_ keys name builders, not what was trained: the metadata records the things themselves
    assert not {"_target_", "_partial_", "_recursive_"} & {*meta["supernet_kwargs"], *meta["data"], *meta["schedule"]}
    assert meta["schedule"]["name"] == "progressive_shrinking" and meta["data"]["batch_size"] == cfg.data.batch_size
    with pytest.raises(ValueError, match="ofa_resnet_tiny"):
        load_supernet(path, supernet="ofa_resnet_tiny")
    other = compose_config("train", [*tiny_overrides(tmp_path / "r", resolutions=(20, 24)), "experiment=tiny_resnet_ps",
                                     f"ckpt_path={path}"])
    with pytest.raises(ValueError, match="holds supernet 'ofa_mbv3_tiny'"):
        train(other)


@pytest.mark.parametrize("logger", ["wandb", "tensorboard"])
def test_wandb_offline_and_tensorboard_loggers_write_their_runs_without_an_account(compose_config, tmp_path, logger,
                                                                                  monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = [o for o in tiny_overrides(tmp_path, max_steps=1, batches=1, batch_size=4) if o != "logger=csv"]
    metrics = train(compose_config("train", [*overrides, f"logger={logger}"]))
    assert metrics["trainer/global_step"] == 1
    pattern = "wandb/offline-run-*" if logger == "wandb" else "tensorboard/events.out.tfevents.*"
    assert list(tmp_path.glob(pattern))


def test_no_logger_with_the_default_callbacks_trains(compose_config, tmp_path):
    """``logger=none`` keeps configs/callbacks/default.yaml: its learning-rate monitor has nowhere to write and
    Lightning refuses it, so the run leaves it out instead of failing at the first step."""
    overrides = [o for o in tiny_overrides(tmp_path, max_steps=1, batches=1, batch_size=4)
                 if o not in ("logger=csv", "callbacks=none")]
    cfg = compose_config("train", [*overrides, "logger=none", "callbacks.progress_bar=null"])
    assert cfg.callbacks.lr_monitor is not None
    metrics = train(cfg)
    assert metrics["trainer/global_step"] == 1
