"""Every training config composes; every registered supernet has its configs/supernet file and vice versa."""

from __future__ import annotations

import pytest
import yaml

import supernets
from supernets.paths import CONFIG_DIR
from supernets.training.schedule import build_schedule
from tests.script_utils import load_script, script_config

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
SUPERNET_FILES = sorted((CONFIG_DIR / "supernet").glob("*.yaml"))


def test_default_train_config_selects_tiny_mbv3_on_bundled_mnist_with_progressive_shrinking(compose_config):
    cfg = compose_config("train", ["paths.output_dir=/tmp/unused"])
    assert cfg.supernet.name == "ofa_mbv3_tiny"
    assert cfg.data.name == "mnist10k"
    assert cfg.schedule.name == "progressive_shrinking"
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1
    assert "csv" in cfg.logger


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_a_supernet_data_and_schedule(compose_config, experiment):
    cfg = compose_config("train", [f"experiment={experiment}", "paths.output_dir=/tmp/unused"])
    assert supernets.is_supernet(cfg.supernet.name)
    assert cfg.schedule.phases, "a schedule lists at least one phase"
    for phase in cfg.schedule.phases:
        assert phase.epochs > 0 and phase.lr > 0


@pytest.mark.parametrize("path", SUPERNET_FILES, ids=lambda p: p.stem)
def test_supernet_config_names_a_registered_supernet_matching_its_file(path):
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"].replace("/", "_") == path.stem  # timm/<model> lives in timm_<model>.yaml
    assert supernets.is_supernet(cfg["name"])
    assert "_target_" not in cfg


@pytest.mark.parametrize("name", supernets.list_supernets())
def test_every_registered_supernet_has_a_config_file(name):
    assert (CONFIG_DIR / "supernet" / f"{name}.yaml").is_file()


@pytest.mark.parametrize("path", SUPERNET_FILES, ids=lambda p: p.stem)
def test_supernet_config_builds_its_supernet_with_the_configured_resolutions(path):
    if path.stem not in ("ofa_mbv3_tiny", "ofa_resnet_tiny"):
        pytest.skip("ImageNet-sized supernets are built by their own tests")
    cfg = yaml.safe_load(path.read_text())
    kwargs = {k: v for k, v in cfg.items() if k != "name" and v is not None}
    model = supernets.create_supernet(cfg["name"], **kwargs)
    assert list(model.space.resolutions) == cfg["resolutions"]


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "wandb", "many", "none"])
def test_logger_group_composes(compose_config, logger):
    cfg = compose_config("train", [f"logger={logger}", "paths.output_dir=/tmp/unused"])
    if logger == "wandb":
        assert cfg.logger.wandb.offline is True


def test_ddp_trainer_uses_two_processes_and_tolerates_unused_parameters(compose_config):
    cfg = compose_config("train", ["trainer=ddp", "paths.output_dir=/tmp/unused"])
    assert cfg.trainer.devices == 2 and cfg.trainer.strategy.find_unused_parameters is True


def _pipeline_script():
    return load_script("pipeline")


@pytest.mark.parametrize("supernet", ["ofa_mbv3_tiny", "ofa_resnet_tiny"])
def test_pipeline_trains_each_tiny_supernet_with_a_schedule_of_its_own_genes(compose_config, supernet):
    overrides = _pipeline_script().train_overrides(supernet)
    cfg = compose_config("train", [*overrides, "paths.output_dir=/tmp/unused"])
    assert cfg.supernet.name == supernet
    space = supernets.create_supernet(supernet).space
    assert build_schedule(cfg.schedule, space, global_batch_size=64).phases  # ps_tiny names ks: ResNet has none


def _pipeline_opts(*overrides: str) -> dict:
    return _pipeline_script()._opts(script_config("pipeline", *overrides))


def test_pipeline_rejects_a_non_integer_option_by_name():
    with pytest.raises(ValueError, match="n must be an integer >= 1, got '3OO'"):
        _pipeline_opts("n=3OO")


def test_pipeline_refuses_latency_steps_for_a_supernet_without_a_latency_table_up_front(monkeypatch):
    from predictors.latency.devices import geometry_for
    from supernets.ofa_resnet import OFAResNet

    assert _pipeline_opts("supernet=ofa_resnet_tiny")["supernet"] == "ofa_resnet_tiny"  # it has tables
    monkeypatch.delattr(OFAResNet, "latency_layers")  # a family without the measurable-layer protocol
    geometry_for.cache_clear()
    try:
        with pytest.raises(SystemExit, match=r"measurable-layer protocol.*steps=\[train,dataset,predictor\]"):
            _pipeline_opts("supernet=ofa_resnet_tiny")
        assert _pipeline_opts("supernet=ofa_resnet_tiny", "steps=[train,dataset,predictor]")["n"] == 300
    finally:
        geometry_for.cache_clear()
    with pytest.raises(SystemExit, match="unknown supernet 'nope'"):
        _pipeline_opts("supernet=nope")


def test_bench_search_options_are_checked_by_name():
    bench = load_script("bench_search")
    assert bench._opts(script_config("bench_search", "budgets=[20,30]", "n_gen=3"))["budgets"] == [20, 30]
    for bad, msg in (("budgets=abc", "budgets must be a list of latency limits in ms .* got 'abc'"),
                     ("budgets=25", "budgets must be a list"), ("n_gen=1.5", "n_gen must be an integer")):
        with pytest.raises(ValueError, match=msg):
            bench._opts(script_config("bench_search", bad))
