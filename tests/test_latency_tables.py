"""Shipped latency tables: published values, key completeness, loading and error messages."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import predictors
from predictors.latency.devices import NoLatencyDataError, UnknownDeviceError, device_config, geometry_for, list_devices
from predictors.latency.models import TableLatencyModel
from predictors.latency.table import LatencyTableError, MissingLatencyKeyError, load_table
from supernets.measurable_mbv3 import MBv3Geometry
from supernets.paths import LATENCY_TABLES_DIR

NOTE10 = LATENCY_TABLES_DIR / "note10" / "ofa_mbv3_w12"
HOST_TINY = LATENCY_TABLES_DIR / "host_cpu" / "ofa_mbv3_tiny"
# The OFA tutorial's subnet found under a 25 ms Note10 budget (the reference data's README).
TUTORIAL = {"d": [2, 2, 3, 4, 3],
            "ks": [5, 3, None, None, 5, 3, None, None, 7, 7, 3, None, 5, 5, 7, 3, 3, 3, 5, None],
            "e": [3, 3, None, None, 4, 4, None, None, 6, 3, 4, None, 4, 4, 4, 3, 6, 6, 6, None]}
TUTORIAL_MS = {160: 18.35, 176: 21.89, 192: 24.73, 208: 29.65, 224: 33.11}


def _tutorial_arch(space, r):
    return space.arch(r=r, **TUTORIAL)


@pytest.mark.parametrize("r", sorted(TUTORIAL_MS))
def test_note10_table_sums_tutorial_subnet_to_published_latency(r):
    model = predictors.load_latency_model("note10", "ofa_mbv3_w12")
    got = model.predict([_tutorial_arch(model.space, r)])[0]
    assert got == pytest.approx(TUTORIAL_MS[r], abs=0.006)


def test_note10_table_holds_every_block_of_the_w12_space_at_160_to_224():
    table = load_table(NOTE10)
    assert table.resolutions == [160, 176, 192, 208, 224]
    needed = geometry_for("ofa_mbv3_w12").distinct_layers(table.resolutions)
    missing = sorted(set(needed) - set(table.entries))
    assert not missing, f"{len(missing)} blocks missing, e.g. {missing[:3]}"
    assert len(table.entries) == len(needed)  # nothing extra either


@pytest.mark.parametrize("folder", sorted(p.parent for p in (LATENCY_TABLES_DIR / "host_cpu").glob("*/meta.yaml")),
                         ids=lambda p: p.name)
def test_measured_tables_hold_every_block_at_each_covered_resolution_and_say_which_host(folder):
    table = load_table(folder)
    geometry = geometry_for(folder.name)
    assert table.resolutions == sorted(table.meta["resolutions"])
    missing = sorted(set(geometry.distinct_layers(table.resolutions)) - set(table.entries))
    assert not missing, f"{len(missing)} blocks missing, e.g. {missing[:3]}"
    meta = table.meta
    assert meta["status"] == "complete"
    for field in ("cpu", "onnxruntime", "provider", "threads", "batch", "statistic"):
        assert field in meta["fingerprint"]
    assert {"a", "b", "c"} <= set(meta["calibration"])
    assert (folder / "calibration.csv").is_file()


def test_host_cpu_tiny_table_covers_every_resolution_of_the_space():
    assert load_table(HOST_TINY).resolutions == list(geometry_for("ofa_mbv3_tiny").space.resolutions)


def _shipped():
    out = []
    for meta in sorted(LATENCY_TABLES_DIR.glob("*/*/meta.yaml")):
        out.append((meta.parent.parent.name, meta.parent.name))
    return out


@pytest.mark.parametrize(("device", "supernet"), _shipped())
def test_every_shipped_model_loads_and_predicts_positive_latencies(device, supernet):
    model = predictors.load_latency_model(device, supernet)
    x = model.space.sample_encoded(np.random.default_rng(0), 256)
    y = model.predict(x)
    assert y.shape == (256,) and np.all(np.isfinite(y)) and np.all(y > 0)
    # bigger nets are slower: the max arch beats the min arch at the same resolution
    r = model.space.resolutions[-1]
    hi, lo = model.predict([model.space.max_arch(r), model.space.min_arch(r)])
    assert hi > lo


def test_required_devices_are_registered_with_aliases():
    names = set(list_devices())
    assert {"note10", "pixel", "pixel1", "pixel2", "note8", "s7edge", "lg_g8", "host_cpu", "v100"} <= names
    a = predictors.load_latency_model("pixel1", "ofa_mbv3_w12")
    b = predictors.load_latency_model("pixel", "ofa_mbv3_w12")
    x = a.space.sample_encoded(np.random.default_rng(1), 8)
    np.testing.assert_allclose(a.predict(x), b.predict(x))
    for name in names:  # composed by Hydra: a file names itself, an alias composes another registered device
        canonical = device_config(name)["name"]
        assert canonical == name or canonical in names
    assert device_config("pixel1")["name"] == "pixel" and device_config("v100")["name"] == "help_v100_b64"


def test_table_model_equals_per_arch_python_sum():
    model = predictors.load_latency_model("note10", "ofa_mbv3_w12")
    table = load_table(NOTE10)
    g = geometry_for("ofa_mbv3_w12")
    sp = g.space
    rng = np.random.default_rng(3)
    x = sp.sample_encoded(rng, 50)
    x[:, 0] = rng.choice([sp.resolutions.index(r) for r in table.resolutions], size=50)
    archs = sp.decode(x)
    walk = [sum(table.lookup(a.r, s.key) for s in g.layers(a)) for a in archs]
    np.testing.assert_allclose(model.predict(x), walk, rtol=1e-12)


def test_unknown_device_error_lists_known_devices():
    with pytest.raises(UnknownDeviceError, match=r"known devices: .*note10.*pixel"):
        predictors.load_latency_model("pixel9000", "ofa_mbv3_w12")


def test_device_without_table_names_supernet_device_and_build_command(tmp_path):
    with pytest.raises(NoLatencyDataError) as info:
        predictors.load_latency_model("host_cpu", "ofa_mbv3_w12", tables_dir=_tables_without("ofa_mbv3_w12", tmp_path))
    msg = str(info.value)
    assert "ofa_mbv3_w12" in msg and "host_cpu" in msg
    assert "python scripts/build_latency_table.py supernet=ofa_mbv3_w12 device=host_cpu" in msg


@pytest.mark.parametrize("device", ["host_cpu", "pixel"])
def test_supernet_family_without_latency_model_is_told_so_instead_of_a_build_that_fails(device, monkeypatch, tmp_path):
    from supernets.ofa_resnet import OFAResNet

    monkeypatch.delattr(OFAResNet, "latency_layers")  # a family that does not implement the protocol
    geometry_for.cache_clear()
    try:
        with pytest.raises(NoLatencyDataError) as info:
            predictors.load_latency_model(device, "ofa_resnet_tiny", tables_dir=_tables_without("ofa_resnet_tiny", tmp_path))
    finally:
        geometry_for.cache_clear()
    msg = str(info.value)
    assert "supernet=ofa_resnet_tiny" not in msg  # the build would fail: the family has no measurable layers
    assert "does not implement the measurable-layer protocol" in msg
    assert re.search(r"ofa_mbv3_w12 on [^;]*lg_g8, note10", msg) and "ofa_mbv3_tiny on host_cpu" in msg


@pytest.mark.parametrize("device", ["pixel"])
def test_supernet_family_with_the_protocol_but_no_data_is_told_the_build_command(device):
    with pytest.raises(NoLatencyDataError) as info:
        predictors.load_latency_model(device, "ofa_resnet_tiny")
    assert f"python scripts/build_latency_table.py supernet=ofa_resnet_tiny device={device}" in str(info.value)


def _tables_without(supernet: str, tmp_path: Path) -> Path:
    """The shipped tables minus ``supernet``'s folders (a copy: the tests must not touch the repo's)."""
    dst = tmp_path / "latency_tables"
    shutil.copytree(LATENCY_TABLES_DIR, dst, ignore=shutil.ignore_patterns(supernet))
    return dst


@pytest.fixture
def note10_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "tables" / "note10" / "ofa_mbv3_w12"
    shutil.copytree(NOTE10, dst)
    shutil.copy(LATENCY_TABLES_DIR / "note10" / "layer_cost.yaml", dst.parent / "layer_cost.yaml")
    return dst


def _load(folder: Path):
    return predictors.load_latency_model("note10", "ofa_mbv3_w12", tables_dir=folder.parent.parent)


def test_copied_table_loads_like_the_shipped_one(note10_copy):
    x = geometry_for("ofa_mbv3_w12").space.sample_encoded(np.random.default_rng(0), 20)
    np.testing.assert_allclose(_load(note10_copy).predict(x),
                               predictors.load_latency_model("note10", "ofa_mbv3_w12").predict(x))


def test_missing_key_error_names_block_and_table(note10_copy):
    lines = (note10_copy / "table.csv").read_text().splitlines()
    dropped = next(ln for ln in lines if ln.startswith("192,mbconv-in:12x12x96"))
    (note10_copy / "table.csv").write_text("\n".join(ln for ln in lines if ln != dropped) + "\n")
    key = dropped.split(",")[1]
    with pytest.raises(MissingLatencyKeyError) as info:
        _load(note10_copy)
    assert key in str(info.value) and str(note10_copy) in str(info.value) and "192" in str(info.value)


@pytest.mark.parametrize(("mutate", "pattern"), [
    (lambda t: "resolution,key,ms\n" + t.split("\n", 1)[1], "header"),
    (lambda t: t.replace(",0.8487194388777555,", ",fast,", 1), "malformed row"),
    (lambda t: t + t.splitlines()[1] + "\n", "duplicate entry"),
    (lambda t: t.replace(",0.8487194388777555,", ",-1.0,", 1), "non-negative"),
    (lambda t: t.split("\n", 1)[0] + "\n", "no rows"),
])
def test_corrupt_table_csv_gives_clear_error(note10_copy, mutate, pattern):
    path = note10_copy / "table.csv"
    path.write_text(mutate(path.read_text()))
    with pytest.raises(LatencyTableError, match=pattern) as info:
        _load(note10_copy)
    assert "table.csv" in str(info.value)


def test_corrupt_or_missing_meta_and_table_give_clear_errors(note10_copy):
    (note10_copy / "meta.yaml").write_text("device: note10\n  bad: [indent")
    with pytest.raises(LatencyTableError, match=r"meta\.yaml is not valid YAML"):
        _load(note10_copy)
    (note10_copy / "meta.yaml").write_text("- just\n- a list\n")
    with pytest.raises(LatencyTableError, match="must hold a mapping"):
        _load(note10_copy)
    (note10_copy / "meta.yaml").write_text("model: table\nsupernet: ofa_mbv3_w12\n")
    (note10_copy / "table.csv").unlink()
    with pytest.raises(LatencyTableError, match=r"has no table\.csv"):
        _load(note10_copy)
    (note10_copy / "meta.yaml").write_text("model: magic\nsupernet: ofa_mbv3_w12\n")
    with pytest.raises(LatencyTableError, match="expected one of 'table', 'layer_cost', 'learned'"):
        _load(note10_copy)


def test_table_for_other_geometry_is_rejected_naming_the_block():
    table = load_table(NOTE10)
    w10 = geometry_for("ofa_mbv3_w10")
    with pytest.raises(MissingLatencyKeyError, match="no entry for block 'stem-in:160x160x3-out:80x80x16"):
        TableLatencyModel(w10, table)


def test_uncovered_resolutions_use_the_layer_cost_fallback_close_to_the_table():
    model = predictors.load_latency_model("note10", "ofa_mbv3_w12")
    sp = model.space
    assert model.covered.all()  # 128..224 every 4: table at 160..224/16, layer-cost elsewhere
    a192 = _tutorial_arch(sp, 192)
    a196 = _tutorial_arch(sp, 196)
    t192, t196 = model.predict([a192, a196])
    assert t192 < t196 < t192 * 1.15


def test_geometry_mid_channels_follow_make_divisible_rule():
    g: MBv3Geometry = geometry_for("ofa_mbv3_w12")
    # stage 4 (136 -> 136), expand 3: 408; stage 1 first block (24 -> 32), expand 6: 144
    assert g.block(192, 3, 1, 3, 3).mid == 408
    assert g.block(192, 0, 0, 3, 6).mid == 144


def test_corrupt_learned_model_gives_clear_error(tmp_path):
    src = LATENCY_TABLES_DIR / "help_v100_b64" / "ofa_mbv3_w10"
    dst = tmp_path / "tables" / "help_v100_b64" / "ofa_mbv3_w10"
    shutil.copytree(src, dst)
    (dst / "model.yaml").write_text("features: [a, b]\nmean: [0.0]\n")
    with pytest.raises(LatencyTableError, match=r"model\.yaml is missing or malformed"):
        predictors.load_latency_model("v100", "ofa_mbv3_w10", tables_dir=tmp_path / "tables")


def test_model_for_a_custom_space_of_the_same_supernet():
    from supernets.published import published_space

    space = published_space()  # resolutions up to 260
    model = predictors.load_latency_model("pixel", "ofa_mbv3_w12", space=space)
    assert model.space == space
    a = space.arch(r=260, **TUTORIAL)
    b = space.arch(r=224, **TUTORIAL)
    assert model.predict([a])[0] > model.predict([b])[0] > 0


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_give_the_usual_permissions_for_the_umask_not_mkstemps_0600(tmp_path, umask, mode):
    import os
    import stat

    import torch

    from predictors.accuracy.base import atomic_write_bytes
    from predictors.fileio import default_file_mode
    from predictors.latency.export import export_onnx
    from predictors.latency.table import LatencyTable, atomic_write_text, save_table

    old = os.umask(umask)
    try:
        assert default_file_mode() == mode
        atomic_write_text(tmp_path / "a.yaml", "a: 1\n")
        atomic_write_bytes(tmp_path / "b.csv", b"arch,top1\n")
        save_table(LatencyTable({(16, "k"): 1.0}, meta={"device": "d"}), tmp_path / "t")
        export_onnx(torch.nn.Conv2d(1, 2, 3), (1, 1, 8, 8), tmp_path / "c.onnx", check=False)
        atomic_write_text(tmp_path / "a.yaml", "a: 2\n")  # replacing a file gives the same mode
    finally:
        os.umask(old)
    files = ["a.yaml", "b.csv", "t/table.csv", "t/meta.yaml", "c.onnx"]
    assert {f: oct(stat.S_IMODE((tmp_path / f).stat().st_mode)) for f in files} == {f: oct(mode) for f in files}
    assert not list(tmp_path.glob(".*.tmp")) and (tmp_path / "a.yaml").read_text() == "a: 2\n"

