"""The scripts' options: documented names that clashed with config groups can be set, and bad values are refused
by name before any work (issue #27 item 7)."""

from __future__ import annotations

import importlib.util

import pytest
from hydra import compose, initialize_config_dir

from supernets.paths import CONFIG_DIR, REPO_ROOT


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _compose(config_dir, name, overrides):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def _dataset_cfg(*overrides):
    # the folder the script's @hydra.main reads: `device=cpu` must be this script's option, not a latency device
    return _compose(CONFIG_DIR / "scripts", "build_accuracy_dataset", ["ckpt=missing.ckpt", *overrides])


def test_build_accuracy_dataset_takes_its_documented_device_option():
    assert _dataset_cfg("device=cpu").device == "cpu"
    assert _dataset_cfg("device=cuda:1").device == "cuda:1"


@pytest.mark.parametrize("override,message", [
    ("limit=-3", r"limit must be an integer >= 1, got -3"),
    ("jobs=0", r"jobs must be an integer >= 1, got 0"),
    ("n=0", r"n must be an integer >= 1, got 0"),
    ("calib_batches=-1", r"calib_batches must be an integer >= 0, got -1"),
    ("threads=abc", r"threads must be an integer >= 1, got 'abc'"),
    ("device=gpu", r"device='gpu' is not a torch device; use cpu, cuda or cuda:<i>"),
    ("out=/tmp/a,b.csv", r"out=/tmp/a,b.csv contains a comma"),
])
def test_build_accuracy_dataset_refuses_bad_options_before_loading_the_checkpoint(override, message):
    key, _, value = override.partition("=")
    cfg = _dataset_cfg()
    cfg[key] = value if key in ("device", "out", "threads") else int(value)
    with pytest.raises(ValueError, match=message):
        _script("build_accuracy_dataset").run(cfg)  # ckpt=missing.ckpt: a later check would say FileNotFound


def test_train_predictor_takes_its_documented_supernet_option(tmp_path):
    cfg = _compose(CONFIG_DIR, "train_predictor", ["dataset=dynast_ofa_mbv3_w10", "supernet=ofa_mbv3_w12"])
    with pytest.raises(ValueError, match=r"measured on supernet 'ofa_mbv3_w10', not 'ofa_mbv3_w12'"):
        _script("train_predictor").run(cfg, tmp_path / "p.pth")
    cfg = _compose(CONFIG_DIR, "train_predictor", ["dataset=dynast_ofa_mbv3_w10", "folds=1"])
    with pytest.raises(ValueError, match=r"folds must be an integer >= 2, got 1"):
        _script("train_predictor").run(cfg, tmp_path / "p.pth")
