"""table=timm_cifar10's fine-tuned supernet leaves as a checkpoint that the search chain reads: it loads back with
its shape and weights, its host table is looked up with that shape (not the registry default's), the pipeline
takes it as ``ckpt=``, and the table's training knobs (head learning rate, clock, teacher) do what they say."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import yaml

from paper_tables.timm_cifar10 import CLOCKS, _is_head, _optimizer, build
from supernets import create_supernet
from supernets.checkpoints import save_supernet

TINY = {"num_classes": 10, "in_chans": 3, "resolutions": [32]}  # timm_tiny's default is 1 channel


def _trained_tiny() -> torch.nn.Module:
    """timm_tiny shaped like a CIFAR-10 run, its weights and BN statistics moved off their initial values."""
    net = create_supernet("timm_tiny", **TINY)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in [*net.parameters(), *(b for b in net.buffers() if b.is_floating_point())]:
            t.add_(0.1 * torch.randn(t.shape, generator=gen))
    return net


def test_saved_supernet_loads_back_with_its_shape_weights_and_data(tmp_path):
    from supernets.checkpoints import load_supernet

    net = _trained_tiny().to(memory_format=torch.channels_last)
    data = {"name": "cifar10", "root": "/data/cifar10", "batch_size": 64, "val_subset": 2000}
    path = tmp_path / "sn.ckpt"
    save_supernet(net, path, name="timm_tiny", kwargs=TINY, data=data, trained_by={"steps": 3})
    loaded, meta = load_supernet(path, supernet="timm_tiny")
    assert meta["supernet_kwargs"] == TINY and meta["data"] == data and meta["trained_by"] == {"steps": 3}
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    net.to(memory_format=torch.contiguous_format).eval()  # (channels_last convs round otherwise)
    for arch in (net.space.max_arch(32), net.space.min_arch(32), *net.space.sample(np.random.default_rng(0), 2)):
        net.set_active_subnet(arch)
        loaded.set_active_subnet(arch)
        with torch.no_grad():
            assert torch.equal(net(x), loaded(x)), arch


def test_search_serves_the_host_table_of_the_checkpoints_shape(tmp_path):
    """A checkpoint of a 3-channel, 10-class timm_tiny: the table keys name those shapes; the search must look its
    layers up there, not those of the registry's 1-channel default (which the table does not have)."""
    from predictors.base import ArchModel
    from search.components import load_components
    from supernets.measurable import measurable_for

    net = _trained_tiny()
    ckpt = tmp_path / "sn.ckpt"
    save_supernet(net, ckpt, name="timm_tiny", kwargs=TINY, data={"name": "cifar10_test"})
    folder = tmp_path / "tables" / "host_cpu" / "timm_tiny"
    folder.mkdir(parents=True)
    layers = measurable_for(net).distinct_layers()
    rows = ["resolution,key,latency_ms,std_ms,count"] + [f"{r},{key},{0.01 * (i + 1)},0.0,1"
                                                         for i, (r, key) in enumerate(sorted(layers))]
    (folder / "table.csv").write_text("\n".join(rows) + "\n")
    (folder / "meta.yaml").write_text(yaml.safe_dump({"device": "host_cpu", "supernet": "timm_tiny", "units": "ms",
                                                      "model": "table", "resolutions": [32]}))
    assert all(":32x32x3" in key for r, key in layers if "stem" in key)
    comps = load_components({"device": "host_cpu", "ckpt": str(ckpt), "latency_tables_dir": str(tmp_path / "tables"),
                             "latency_probe": 0}, accuracy=ArchModel(net.space))
    lat = comps.latency["host_cpu"]
    space = comps.space
    assert lat.predict([space.max_arch(32)])[0] > lat.predict([space.min_arch(32)])[0] > 0


