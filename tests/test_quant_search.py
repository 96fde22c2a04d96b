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
from search.pareto import non_dominated
from supernets.model_size import model_size_fn
from supernets.quant import quant_supernet
from tests.data.search.models import LinearAccuracy, TableLatency


def test_size_prediction_is_vectorised_and_matches_row_by_row(measured):
    q = quant_supernet(measured[0])
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


def test_search_with_size_objective_on_the_mixed_space_mixes_policies_and_reports_sizes(measured, tmp_path):
    q = quant_supernet(measured[0])
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


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A quantized-accuracy CSV measured with ONNX Runtime (random weights, synthetic data: the mechanics, not the
    figures) and the data config it came from."""
    from predictors.accuracy.builder import cache_batches
    from predictors.accuracy.quant import QuantEvaluator, build_quant_dataset
    from supernets.data.modules import create_datamodule

    data = {"name": "synthetic", "batch_size": 8, "val_batch_size": 16, "num_workers": 0, "seed": 0, "n_train": 16,
            "n_val": 16, "image_size": 24, "in_chans": 1, "num_classes": 10}
    dm = create_datamodule(**data)
    dm.setup()
    torch.manual_seed(0)
    base = supernets.create_supernet("ofa_mbv3_tiny", num_classes=10, in_chans=1).eval()
    q = quant_supernet(base, resolutions=[24])
    ev = QuantEvaluator(q, cache_batches(dm.train_dataloader(), 1), cache_batches(dm.val_dataloader(), 1))
    b1, b2 = q.space.base.sample(np.random.default_rng(7), 2)
    archs = [q.space.join(b1, bits) for bits in (32, 8, (32, 8, 8, 8, 32))] + [q.space.join(b2, 8)]
    csv = tmp_path_factory.mktemp("quant_acc") / "quant_accuracy.csv"
    build_quant_dataset(ev, archs, csv)
    return base, q, csv, data


def test_predicted_size_matches_real_exported_fp32_int8_and_mixed_onnx_files(measured):
    """The bytes of the files the evaluator exported (other archs than the 24 the per-conv constants were fitted on)
    against one vectorised prediction."""
    from predictors.accuracy.quant import load_quant_dataset

    base, q, csv, _ = measured
    rows = load_quant_dataset(csv)
    archs = [q.space.parse(r["arch"]) for r in rows]
    real = np.array([r["bytes"] for r in rows], dtype=float)
    pred = model_size_fn(q)(q.space.encode(archs))
    err = (pred - real) / real
    assert len(rows) == 4 and np.abs(err).max() < 0.06, list(zip([r["arch"] for r in rows], real, pred, err))
    # an FP32 space prices an all-FP32 arch as the quant space does, at 4 bytes per weight; the last row's FP32 twin
    fp32 = model_size_fn(base)(q.space.base.encode([q.space.split(a)[0] for a in (archs[0], archs[3])]))
    np.testing.assert_allclose(fp32[0], pred[0])
    assert abs(fp32[1] / rows[3]["bytes_fp32"] - 1) < 0.06
    # INT8 < mixed < FP32; INT8 over 2x smaller (a byte per weight, not 4, less the graph's own bytes)
    f32, i8, mx = pred[:3]
    assert i8 < mx < f32 and f32 / i8 > 2.0


def test_search_py_quant_option_searches_precision_genes_with_the_drop_predictor_config(measured, tmp_path):
    from predictors import load_predictor
    from predictors.accuracy.quant import PinnedQuantModel, QuantDropPredictor
    from supernets.compose import compose_option

    base, q, csv, _ = measured
    pred_cfg = {**compose_option("predictor", "quant_drop"), "dataset": str(csv)}
    drop = load_predictor(pred_cfg, space=q.space)
    assert isinstance(drop, QuantDropPredictor) and drop.trained_resolutions == [24]
    with pytest.raises(ValueError, match=r"predictor\.dataset"):
        load_predictor(compose_option("predictor", "quant_drop"), space=q.space)
    # predictor.fp32 picks the FP32 part's recipe (null: ridge)
    gbm = load_predictor({**pred_cfg, "fp32": {"kind": "gbm", "max_iter": 20}}, space=q.space)
    assert type(gbm.fp32) is not type(drop.fp32) and type(drop.fp32).__name__ == type(
        load_predictor({**pred_cfg, "fp32": {"kind": "ridge"}}, space=q.space).fp32).__name__
    c = _cfg(tmp_path, quant="int8", quant_resolutions=[24], predictor=pred_cfg,
             objectives={"names": ["top1", "size_mb"]})
    res = search.run(c, supernet=None)  # the supernet from the config, wrapped in its precision genes
    df = pd.read_csv(tmp_path / "dev_q" / "pareto.csv")
    archs = [q.space.parse(a) for a in df["arch"]]
    assert res["devices"]["dev_q"]["status"] == "ok" and {q.space.policy(a) for a in archs} == {"int8"}
    assert {a.r for a in archs} == {24}
    # the INT8-only space's predictions are the mixed model's at the same genes
    pinned = load_predictor(pred_cfg, space=quant_supernet(base, "int8", resolutions=[24]).space)
    assert isinstance(pinned, PinnedQuantModel)
    sp8 = pinned.space
    np.testing.assert_allclose(pinned.predict([sp8.parse(str(a)) for a in archs]), drop.predict(archs))


def test_export_top_k_of_a_quant_search_writes_quantized_onnx_measured_next_to_predicted(measured, tmp_path):
    import onnx

    from search.components import Components
    from search.runner import _export_quantized

    base, _, _, data = measured
    q = quant_supernet(base, "int8", resolutions=[24])
    arch = q.space.sample(np.random.default_rng(3))
    front = pd.DataFrame({"arch": [str(arch)], "top1": [0.5], "latency_ms": [1.25], "size_mb": [0.3]})
    results = {"dev_q": {"status": "ok", "front": front}}
    comps = Components("ofa_mbv3_tiny", q.space, None, {}, supernet=q, ckpt_meta={"data": data})  # models unused
    export = {"top_k": 1, "calib_batches": 1, "eval_batches": 1, "measure": {"warmup": 1, "repeats": 3, "passes": 1}}
    _export_quantized(results, comps, export, tmp_path, {})
    (rec,) = results["dev_q"]["exported"]
    assert rec["policy"] == "int8" and rec["top1_predicted"] == 0.5 and rec["latency_predicted_ms"] == 1.25
    assert rec["size_predicted_mb"] == 0.3 and rec["latency_ms"] > 0 and 0 <= rec["top1"] <= 1
    ops = {n.op_type for n in onnx.load(rec["onnx"]).graph.node}
    assert "QuantizeLinear" in ops and "QuantizeLinear" not in {n.op_type for n in onnx.load(rec["onnx_fp32"]).graph.node}
    assert (tmp_path / "dev_q" / "export" / "exported.json").is_file()
    with pytest.raises(ValueError, match="ckpt="):
        _export_quantized(results, Components("ofa_mbv3_tiny", q.space, comps.accuracy, {}, supernet=q), export,
                          tmp_path, {})


class _Int8Groups(ArchModel):
    """Latency 1 ms + 1 ms per INT8 group: an all-FP32 twin reads 1.0."""

    target = "latency_ms"

    def _predict(self, encoded):
        return 1.0 + self.space.int8_mask(encoded).sum(axis=1)


def test_quant_export_predicts_each_fp32_twin_with_the_searched_latency_model(measured, tmp_path):
    # a miss the twin shares is the host's speed since the table was built; one the quantized file has alone, the model's
    from search.components import Components
    from search.runner import _export_quantized

    base, _, _, data = measured
    q = quant_supernet(base, "mixed", resolutions=[24])
    arch = q.space.join(q.space.base.sample(np.random.default_rng(4)), (8, 32, 8, 32, 8))
    results = {"dev_q": {"status": "ok", "front": pd.DataFrame({"arch": [str(arch)], "top1": [0.5],
                                                                 "latency_ms": [4.0]})}}
    comps = Components("ofa_mbv3_tiny", q.space, None, {"dev_q": _Int8Groups(q.space)}, supernet=q,
                       ckpt_meta={"data": data})
    export = {"top_k": 1, "calib_batches": 1, "eval_batches": 1, "measure": {"warmup": 1, "repeats": 3, "passes": 1}}
    _export_quantized(results, comps, export, tmp_path, {})
    (rec,) = results["dev_q"]["exported"]
    assert rec["policy"] == "mixed" and rec["latency_fp32_predicted_ms"] == 1.0
    assert rec["latency_fp32_err"] == pytest.approx((1.0 - rec["latency_fp32_ms"]) / rec["latency_fp32_ms"])


def test_build_latency_table_script_builds_the_quant_space_shaped_like_the_trained_supernet(tmp_path, monkeypatch):
    """``scripts/build_latency_table.py quant=true supernet_kwargs={in_chans:3}``: the builder gets the supernet with
    precision genes, shaped like a CIFAR-10 one (the table's keys carry the input shape); never into host_cpu."""
    from supernets.quant import QuantSupernet
    from tests.script_utils import load_script, script_config

    script = load_script("build_latency_table")
    built = {}
    monkeypatch.setattr(script, "build_latency_table", lambda name, out, **kw: built.update(name=name, **kw) or out)
    args = ["supernet=ofa_mbv3_tiny", "device=host_cpu_quant", "quant=true", "supernet_kwargs={in_chans:3}",
            "resolutions=[32]", f"out_dir={tmp_path / 'q'}"]
    script.build(script_config("build_latency_table", *args))
    net = built["supernet"]
    assert isinstance(net, QuantSupernet) and built["device"] == "host_cpu_quant" and net.space.resolutions == (32,)
    keys = [layer.key for layer in net.latency_layers().layers(net.space.max_arch(32))]
    assert keys[0].startswith("stem-in:32x32x3-"), keys[0]  # shaped like the trained CIFAR-10 supernet
    # FP32 tables keep the registry's default supernet (None: the builder makes it)
    script.build(script_config("build_latency_table", "supernet=ofa_mbv3_tiny", f"out_dir={tmp_path / 'f'}"))
    assert built["supernet"] is None
    with pytest.raises(ValueError, match="device of its own"):
        script.build(script_config("build_latency_table", "supernet=ofa_mbv3_tiny", "quant=true",
                                   f"out_dir={tmp_path / 'h'}"))
