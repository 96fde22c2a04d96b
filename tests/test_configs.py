"""Every training config composes; every registered supernet has its configs/supernet file and vice versa."""

from __future__ import annotations

import functools

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


@pytest.mark.parametrize("name", supernets.list_supernets())
def test_every_registered_supernet_has_a_config_file(name):
    assert (CONFIG_DIR / "supernet" / f"{name}.yaml").is_file()


@pytest.mark.parametrize("path", SUPERNET_FILES, ids=lambda p: p.stem)
def test_supernet_config_builds_its_supernet_with_the_configured_resolutions(path):
    if path.stem not in ("ofa_mbv3_tiny", "ofa_resnet_tiny"):
        pytest.skip("ImageNet-sized supernets are built by their own tests")
    from hydra.utils import instantiate

    cfg = yaml.safe_load(path.read_text())
    model = instantiate({k: v for k, v in cfg.items() if v is not None})  # the file names its builder (_target_)
    assert list(model.space.resolutions) == cfg["resolutions"] and model.name == cfg["name"]


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


# ---------------------------------------------------------------- every option of every group composes and builds
# (lightning-hydra-template's test_*_config, one parameter per option). Each group is composed inside the primary
# config that selects it (search.yaml or train.yaml: interpolations such as ${paths.output_dir} resolve there) and
# built the way the code builds it: instantiate() where the config has a _target_, the registry otherwise.
SEARCH_GROUPS = ("device", "predictor", "algorithm", "objectives", "constraints", "export")
TRAIN_GROUPS = ("supernet", "data", "schedule", "trainer", "logger", "callbacks", "experiment", "paths")
#: folders of primary configs for the scripts (composed by their own tests) and Hydra's own settings: not groups
#: of components
NOT_GROUPS = {"latency", "scripts", "reproduce", "hydra"}
#: built in seconds on a CPU; the ImageNet-size ones take 1.5-13 s each here and their family tests build them
TINY_SUPERNETS = {"ofa_mbv3_tiny", "ofa_resnet_tiny", "timm_tiny", "vit_cifar_tiny"}


def _options() -> list[tuple[str, str]]:
    from supernets.compose import group_options

    return [(g, o) for g in (*SEARCH_GROUPS, *TRAIN_GROUPS) for o in group_options(g)]


def test_every_config_folder_is_an_option_group_of_search_or_train():
    folders = {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()}
    assert folders - NOT_GROUPS == set(SEARCH_GROUPS) | set(TRAIN_GROUPS)


def _compose_with(primary: str, group: str, option: str, tmp_path):
    from hydra import compose

    from supernets.compose import hydra_on

    extra = ["paths.output_dir=" + str(tmp_path)] if primary == "train" else []
    with hydra_on():
        return compose(primary, overrides=[f"{group}={option}", *extra], return_hydra_config=True)


@functools.lru_cache(maxsize=8)
def _tiny(name: str):
    return supernets.create_supernet(name)


def _space_and_cost(supernet_name: str):
    """The space (and MAC counter) a schedule is built against, without building an ImageNet-size supernet."""
    from supernets.space import MobileNetV3Space, ResNetSpace

    if supernet_name in TINY_SUPERNETS:
        net = _tiny(supernet_name)
        return net.space, lambda enc: net.macs_params(enc)[0]
    if supernet_name.startswith("ofa_mbv3"):
        return MobileNetV3Space(), None
    if supernet_name.startswith("ofa_resnet"):
        return ResNetSpace(), None
    return None, None


#: the supernet each schedule is written for (the experiments' pairing; the rest train the default tiny MBv3)
SCHEDULE_SUPERNET = {"ps_ofa_mbv3": "ofa_mbv3_w10", "sandwich_bignas": "ofa_mbv3_w10", "ps_ofa_resnet": "ofa_resnet50",
                     "ps_resnet_tiny": "ofa_resnet_tiny", "instatune": "timm_tf_efficientnet_lite0"}


@functools.lru_cache(maxsize=1)
def _all_devices() -> dict:
    from hydra import compose
    from omegaconf import OmegaConf

    from supernets.compose import group_options, hydra_on

    with hydra_on():
        cfg = compose(overrides=[f"+device=[{','.join(group_options('device'))}]"])
    return OmegaConf.to_container(cfg.device, resolve=True)