def test_head_learning_rate_multiplier_reaches_only_the_new_classifier():
    net = create_supernet("timm_tiny", **TINY)
    opt = _optimizer(net, 0.1, head_lr_mult=10.0)
    seen = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in net.parameters())  # every parameter, once
    heads = {id(p) for n, p in net.named_parameters() if _is_head(n)}
    assert heads == {id(net.model.classifier.weight), id(net.model.classifier.bias)}
    for g in opt.param_groups:
        assert g["lr_mult"] == (10.0 if id(g["params"][0]) in heads else 1.0)
        assert all((id(p) in heads) == (g["lr_mult"] == 10.0) for p in g["params"])
        assert g["weight_decay"] == (0.0 if g["params"][0].ndim <= 1 else 3e-5)


def test_cpu_clock_is_process_time_over_the_threads():
    clock = CLOCKS["cpu"](2)
    t0, c0 = time.process_time(), clock()
    sum(i * i for i in range(300_000))  # burn CPU time in this process
    t1, c1 = time.process_time(), clock()
    assert c1 - c0 == pytest.approx((t1 - t0) / 2, rel=0.05, abs=1e-3) and c1 > c0


@pytest.mark.parametrize("key,value,allowed", [("teacher", "inplace", "frozen"), ("clock", "gpu", "wall")])
def test_table_refuses_an_unknown_teacher_or_clock_naming_the_key(tmp_path, key, value, allowed):
    cfg = {"data": "cifar10_test", "supernet": "timm_tiny", "pretrained": None, "budget_s": 0.01, key: value}
    with pytest.raises(ValueError, match=rf"table\.{key}='{value}'; allowed: .*'{allowed}'"):
        build(cfg, tmp_path)


def test_cifar10_held_out_subset_is_seeded_and_mixes_the_classes():
    from supernets.data.modules import create_datamodule

    # CIFAR-10's test set as its archive stores it: class by class (here 100 random images per class)
    gen = np.random.default_rng(0)
    test = (gen.integers(0, 256, (1000, 3, 32, 32), dtype=np.uint8), np.repeat(np.arange(10), 100))
    train = (test[0][:64], test[1][:64])
    dm = create_datamodule(name="cifar10", root="unused", val_subset=200, batch_size=8)
    dm.load_splits = lambda: {"train": train, "test": test}
    (_, first), (_, second) = dm._build(), dm._build()
    assert len(first) == 200 and torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    counts = np.bincount(first.labels.numpy(), minlength=10)
    assert counts.min() >= 10  # never the first 200 (two classes)
    rows = {img.tobytes(): int(lab) for img, lab in zip(*test)}
    assert all(rows[img.numpy().tobytes()] == int(lab) for img, lab in zip(first.images, first.labels))
    with pytest.raises(ValueError, match=r"data\.val_subset"):
        create_datamodule(name="cifar10", root="unused", val_subset=0)


def test_pipeline_takes_a_trained_checkpoint_and_builds_its_table_at_its_shape(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from scripts import pipeline as pipe
    from supernets.config_checks import ConfigError

    ckpt = tmp_path / "sn.ckpt"
    save_supernet(create_supernet("timm_tiny", **TINY), ckpt, name="timm_tiny", kwargs=TINY,
                  data={"name": "cifar10_test"})
    base = {"out": str(tmp_path / "p"), "n": 10, "top_k": 2, "probe_k": 3, "recal_k": 3, "predictor": "ridge",
            "supernet": "ofa_mbv3_tiny", "train_args": "", "search_args": "", "latency": "recalibrate",
            "ckpt": str(ckpt)}
    o = pipe._opts(OmegaConf.create({**base, "steps": ["dataset", "predictor", "latency", "search", "measure"]}))
    assert o["supernet"] == "timm_tiny" and o["supernet_kwargs"] == TINY
    with pytest.raises(ConfigError, match="drop the train step"):
        pipe._opts(OmegaConf.create({**base, "steps": ["train", "dataset"]}))
    cmd = pipe.host_build_command(tmp_path / "t", "timm_tiny", supernet_kwargs=TINY)
    (arg,) = [a for a in cmd if a.startswith("supernet_kwargs=")]
    parsed = OverridesParser.create().parse_overrides([arg])[0].value()
    assert {k: (list(v) if isinstance(v, list) else v) for k, v in parsed.items()} == TINY
