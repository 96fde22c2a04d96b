"""Searches of every supernet family: without latency objectives no latency model is loaded."""

from __future__ import annotations

import numpy as np
import pytest

import predictors
import search
import supernets
from predictors.base import ArchModel


class MacsAccuracy(ArchModel):
    """A monotone stand-in accuracy (more MACs, higher top-1): any space, no predictor file."""

    target = "top1"

    def __init__(self, net) -> None:
        super().__init__(net.space)
        self.net = net

    def _predict(self, x: np.ndarray) -> np.ndarray:
        macs, _ = self.net.macs_params(x)
        return 0.5 + 0.4 * np.log1p(macs) / np.log1p(macs.max() + 1.0)


@pytest.mark.parametrize("name", supernets.list_supernets())
def test_accuracy_macs_objectives_search_any_supernet_without_latency_data(name, tmp_path, monkeypatch):
    def no_latency(*args, **kwargs):
        raise AssertionError("a search without latency objectives loaded a latency model")

    monkeypatch.setattr(predictors, "load_latency_model", no_latency)
    net = supernets.create_supernet(name)
    cfg = {"device": "a_device_nobody_registered", "supernet": name, "objectives": {"names": ["top1", "macs"]},
           "progress": False, "plot": False, "probe": 16, "out_dir": str(tmp_path), "seed": 0,
           "algorithm": {"name": "nsga2", "pop_size": 12, "n_gen": 2}}
    res = search.run(cfg, accuracy=MacsAccuracy(net), supernet=net)
    front = res["devices"]["a_device_nobody_registered"]["front"]
    assert len(front) >= 2 and front["macs"].notna().all() and front["latency_ms"].isna().all()