def _instantiate_each(node) -> list:
    from hydra.utils import instantiate

    return [instantiate(v) for v in (node or {}).values() if isinstance(v, dict) and "_target_" in v]


@pytest.mark.parametrize(("group", "option"), _options(), ids=lambda v: str(v))
def test_every_config_of_every_group_composes_and_builds(group, option, tmp_path):
    import numpy as np
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if group == "device":  # every device at once (device=[a,b,...] composes each under its own name)
        cfg, node = None, _all_devices()
    elif group in ("predictor", "algorithm"):  # no interpolation: the option alone (cached per option)
        from supernets.compose import compose_option

        cfg, node = None, compose_option(group, option)
    else:
        cfg = _compose_with("search" if group in SEARCH_GROUPS else "train", group, option, tmp_path)
        # an experiment is a diff over the whole config (@package _global_): no node of its own
        node = OmegaConf.to_container(cfg[group], resolve=True) if group != "experiment" else None
    if group == "device":
        from predictors.latency.devices import Device, as_device
        from supernets.paths import LATENCY_TABLES_DIR

        dev = as_device(node[option])  # each option under its own name: device=[a,b] selects both side by side
        # every device ships its data, but host_cpu_quant: its tables are the quantization table's latency_table/
        # of the user's trained supernet (its config says so; tests/test_quant_search.py builds one)
        assert isinstance(dev, Device) and ((LATENCY_TABLES_DIR / dev.table_dir).is_dir() or option == "host_cpu_quant")
    elif group == "predictor":
        from predictors.accuracy import AccuracyPredictor
        from predictors.accuracy.loading import recipe
        from supernets.space import MobileNetV3Space

        factory = instantiate(node, _convert_="all")
        if factory.func is recipe:  # a training recipe: an unfitted predictor of that kind
            model = factory(space=MobileNetV3Space())
            assert isinstance(model, AccuracyPredictor) and model.kind == node["kind"]
        elif "dataset" in node and node["dataset"] is None:  # fitted at load on the user's measured rows: it says so
            # (tests/test_quant_search.py builds quant_drop on a CSV of quantized subnets measured with ONNX Runtime)
            with pytest.raises(ValueError, match=r"predictor\.dataset="):
                factory()
        else:  # published or shipped: it predicts
            model = factory()
            top1 = model.predict(model.space.decode(model.space.sample_encoded(np.random.default_rng(0), 4)))
            assert np.isfinite(top1).all() and ((top1 > 0) & (top1 < 1)).all()
    elif group == "algorithm":
        from search.algorithms import SearchAlgorithm
        from search.components import build_algorithm

        algo = build_algorithm(node)
        assert isinstance(algo, SearchAlgorithm) and algo.name == node["name"] and algo.total_generations >= 1
        if isinstance(getattr(algo, "predictor", None), dict):  # LINAS: the recipe it fits each iteration
            from predictors.accuracy.models import build_predictor
            from supernets.space import MobileNetV3Space

            assert build_predictor(algo.predictor, MobileNetV3Space()).kind == algo.predictor["kind"]
    elif group in ("objectives", "constraints", "export"):
        from search.config_check import check_search_config
        from search.objectives import DeviceObjectives
        from search.runner import from_hydra

        checked = check_search_config(from_hydra(cfg))
        obj = DeviceObjectives.build("pixel", checked["objectives"]["names"], checked["constraints"])
        assert obj.n_obj == len(checked["objectives"]["names"])
    elif group == "supernet":
        if option not in TINY_SUPERNETS:
            pytest.skip(f"{option}: ImageNet-size, seconds to build on CPU; built by its family's tests")
        from supernets.training.pipeline import build_supernet

        # build_supernet fills num_classes / in_chans from the data, then instantiates the file's _target_
        model, name, kwargs = build_supernet(node, instantiate(cfg.data))
        assert model.name == name == node["name"] and "_target_" not in kwargs
    elif group == "data":
        if OmegaConf.is_missing(cfg.data, "root"):
            pytest.skip(f"data={option} reads the user's files (data.root=...); none are bundled")
        from supernets.data.modules import SupernetDataModule

        dm = instantiate(node)
        assert isinstance(dm, SupernetDataModule) and dm.num_classes >= 2 and dm.config["name"] == node["name"]
    elif group in ("schedule", "experiment"):
        from supernets.training.samplers import SubnetSampler
        from supernets.training.schedule import Schedule

        sn = SCHEDULE_SUPERNET.get(option, "ofa_mbv3_tiny") if group == "schedule" else str(cfg.supernet.name)
        if group == "experiment":  # the loss an experiment names is built too (loss.distill's _target_)
            import torch

            loss = instantiate(cfg.loss.distill)
            student, teacher = torch.zeros(2, 10), torch.eye(2, 10) * 5
            assert float(loss(student, teacher)) > float(loss(teacher, teacher)) >= 0  # a divergence: least at equal
        space, cost = _space_and_cost(sn)
        if space is None:
            pytest.skip(f"supernet {sn}: its space comes from building the wrapped timm model (seconds)")
        sched = instantiate(cfg.schedule)(space, global_batch_size=64, cost_fn=cost)  # _partial_: the run's space
        assert isinstance(sched, Schedule) and sched.phases
        assert all(isinstance(p.sampler, SubnetSampler) for p in sched.phases)
    elif group == "trainer":
        import torch

        if node.get("accelerator") == "gpu" and not torch.cuda.is_available():
            pytest.skip("trainer=gpu needs a CUDA device")
        from lightning.pytorch import Trainer

        assert isinstance(instantiate(node), Trainer)
    elif group in ("logger", "callbacks"):
        if option == "wandb":
            pytest.importorskip("wandb", reason="logger=wandb needs the wandb package (an optional dependency)")
        built = _instantiate_each(node)
        assert len(built) == sum(isinstance(v, dict) and "_target_" in v for v in (node or {}).values())
    else:  # paths, hydra: settings, nothing to build
        assert cfg.paths.output_dir == str(tmp_path)


