"""The latency build script refuses targets that would lose data or mix measurements (issue #27 items 3a, 5):
published/fitted device folders, names outside latency_tables/, a resume measured another way."""

from __future__ import annotations

import importlib.util

import pytest
import yaml
from omegaconf import OmegaConf

from predictors.latency.table import LatencyTableError
from supernets.paths import CONFIG_DIR, LATENCY_TABLES_DIR, REPO_ROOT


@pytest.fixture
def script(monkeypatch):
    spec = importlib.util.spec_from_file_location("build_latency_table", REPO_ROOT / "scripts" / "build_latency_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def measuring(*a, **k):  # a refused build must stop before this; never touch the bundled tables here
        raise AssertionError("the build started measuring")

    monkeypatch.setattr(mod, "build_latency_table", measuring)
    return mod


def _cfg(**over):
    cfg = OmegaConf.load(CONFIG_DIR / "scripts" / "build_latency_table.yaml")
    cfg.supernet = "ofa_mbv3_w12"
    for k, v in over.items():
        OmegaConf.update(cfg, k, v)
    return cfg


@pytest.mark.parametrize("device", ["pixel", "pixel1", "note10", "help_v100_b1"])
def test_building_into_a_device_of_published_or_fitted_data_is_refused(script, device):
    meta = LATENCY_TABLES_DIR / "pixel" / "ofa_mbv3_w12" / "meta.yaml"
    before = meta.read_bytes()
    # pixel's config says few_shot; note10's says table, but its folder holds OFA's converted (published) table
    with pytest.raises(LatencyTableError, match=rf"device={device} is served by '\w+' data .* not by a table measured "
                                                r"on this host.*Pick a new device name|holds '\w+' latency data, not a "
                                                r"host measurement"):
        script.build(_cfg(device=device))
    assert meta.read_bytes() == before  # search.py device=pixel still finds its model


@pytest.mark.parametrize("device", ["../x", "/tmp/x", "a/b", "..", ".hidden", ""])
def test_device_names_cannot_point_outside_latency_tables(script, device):
    with pytest.raises(LatencyTableError, match=r"is not a device name"):
        script.build(_cfg(device=device))


def test_an_out_dir_holding_published_data_is_refused(script, tmp_path):
    (tmp_path / "meta.yaml").write_text(yaml.safe_dump({"source": "published", "model": "layer_cost"}))
    with pytest.raises(LatencyTableError, match=r"holds 'published' latency data"):
        script.build(_cfg(device="mine", out_dir=str(tmp_path)))


@pytest.mark.parametrize("key,value", [("warmup", 3), ("repeats", 5), ("sessions", 1)])
def test_resuming_a_build_with_other_measurement_settings_is_refused_naming_the_key(script, tmp_path, key, value):
    (tmp_path / "table.csv").write_text("resolution,key,latency_ms\n")
    meta = {"source": "measured", "model": "table", "status": "partial",
            "measurement": {"warmup": 10, "repeats": 50, "sessions": 3, "statistic": "median"}}
    (tmp_path / "meta.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(LatencyTableError, match=rf"measure.{key}: table {meta['measurement'][key]}, now {value}.*"
                                                r"restart=true"):
        script.build(_cfg(device="mine", out_dir=str(tmp_path), **{f"measure.{key}": value}))
    with pytest.raises(AssertionError, match="started measuring"):  # restart=true discards the rows: allowed
        script.build(_cfg(device="mine", out_dir=str(tmp_path), restart=True, **{f"measure.{key}": value}))


@pytest.mark.parametrize("calib,message", [
    ({"a": float("nan"), "b": 0.0, "c": 0.0}, r"calibration needs finite a, b, c with a > 0 .*got a=nan"),
    ({"a": -1.0, "b": 0.0, "c": 0.0}, r"calibration needs finite a, b, c with a > 0 .*got a=-1.0"),
    ({"a": 1.0, "b": 0.0, "c": -1000.0}, r"predicts -\d+.* ms for some smallest/largest arch"),
])
def test_a_calibration_giving_nan_or_negative_latencies_is_refused(tmp_path, calib, message):
    import shutil

    from predictors.latency.devices import load_latency_model

    src = LATENCY_TABLES_DIR / "host_cpu" / "ofa_mbv3_tiny"
    shutil.copytree(src, tmp_path / "host_cpu" / "ofa_mbv3_tiny")
    load_latency_model("host_cpu", "ofa_mbv3_tiny", tables_dir=tmp_path)  # the shipped calibration loads
    meta_file = tmp_path / "host_cpu" / "ofa_mbv3_tiny" / "meta.yaml"
    meta = yaml.safe_load(meta_file.read_text())
    meta["calibration"].update(calib)
    meta_file.write_text(yaml.safe_dump(meta))
    with pytest.raises(LatencyTableError, match=message):
        load_latency_model("host_cpu", "ofa_mbv3_tiny", tables_dir=tmp_path)
