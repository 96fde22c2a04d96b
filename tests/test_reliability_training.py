"""Training refuses to go on wrong (issue #27 items 4, 5, 7): a diverged loss stops the run by name, a resume
with other settings is refused naming the keys, a truncated checkpoint and bad supernet options are named."""

from __future__ import annotations

import pytest

import supernets
from supernets.checkpoints import load_checkpoint
from supernets.training import train
from supernets.training.callbacks import TrainingDiverged
from tests.training_utils import tiny_overrides


def _cfg(compose_config, out, *extra, **kw):
    base = [o for o in tiny_overrides(out, max_steps=-1, batches=2, batch_size=8, **kw) if o != "callbacks=none"]
    return compose_config("train", [*base, "schedule=ps_tiny", "callbacks=default", "callbacks.progress_bar=null",
                                    *extra])


def test_a_diverged_loss_stops_training_naming_phase_step_and_learning_rate(compose_config, tmp_path):
    # lr 1e6 on the first phase: finite in epoch 0, NaN in epoch 1 (both epochs belong to phase 'teacher')
    cfg = _cfg(compose_config, tmp_path, "schedule.phases=[{name: teacher, epochs: 2, lr: 1.0e+6, distill: none}]")
    with pytest.raises(TrainingDiverged, match=r"loss is nan in phase 0 'teacher' at optimizer step \d+ .*"
                                               r"learning rate too high .*schedule.phases\[0\].lr=1e\+06"):
        train(cfg)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert not [c for c in ckpts if c.startswith("phase_")]  # the diverged phase is not saved as finished


def test_resume_with_other_resolutions_or_data_is_refused_naming_the_keys(compose_config, tmp_path):
    one_phase = "schedule.phases=[{name: teacher, epochs: 2, lr: 0.05, distill: none}]"
    train(_cfg(compose_config, tmp_path, one_phase, "trainer.max_steps=2"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    other = _cfg(compose_config, tmp_path, one_phase, f"ckpt_path={ckpt}", resolutions=(20, 28))
    with pytest.raises(ValueError, match=r"supernet.resolutions: checkpoint \[20, 24\], now \[20, 28\]; "
                                         r"data.image_size: checkpoint 24, now 28"):
        train(other)
    with pytest.raises(ValueError, match=r"data.n_train: checkpoint 16, now 24"):
        train(_cfg(compose_config, tmp_path, one_phase, f"ckpt_path={ckpt}", "data.n_train=24"))
    train(_cfg(compose_config, tmp_path, one_phase, f"ckpt_path={ckpt}", "data.num_workers=0"))  # same run: resumes


def test_a_truncated_checkpoint_is_named_with_what_to_do(compose_config, tmp_path):
    train(_cfg(compose_config, tmp_path / "run", "schedule.end_phase=teacher"))
    data = (tmp_path / "run" / "checkpoints" / "last.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"checkpoint .*cut.ckpt cannot be read .*truncated"):
        load_checkpoint(cut)
    with pytest.raises(ValueError, match=r"cut.ckpt cannot be read"):
        train(_cfg(compose_config, tmp_path / "run", "schedule.end_phase=teacher", f"ckpt_path={cut}"))


@pytest.mark.parametrize("kwargs,message", [
    ({"num_classes": 0}, r"supernet.num_classes must be an integer >= 1, got 0"),
    ({"num_classes": "ten"}, r"supernet.num_classes must be an integer >= 1, got 'ten'"),
    ({"resolutions": [-32]}, r"supernet.resolutions\[\] must be an integer >= 8, got -32"),
    ({"resolutions": []}, r"supernet.resolutions of 'ofa_mbv3_tiny' must be a non-empty list"),
    ({"resolutions": 32}, r"must be a non-empty list of image sizes, got 32"),
    ({"widht_mult": 1.0}, r"supernet 'ofa_mbv3_tiny': .*widht_mult.*see configs/supernet/ofa_mbv3_tiny.yaml"),
])
def test_bad_supernet_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        supernets.create_supernet("ofa_mbv3_tiny", **kwargs)


@pytest.mark.parametrize("override,message", [
    ("data.batch_size=0", r"data.batch_size must be an integer >= 1, got 0"),
    ("data.num_workers=-1", r"data.num_workers must be an integer >= 0, got -1"),
    ("threads=0", r"threads must be an integer >= 1, got 0"),
    ("seed=-1", r"seed must be an integer >= 0, got -1"),
])
def test_bad_training_options_are_named_before_training(compose_config, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        train(_cfg(compose_config, tmp_path, override))