def test_a_name_composed_inside_a_running_app_leaves_the_app_hydra_as_it_was(tmp_path):
    """search.py and scripts/reproduce.py are Hydra apps: a component looked up by name inside them is composed
    from the app's search path when it has the option, from configs/ otherwise, and the app's Hydra is kept."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from supernets.compose import compose_option

    (tmp_path / "device").mkdir()
    (tmp_path / "device" / "my_phone.yaml").write_text(
        "# @package device.my_phone\n_target_: predictors.latency.devices.Device\nname: my_phone\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        app = GlobalHydra.instance().hydra
        assert compose_option("device", "my_phone")["my_phone"]["name"] == "my_phone"  # the app's own option
        assert compose_option("device", "pixel1")["pixel1"]["name"] == "pixel"  # the repository's, alias resolved
        assert GlobalHydra.instance().hydra is app


@pytest.mark.parametrize("path", sorted(p for g in ("data", "supernet", "schedule")
                                        for p in (CONFIG_DIR / g).glob("*.yaml")), ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_every_training_config_names_an_importable_builder(path):
    """Including the options the build test skips (user data, ImageNet-size supernets): each file's _target_ and
    each phase's sampler _target_ resolve, so `train.py` builds them with instantiate like the rest."""
    from hydra.utils import get_class, get_method

    from supernets.training.samplers import SubnetSampler

    cfg = yaml.safe_load(path.read_text())
    assert callable(get_method(cfg["_target_"]))
    for phase in cfg.get("phases", []):
        assert issubclass(get_class(phase["sampler"]["_target_"]), SubnetSampler), (path.name, phase["name"])


def test_override_values_written_for_child_command_lines_parse_back_to_the_same_values():
    """pipeline.py, bench_training.py and the small-scale table pass dicts to child commands as overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from supernets.compose import override_value

    parser = OverridesParser.create()
    for value in ({"num_classes": 10, "resolutions": [24, 32], "width": 0.25, "drop": None},
                  {"r": [24], "d": [1], "ks": [3, 5], "e": [3]}, [1, [2, 3]], 7):
        assert parser.parse_override(f"key={override_value(value)}").value() == value
