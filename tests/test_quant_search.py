"""Model size as a search objective and searches over a quantized space (issue 30): the predicted bytes of the
exported (quantized) ONNX against real files, and search.py's ``size_mb`` objective on FP32 and quant spaces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import search
import supernets
from predictors.base import ArchModel
from predictors.latency.models import DenseLatencyModel
from predictors.latency.quant import export_subnet_onnx
from search.pareto import non_dominated
from supernets.model_size import model_size_fn
from supernets.quant import quant_supernet
from tests.data.search.models import LinearAccuracy, TableLatency


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    base = supernets.create_supernet("ofa_mbv3_tiny", num_classes=10, in_chans=3).eval()
    return base, quant_supernet(base)


def test_predicted_size_matches_real_exported_fp32_int8_and_mixed_onnx_files(nets, tmp_path):
    base, q = nets
    sp, size, size_fp32 = q.space, model_size_fn(q), model_size_fn(base)
    rng = np.random.default_rng(7)  # other archs than the 24 the per-conv constants were fitted on (seed 1)
    rows = []
    for i, b in enumerate(sp.base.sample(rng, 1)):
        for bits in ((32,) * 5, (8,) * 5, (32, 8, 8, 8, 32)):
            arch = sp.join(b, bits)
            path = tmp_path / f"{i}_{'-'.join(map(str, bits))}.onnx"
            export_subnet_onnx(q, arch, q.latency_layers().input_shape(arch.r), path)
            rows.append((arch, path.stat().st_size))
    real = np.array([s for _, s in rows], dtype=float)
    pred = size(sp.encode([a for a, _ in rows]))  # one vectorised call for all
    err = (pred - real) / real
    assert np.abs(err).max() < 0.06, list(zip([str(a) for a, _ in rows], real, pred, err))
    # an FP32 space prices the same archs as the quant space's all-FP32 ones, at 4 bytes per weight
    fp32 = [a for a, _ in rows if sp.policy(a) == "fp32"]
    np.testing.assert_allclose(size_fp32(sp.base.encode([sp.split(a)[0] for a in fp32])), size(sp.encode(fp32)))
    # INT8 < mixed < FP32; INT8 over 2x smaller (a byte per weight, not 4, less the graph's own bytes)
    f32, i8, mx = pred
    assert i8 < mx < f32 and f32 / i8 > 2.0


def test_size_prediction_is_vectorised_and_matches_row_by_row(nets):
    _, q = nets
    size = model_size_fn(q)
    x = q.space.sample_encoded(np.random.default_rng(0), 300)
    many = size(x)
    assert many.shape == (300,) and np.all(np.isfinite(many)) and np.all(many > 0)
    np.testing.assert_allclose([size(x[i: i + 1])[0] for i in range(0, 300, 37)], many[::37])


class _QuantAccuracy(ArchModel):
    """The fixture FP32 accuracy model of the base arch minus a drop per INT8 group (real drops are ~0-1 point)."""

    target = "top1"

    def __init__(self, space) -> None:
        super().__init__(space)
        self.fp32 = LinearAccuracy(space.base)

    def _predict(self, x):
        return self.fp32.predict(self.space.base_encoded(x)) - 0.004 * self.space.int8_mask(x).sum(axis=1)


def _quant_latency(q):
    """A dense latency model over the quant layers: MAC-proportional costs, INT8 layers 0.6x (a stand-in for the
    host table; the search's size objective is what is under test)."""
    g = q.latency_layers()

    def cost(_r, layer):
        macs = sum(v for k, v in layer.features().items() if k.startswith("macs"))
        return macs * (0.6 if layer.int8 else 1.0)

    blocks, fixed = g.dense_grid(q.space.resolutions, cost)
    return DenseLatencyModel(g, blocks, fixed, name="macs_stand_in", device="dev_q")


def _cfg(tmp_path, **over):
    c = {"device": "dev_q", "supernet": "ofa_mbv3_tiny", "progress": False, "plot": False, "probe": 64,
         "out_dir": str(tmp_path), "seed": 0, "algorithm": {"name": "nsga2", "pop_size": 32, "n_gen": 6},
         "objectives": {"names": ["top1", "latency_ms", "size_mb"]}}
    c.update(over)
    return c


def test_search_with_size_objective_on_the_mixed_space_mixes_policies_and_reports_sizes(nets, tmp_path):
    _, q = nets
    res = search.run(_cfg(tmp_path), accuracy=_QuantAccuracy(q.space), latency={"dev_q": _quant_latency(q)},
                     supernet=q)
    df = pd.read_csv(tmp_path / "dev_q" / "pareto.csv")
    assert res["devices"]["dev_q"]["status"] == "ok" and "size_mb" in df
    archs = [q.space.parse(a) for a in df["arch"]]
    np.testing.assert_allclose(df["size_mb"], model_size_fn(q)(q.space.encode(archs)) / 1e6, rtol=1e-5)
    assert {q.space.policy(a) for a in archs} >= {"int8", "mixed"}  # the front mixes precision policies
    F = np.stack([1 - df["top1"], df["latency_ms"], df["size_mb"]], axis=1)
    assert len(non_dominated(F)) == len(F)


def test_fp32_search_keeps_its_columns_and_size_constraint_holds(tmp_path):
    tiny = supernets.create_supernet("ofa_mbv3_tiny")
    plain = dict(accuracy=LinearAccuracy(tiny.space), latency={"dev_a": TableLatency(tiny.space, "dev_a")},
                 supernet=tiny)
    c = _cfg(tmp_path / "a", device="dev_a", objectives={"names": ["top1", "latency_ms"]})
    search.run(c, **plain)
    assert list(pd.read_csv(tmp_path / "a" / "dev_a" / "pareto.csv").columns) == \
        ["arch", "top1", "latency_ms", "macs", "params"]  # no size column unless asked for
    c = _cfg(tmp_path / "b", device="dev_a", objectives={"names": ["top1", "size_mb"]},
             constraints={"size_mb": 0.9})
    search.run(c, **plain)
    df = pd.read_csv(tmp_path / "b" / "dev_a" / "pareto.csv")
    assert len(df) > 1 and (df["size_mb"] <= 0.9).all() and df["size_mb"].min() > 0.05
