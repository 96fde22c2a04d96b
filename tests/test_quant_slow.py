"""The INT8 + FP32 latency table built by the repository's table builder (slow: every layer of the tiny space is
exported, quantized with ONNX Runtime and timed; ``scripts/bench_quant.py`` / ``table=quantization`` build it in full)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import supernets
from predictors.latency.build import build_latency_table, load_calibration
from predictors.latency.measure import MeasureSettings
from predictors.latency.models import TableLatencyModel
from predictors.latency.table import load_table
from supernets.quant import quant_supernet


@pytest.mark.slow
def test_int8_layer_table_and_mixed_precision_calibration_come_from_the_same_builder(tmp_path):
    torch.manual_seed(0)
    q = quant_supernet(supernets.create_supernet("ofa_mbv3_tiny", num_classes=10, in_chans=3).eval(),
                       resolutions=[24])
    s = MeasureSettings(warmup=1, repeats=3, passes=1)
    build_latency_table(q.name, tmp_path, settings=s, n_calibration=6, supernet=q, progress=False, command="test")
    table = load_table(tmp_path)
    keys = {k for _, k in table.entries}
    int8 = {k for k in keys if k.endswith("-q:int8")}
    assert int8 and {k.removesuffix("-q:int8") for k in int8} == keys - int8  # every layer at both precisions
    calib = load_calibration(tmp_path)
    policies = {q.space.policy(q.space.parse(r["arch"])) for r in calib}
    assert len(calib) == 6 and "mixed" in policies  # calibrated on whole mixed-precision subnets
    model = TableLatencyModel(q.latency_layers(), table)
    pred = model.predict(q.space.sample(np.random.default_rng(0), 20))
    assert np.all(pred > 0)
