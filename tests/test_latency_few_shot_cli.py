"""scripts/fit_few_shot.py: a device that is not one of OFA's phones, fitted from whole networks measured on it."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from predictors.latency.devices import load_latency_model
from supernets.paths import CONFIG_DIR, LATENCY_TABLES_DIR, REPO_ROOT
from supernets.published import PUBLISHED_RESOLUTIONS, published_mbv3_subnets

_SUPERNET = {1.0: "ofa_mbv3_w10", 1.2: "ofa_mbv3_w12"}


def _script():
    spec = importlib.util.spec_from_file_location("fit_few_shot", REPO_ROOT / "scripts" / "fit_few_shot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _published_csv(path: Path, ofa_label: str) -> Path:
    """A phone's published subnets as a user would measure them: arch, ms, supernet (nothing else)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "ms", "supernet"])
        for n in published_mbv3_subnets(ofa_label):
            w.writerow([str(n["arch"]), n["latency_ms"], _SUPERNET[n["width_mult"]]])
    return path


def _cfg(tmp_path: Path, **over):
    cfg = OmegaConf.load(CONFIG_DIR / "scripts" / "fit_few_shot.yaml")
    cfg.update({"out_dir": str(tmp_path / "tables"), "device_config": str(tmp_path / "devices"),
                "resolutions": list(PUBLISHED_RESOLUTIONS), **over})
    return cfg


def test_a_renamed_phone_fitted_from_its_published_subnets_gets_the_shipped_model_and_loo_under_10_percent(
        tmp_path, capsys):
    csv_path = _published_csv(tmp_path / "phone.csv", "pixel1")
    res = _script().fit(_cfg(tmp_path, csv=str(csv_path), device="renamed_phone", base="note10"))
    out = capsys.readouterr().out
    assert "renamed_phone: 7 networks" in out and "leave-one-out MAPE" in out
    assert res["loo_mape"] < 0.10
    # the same data and method as the shipped pixel model: the same scales
    shipped = yaml.safe_load((LATENCY_TABLES_DIR / "pixel" / "ofa_mbv3_w10" / "meta.yaml").read_text())
    np.testing.assert_allclose(res["model"].scales, shipped["layer_cost"]["scales"], rtol=1e-9)
    assert yaml.safe_load((tmp_path / "devices" / "renamed_phone.yaml").read_text())["latency"] == "few_shot"
    for supernet in ("ofa_mbv3_w10", "ofa_mbv3_w12"):
        model = load_latency_model("renamed_phone", supernet, tables_dir=tmp_path / "tables",
                                   device_dir=tmp_path / "devices")
        pixel = load_latency_model("pixel", supernet)
        x = model.space.sample_encoded(np.random.default_rng(0), 16)
        np.testing.assert_allclose(model.predict(x), pixel.predict(x), rtol=1e-9)


def test_error_curve_and_bad_inputs(tmp_path, capsys):
    csv_path = _published_csv(tmp_path / "phone.csv", "note8")
    curve = _script().fit(_cfg(tmp_path, csv=str(csv_path), device="x", curve=True, curve_repeats=20))["curve"]
    assert [r["n_train"] for r in curve] == [1, 2, 3] and all(0 <= r["mape"] < 1 for r in curve)
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,ms,supernet\nr=999_d=2,5,ofa_mbv3_w10\n")
    with pytest.raises(SystemExit, match="is not an arch of ofa_mbv3_w10"):
        _script().fit(_cfg(tmp_path, csv=str(bad), device="x"))
    with pytest.raises(SystemExit, match="has no latency data for ofa_mbv3_w12"):
        _script().fit(_cfg(tmp_path, csv=str(csv_path), device="x", base="help_v100_b1", base_supernet="ofa_mbv3_w12"))
    with pytest.raises(SystemExit, match="a learned model cannot be a few-shot base"):
        _script().fit(_cfg(tmp_path, csv=str(csv_path), device="x", base="help_v100_b1"))
    with pytest.raises(SystemExit, match="few-shot needs at least 3"):
        short = tmp_path / "short.csv"
        short.write_text("\n".join(csv_path.read_text().splitlines()[:3]) + "\n")
        _script().fit(_cfg(tmp_path, csv=str(short), device="x"))
