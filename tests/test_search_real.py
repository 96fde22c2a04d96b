"""The search with the shipped components (OFA-MBv3 w1.2, OFA's predictor, Pixel1/Note10 latency models)
and the Hydra config of ``search.py``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

import search
from search.components import build_devices, device_list, load_components, predictor_name
from search.runner import from_hydra
from supernets.paths import CONFIG_DIR


@pytest.fixture(scope="module")
def real():
    return load_components({"device": ["pixel", "note10"], "supernet": "ofa_mbv3_w12", "predictor": "ofa_pretrained"})


def compose_search(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("search", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return from_hydra(cfg)


def test_search_config_composes_with_one_or_several_devices():
    one = compose_search([])
    assert device_list(one["device"]) == ["pixel"] and predictor_name(one["predictor"]) == "ofa_pretrained"
    assert one["supernet"]["name"] == "ofa_mbv3_w12" and one["algorithm"]["name"] == "nsga2"
    assert one["algorithm"]["pop_size"] == 200
    many = compose_search(["device=[pixel,note10]", "constraints.latency_ms=25", "algorithm=optuna",
                           "predictor_path=/some/artefact.pth"])
    assert device_list(many["device"]) == ["pixel", "note10"] and many["constraints"]["latency_ms"] == 25
    assert many["algorithm"]["name"] == "optuna" and many["predictor"] == "/some/artefact.pth"
    # each selected device is composed whole (an alias as its target), ready to instantiate
    devs = build_devices(compose_search(["device=[note10,v100]"])["device"])
    assert [d.name for d in devs.values()] == ["note10", "help_v100_b64"] and list(devs) == ["note10", "v100"]
    assert devs["note10"].latency == "table" and devs["v100"].latency == "learned"


@pytest.mark.parametrize("algorithm", ["nsga2", "random", "ofa_evolution", "optuna", "nsga3", "smsemoa", "pymoo_nsga2"])
def test_every_algorithm_config_builds(algorithm):
    from search.components import build_algorithm

    cfg = compose_search([f"algorithm={algorithm}"])
    assert build_algorithm(cfg["algorithm"]).n_gen >= 1


def test_default_search_on_pixel_and_note10_writes_outputs_with_published_references(real, tmp_path):
    cfg = {"device": ["pixel", "note10"], "progress": False, "out_dir": str(tmp_path),
           "algorithm": {"name": "nsga2", "pop_size": 60, "n_gen": 3}}
    res = search.run(cfg, accuracy=real.accuracy, latency=real.latency, supernet=real.supernet)
    for dev in ("pixel", "note10"):
        assert res["devices"][dev]["status"] == "ok"
        for f in ("pareto.csv", "pareto.json", "pareto.png", "history.csv"):
            assert (tmp_path / dev / f).stat().st_size > 0
        doc = json.loads((tmp_path / dev / "pareto.json").read_text())
        refs = [r for r in doc["published_reference"] if r["top1_predicted"] is not None]
        assert refs and all(0.5 < r["top1_predicted"] < 0.9 for r in refs)  # OFA's w1.2 subnets for this device
    front = pd.read_csv(tmp_path / "note10" / "pareto.csv")
    assert {"arch", "top1", "latency_ms", "macs", "params", "latency_ms_pixel"} <= set(front.columns)
    # the front's figures are the shipped models' figures
    archs = [real.space.parse(a) for a in front["arch"]]
    np.testing.assert_allclose(front["top1"], real.accuracy.predict(archs), rtol=1e-5)
    np.testing.assert_allclose(front["latency_ms"], real.latency["note10"].predict(archs), rtol=1e-5)


def test_unknown_device_predictor_and_mismatched_predictor_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="nokia3310"):
        load_components({"device": "nokia3310", "supernet": "ofa_mbv3_w12", "predictor": "ofa_pretrained"})
    with pytest.raises(ValueError, match="unknown predictor 'oracle'"):
        load_components({"device": "pixel", "supernet": "ofa_mbv3_w12", "predictor": "oracle"})
    with pytest.raises(ValueError, match="ofa_mbv3_w12"):  # OFA's w1.2 predictor on the w1.0 supernet
        load_components({"device": "pixel", "supernet": "ofa_mbv3_w10", "predictor": "ofa_pretrained"})


def test_search_keeps_to_the_resolutions_ofa_predictor_was_trained_on(real):
    # OFA's MBv3 predictor was trained on r=160..224 only: outside, its resolution inputs are untrained weights.
    assert real.space.resolutions == tuple(range(160, 225, 4))
    assert real.accuracy.predict(real.space.sample_encoded(np.random.default_rng(0), 50)).shape == (50,)
    wide = load_components({"device": "pixel", "supernet": "ofa_mbv3_w12", "predictor": "ofa_pretrained",
                            "restrict_resolutions": False})
    assert min(wide.space.resolutions) == 128
