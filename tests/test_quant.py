"""Precision genes, ONNX Runtime static QDQ quantization of (mixed-precision) subnets, INT8 latency layers and the
quantized-accuracy predictors (issue 30)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import supernets
from predictors.latency.export import export_onnx
from predictors.latency.models import DenseLatencyModel
from predictors.latency.quant import QuantSettings, export_quant_subnet, quantize_onnx
from supernets.quant import QuantLayer, precision_group_of_node, quant_supernet
from supernets.quant_space import QuantSpace


@pytest.fixture(scope="module")
def qnet():
    torch.manual_seed(0)
    return quant_supernet(supernets.create_supernet("ofa_mbv3_tiny", num_classes=10, in_chans=3).eval())


def test_quant_space_strings_round_trip_and_old_strings_load_as_fp32(qnet):
    sp = qnet.space
    assert sp.group_names[-1] == "q" and sp.n_groups == 5 and sp.name == "ofa_mbv3_tiny_q"
    archs = sp.sample(np.random.default_rng(0), 50)
    assert all(sp.parse(str(a)) == a for a in archs)
    assert {sp.policy(a) for a in archs} >= {"mixed"}
    base = sp.base.sample(np.random.default_rng(1))
    old = sp.parse(str(base))  # an FP32-only string (old datasets, tables) loads as all-FP32
    assert sp.split(old) == (base, (32,) * 5) and str(old) == f"{base}_q=32-32-32-32-32"
    assert sp.base.parse(str(base)) == base  # the base space is unchanged
    with pytest.raises(ValueError, match=r"q\[1\].*16"):
        sp.parse(f"{base}_q=8-16-8-8-8")
    int8_only = QuantSpace(base=sp.base, n_groups=5, bits=(8,))
    with pytest.raises(ValueError, match="no precision gene"):
        int8_only.parse(str(base))
    assert sp.count() == sp.base.count() * 2**5 and int8_only.count() == sp.base.count()


def test_calibration_subnets_of_a_mixed_space_cover_the_pure_policies(qnet):
    """Whole-net calibration of a mixed-precision table: a third all-FP32, a third all-INT8 (drawn gene by gene,
    2 of 32 policies here), the rest random; base archs and resolutions drawn as for any space."""
    from predictors.latency.stages import calibration_archs

    sp = qnet.space
    archs = calibration_archs(sp, [28, 32], 30, seed=0)
    policies = [sp.policy(a) for a in archs]
    assert policies[0::3] == ["fp32"] * 10 and policies[1::3] == ["int8"] * 10
    assert policies[2::3].count("mixed") >= 8
    assert len({str(sp.split(a)[0]) for a in archs}) == 30 and {a.idx[0] for a in archs} == {1, 2}
    fp32_only = QuantSpace(base=sp.base, n_groups=5, bits=(32,))
    assert {fp32_only.policy(a) for a in calibration_archs(fp32_only, [32], 6, seed=0)} == {"fp32"}
    base = calibration_archs(sp.base, [32], 6, seed=0)  # an FP32 space: the draw it always had
    rng = np.random.default_rng(0)
    enc = sp.base.sample_encoded(rng, 6)
    enc[:, 0] = rng.choice([sp.base.resolutions.index(32)], size=6)
    assert base == sp.base.decode(enc)


def test_mixed_space_search_keeps_the_base_units_and_starts_from_pure_policies(qnet):
    """Operators see a quant space as its base space's units plus one per precision gene (a block's kernel and
    expand move together, as in the FP32 search), and NSGA-II's first population holds all-FP32 and all-INT8 nets
    beside mixed ones (gene by gene, 2 of 32 policies would be pure)."""
    from types import SimpleNamespace

    from search.algorithms.nsga2 import NSGA2
    from search.operators import gene_layout

    sp = qnet.space
    base, lay = gene_layout(sp.base), gene_layout(sp)
    n = sp.n_base
    assert np.array_equal(lay.unit[:n], base.unit) and np.array_equal(lay.stage[:n], base.stage)
    assert list(lay.unit[n:]) == list(range(base.n_units, base.n_units + 5)) and lay.n_units == base.n_units + 5
    ctx = SimpleNamespace(layout=lay, rng=np.random.default_rng(0),
                          problem=SimpleNamespace(ev=SimpleNamespace(space=sp)),
                          keys=lambda X: [r.tobytes() for r in sp.normalize(X)],
                          is_seen=lambda keys: np.zeros(len(keys), dtype=bool))
    for init in ("ladder", "uniform"):
        X = NSGA2(pop_size=60, init=init)._initial(ctx)
        policies = [sp.policy(a) for a in sp.decode(X)]
        assert policies.count("fp32") >= 20 and policies.count("int8") >= 20 and policies.count("mixed") >= 10, policies
        assert sp.policy(sp.decode(X[:1])[0]) == "int8" and sp.policy(sp.decode(X[1:2])[0]) == "fp32"  # the extremes


def test_quant_space_encodes_samples_and_masks_vectorised(qnet):
    sp = qnet.space
    x = sp.sample_encoded(np.random.default_rng(0), 400)
    assert x.shape == (400, sp.base.n_columns + 5)
    np.testing.assert_array_equal(sp.base_encoded(x), sp.base.normalize(sp.base_encoded(x)))
    mask = sp.int8_mask(x)
    assert 0.35 < mask.mean() < 0.65  # both precisions drawn per group
    archs = sp.decode(x)
    assert all(tuple(b == 8 for b in sp.split(a)[1]) == tuple(m) for a, m in zip(archs, mask))
    np.testing.assert_array_equal(sp.encode(archs), x)
    d = sp.from_ofa_dict({**sp.base.to_ofa_dict(sp.split(archs[0])[0]), "q": list(sp.split(archs[0])[1])})
    assert d == archs[0] and sp.to_ofa_dict(d)["q"] == list(sp.split(archs[0])[1])


def _exported(qnet, tmp_path, arch_bits):
    sp = qnet.space
    base = sp.base.min_arch(24)
    qnet.set_active_subnet(sp.join(base, arch_bits))
    return qnet.get_active_subnet().eval()


def test_node_scopes_map_stem_stages_and_head_to_their_precision_groups(qnet, tmp_path):
    sub = _exported(qnet, tmp_path, 32)
    export_onnx(sub, (1, 3, 24, 24), tmp_path / "m.onnx", check=False)
    names = [n.name for n in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    groups = dict(zip(names, precision_group_of_node(names, 5)))
    assert groups["/conv_stem/Conv"] == 0 and groups["/classifier/Gemm"] == 4 and groups["/conv_head/Conv"] == 4
    for k in range(5):
        in_block = [g for n, g in groups.items() if n.startswith(f"/blocks/blocks.{k}/")]
        assert in_block and set(in_block) == {k}


def _ops_on_int8(path):
    """Non-Q/DQ nodes of a QDQ model that read a dequantized activation: the ops ORT runs as INT8."""
    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}
    dq = {o for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in inits for o in n.output}
    return sum(1 for n in m.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
               and any(i in dq for i in n.input))


def test_unnamed_nodes_take_their_producers_group_so_int8_groups_quantize_only_themselves(qnet, tmp_path):
    # ORT's pre-processing writes a stage's hard-swish as unnamed HardSigmoid + Mul nodes; placed by position they
    # fell into the head's group, so an INT8 head quantized every FP32 stage's activations too
    sub = _exported(qnet, tmp_path, 32)
    export_onnx(sub, (1, 3, 24, 24), tmp_path / "f.onnx", check=False)
    samples = [np.random.default_rng(0).standard_normal((1, 3, 24, 24)).astype(np.float32)]
    ops = {}
    for bits in ((8, 32, 32, 32, 32), (32, 32, 32, 32, 8), (8, 32, 32, 32, 8), (32, 32, 8, 32, 32)):
        out = tmp_path / ("q" + "-".join(map(str, bits)) + ".onnx")
        quantize_onnx(tmp_path / "f.onnx", out, samples, exclude_groups=[g for g, b in enumerate(bits) if b == 32],
                      n_groups=5, settings=QuantSettings(calib_samples=1))
        ops[bits] = _ops_on_int8(out)
    # groups 0 and 4 are far apart: quantizing both runs exactly the INT8 ops of each alone
    assert ops[(8, 32, 32, 32, 8)] == ops[(8, 32, 32, 32, 32)] + ops[(32, 32, 32, 32, 8)]
    assert ops[(32, 32, 32, 32, 8)] < ops[(32, 32, 8, 32, 32)]  # the head is smaller than an h-swish stage


def _float_weight_convs(path):
    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}
    return sorted(n.name for n in m.graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] in inits)


def test_mixed_precision_subnet_quantizes_only_its_int8_groups_and_runs_in_onnx_runtime(qnet, tmp_path):
    import onnxruntime as ort

    bits = (32, 8, 8, 32, 32)
    sub = _exported(qnet, tmp_path, bits)
    rng = np.random.default_rng(0)
    samples = [rng.standard_normal((1, 3, 24, 24)).astype(np.float32) for _ in range(4)]
    paths = {}
    for name, b in {"fp32": (32,) * 5, "mixed": bits, "int8": (8,) * 5}.items():
        paths[name] = tmp_path / f"{name}.onnx"
        export_quant_subnet(sub, (1, 3, 24, 24), b, paths[name], samples, settings=QuantSettings(calib_samples=4))
    float_convs = _float_weight_convs(paths["mixed"])
    # FP32 groups (stem + first block, stage 3, head) keep float weights; stages 1 and 2 are quantized
    assert "/conv_stem/Conv" in float_convs and "/classifier/Gemm" in float_convs
    assert any(n.startswith("/blocks/blocks.3/") for n in float_convs)
    assert not any(n.startswith(("/blocks/blocks.1/", "/blocks/blocks.2/")) for n in float_convs)
    assert _float_weight_convs(paths["int8"]) == []
    q_ops = [n.op_type for n in onnx.load(str(paths["int8"])).graph.node]
    assert "QuantizeLinear" in q_ops and "DequantizeLinear" in q_ops
    size = {k: p.stat().st_size for k, p in paths.items()}
    assert size["int8"] < 0.5 * size["fp32"] and size["int8"] < size["mixed"] < size["fp32"]
    x = samples[0]
    with torch.no_grad():
        ref = sub(torch.from_numpy(x)).numpy()
    for name in ("mixed", "int8"):
        out = ort.InferenceSession(str(paths[name]), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        rel = np.abs(out - ref).max() / np.abs(ref).max()
        assert 0 < rel < 0.2, (name, rel)  # quantized (not bit-exact), yet the same function


def test_quantize_refuses_no_samples_and_unknown_methods(tmp_path):
    with pytest.raises(ValueError, match="calibration samples"):
        quantize_onnx(tmp_path / "x.onnx", tmp_path / "y.onnx", [])
    with pytest.raises(ValueError, match="entropy"):
        QuantSettings(method="kl")


def test_quant_layers_keys_and_dense_grid_agree_with_the_subnets_layers(qnet):
    m = qnet.latency_layers()
    sp = qnet.space
    archs = sp.sample(np.random.default_rng(3), 30)
    fake = {}  # a distinct cost per key, so a wrong slot/choice mapping changes the sum

    def cost(r, layer):
        return fake.setdefault((r, layer.key), 1.0 + len(fake) * 0.37)

    model = DenseLatencyModel.from_cost(m, cost)
    for a in archs:
        layers = m.layers(a)
        base, bits = sp.split(a)
        assert [ly.base.key for ly in layers] == [ly.key for ly in qnet.base.latency_layers().layers(base)]
        assert sum(ly.int8 for ly in layers) > 0 or set(bits) == {32}
        assert all(isinstance(ly, QuantLayer) and ly.key.endswith("-q:int8") == ly.int8 for ly in layers)
        assert model.predict([a])[0] == pytest.approx(sum(cost(a.r, ly) for ly in layers))
    fp32 = sp.join(sp.split(archs[0])[0], 32)
    assert all("-q:" not in ly.key for ly in m.layers(fp32))  # FP32 keys are the base tables' keys


def test_drop_and_direct_predictors_learn_a_precision_effect():
    from predictors.accuracy.quant import QuantDropPredictor, compare_predictors

    base = supernets.create_supernet("ofa_mbv3_tiny").space
    sp = QuantSpace(base=base, n_groups=5)
    archs = sp.sample(np.random.default_rng(0), 160)
    x = sp.encode(archs)
    e = np.nan_to_num(base.values(sp.base_encoded(x), "e")).sum(1)
    top1_fp32 = 0.6 + 0.01 * e
    top1 = top1_fp32 - 0.05 * sp.int8_mask(x)[:, 0] - 0.01 * sp.int8_mask(x)[:, 1:].sum(1)  # stem hurts most
    rows = [{"arch": str(a), "top1": t, "top1_fp32": t32} for a, t, t32 in zip(archs, top1, top1_fp32)]
    res = compare_predictors(sp, rows, direct={"kind": "ridge"})
    assert res["drop"]["kendall_tau"] > 0.7 and res["direct"]["kendall_tau"] > 0.5
    q = QuantDropPredictor(sp, max_iter=50).fit(archs[:100], top1[:100], top1_fp32[:100])
    stem8 = sp.join(sp.split(archs[0])[0], (8, 32, 32, 32, 32))
    fp32 = sp.join(sp.split(archs[0])[0], 32)
    assert q.predict([fp32])[0] - q.predict([stem8])[0] == pytest.approx(0.05, abs=0.015)


def test_quant_supernet_searches_a_subset_of_resolutions_and_pins_precisions(qnet):
    q = quant_supernet(qnet.base, "int8", resolutions=[24])
    assert q.space.resolutions == (24,) and q.space.bits == (8,) and q.space.name == "ofa_mbv3_tiny_int8"
    arch = q.space.sample(np.random.default_rng(0))
    q.set_active_subnet(arch)
    assert q.precision == (8,) * 5 and qnet.base.active_arch == qnet.base.space.parse(str(q.space.split(arch)[0]))
    assert q.latency_layers().space.base.resolutions == (24,)
    np.testing.assert_array_equal(q.macs_params([arch])[0], qnet.base.macs_params([qnet.base.active_arch])[0])
    with pytest.raises(ValueError, match="subset"):
        quant_supernet(qnet.base, resolutions=[40])
    with pytest.raises(ValueError, match="precisions"):
        quant_supernet(qnet.base, "int4")


def test_quantization_table_scores_every_policy_against_one_reference_point():
    import pandas as pd

    from paper_tables.quantization import summarize

    rows = []
    for p, pts in {"fp32": [(0.40, 1.0, 2e6), (0.38, 0.8, 1.8e6)], "int8": [(0.39, 1.5, 0.7e6)],
                   "mixed": [(0.40, 1.0, 2e6), (0.39, 0.9, 0.9e6)]}.items():
        for top1, ms, size in pts:
            pol = p if p != "mixed" else ("fp32" if size > 1e6 else "mixed")
            rows.append({"search": p, "policy": pol, "top1": top1, "latency_ms": ms, "bytes": size,
                         "speedup": 1.0, "size_ratio": 2e6 / size, "drop_points": 0.1, "latency_err": 0.05,
                         "top1_err_points": 2.0 if p == "int8" else 0.5})
    searched = {p: {"n_evaluated": 10, "front": 3, "hv_pred": 0.1} for p in ("fp32", "int8", "mixed")}
    out, ref, ref3 = summarize(pd.DataFrame(rows), searched)
    by = {r["policy"]: r for r in out}
    np.testing.assert_allclose(ref, [0.62 * 1.05, 1.5 * 1.05])
    np.testing.assert_allclose(ref3, [0.62 * 1.05, 1.5 * 1.05, 2.0 * 1.05])
    assert by["int8"]["hypervolume_measured"] < by["fp32"]["hypervolume_measured"]
    assert by["mixed"]["hypervolume_measured_size"] > by["fp32"]["hypervolume_measured_size"]
    assert by["int8"]["top1_within_1pt"] == 0 and by["fp32"]["latency_within_10pct"] == 1
    assert by["mixed"]["policies_on_front"] == "fp32:1 mixed:1" and by["fp32"]["median_size_ratio"] != by["fp32"][
        "median_size_ratio"]  # no quantized subnet: NaN


def test_quantization_table_refines_the_dataset_where_the_searches_end():
    """Each round measures only the proposed archs not yet in the dataset, scores each predictor kind on its own new
    proposals (where its searches would end) and keeps the best; the next round's models are fitted on every row."""
    from paper_tables.quantization import refine

    truth = {"a": 0.30, "b": 0.40, "g1": 0.35, "g2": 0.36, "o1": 0.33, "h1": 0.37}
    fits, measured = [], []

    def fit(rows):  # 'good' predicts the truth; 'optimist' adds 5 points
        fits.append(len(rows))
        return {"good": 0.0, "optimist": 0.05}

    def propose(model, kind, r):  # a kind's fronts: one known arch, a repeat, new archs of its own
        return ["a", "g1", "g1", "g2"] if kind == "good" else (["o1", "g1"] if r == 0 else ["o1", "h1"])

    def measure(archs):
        measured.append(list(archs))
        return [{"arch": a, "top1": truth[a]} for a in archs]

    def error(offset, rows):  # RMSE in points of the model (truth + offset) on measured rows
        return 100 * float(np.sqrt(np.mean([(truth[r["arch"]] + offset - r["top1"]) ** 2 for r in rows])))

    rows0 = [{"arch": "a", "top1": 0.30}, {"arch": "b", "top1": 0.40}]
    rows, best, log = refine(rows0, fit, propose, measure, error, 2)
    assert measured == [["g1", "g2", "o1"], ["h1"]] and [g["added"] for g in log] == [3, 1]
    assert [r["arch"] for r in rows] == ["a", "b", "g1", "g2", "o1", "h1"] and rows0 == rows[:2]
    assert fits == [2, 5] and best == "good" and log[0]["errors"] == pytest.approx({"good": 0.0, "optimist": 5.0})
    assert refine(rows0, fit, propose, measure, error, 0) == (rows0, None, [])


def test_quantization_table_plan_pairs_random_smallest_and_largest_base_archs_with_three_policies(qnet):
    from paper_tables.quantization import _plan

    sp = qnet.space
    plan = _plan(sp, 4, 0)
    bases = [sp.split(a)[0] for a in plan]
    r = max(sp.base.resolutions)
    assert len(plan) == 3 * 6 and plan == _plan(sp, 4, 0)
    # the ends of every front are in the accuracy dataset, not only random archs
    assert bases[-6:] == [sp.base.min_arch(r)] * 3 + [sp.base.max_arch(r)] * 3
    assert [sp.policy(a) for a in plan] == ["fp32", "int8", "mixed"] * 6


def test_table_refitted_in_the_exports_session_follows_int8_speed_apart_from_fp32(qnet):
    """The quantization table's closing check: calibration subnets timed beside the exports refit the table with one
    scale for FP32 layers and one for INT8 layers (this host's INT8/FP32 speed ratio moves between sessions)."""
    from paper_tables.quantization import _split_sums, split_model, split_refit
    from predictors.latency.models import TableLatencyModel
    from predictors.latency.stages import calibration_archs
    from predictors.latency.table import LatencyTable

    sp, g = qnet.space, qnet.latency_layers()
    keys = sorted(g.distinct_layers())
    table = LatencyTable({k: 0.01 + 0.001 * (i % 7) for i, k in enumerate(keys)}, meta={"name": "synthetic"})
    model = TableLatencyModel(g, table, calibration=(1.3, 0.0, 0.0))
    cal = calibration_archs(sp, [32], 24, seed=0)
    s = _split_sums(model, sp.encode(cal))
    np.testing.assert_allclose(s[:, 0] + s[:, 1], model.block_sums(sp.encode(cal))[0])
    assert (s[1::3, 0] == 0).all() and (s[0::3, 1] == 0).all()  # all-INT8 rows: no FP32 layer, and back
    truth = np.array([1.2, 0.7, 0.004, 0.05])
    measured = np.column_stack([s, np.ones(len(s))]) @ truth
    archs = sp.sample(np.random.default_rng(5), 10)
    fit = split_refit(model, [{"arch": str(a)} for a in cal], measured)
    now = split_model(model, fit).predict(archs)
    np.testing.assert_allclose([fit[k] for k in ("a32", "a8", "b", "c")], truth, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(now, np.column_stack([_split_sums(model, sp.encode(archs)), np.ones(10)]) @ truth,
                               rtol=1e-5)


def test_exported_files_are_timed_next_to_their_fp32_twins(monkeypatch):
    # the load of a shared host moves within a pass: a speed-up compares files timed side by side
    import predictors.latency.measure as measure
    from search.quant_export import measure_exports

    order = []

    def fake(paths, settings, desc=None):
        order.extend(paths)
        return [{"value_ms": 2.0 if p.endswith("_fp32") else 1.0 + int(p[1])} for p in paths]

    monkeypatch.setattr(measure, "measure_onnx_passes", fake)
    recs = [{"onnx": f"q{i}", "onnx_fp32": f"q{i}_fp32", "bytes": 1, "bytes_fp32": 4, "top1": 0.3, "top1_fp32": 0.31,
             "top1_predicted": 0.3, "latency_predicted_ms": 1.0} for i in range(3)]
    measure_exports(recs, None)
    assert order == ["q0", "q0_fp32", "q1", "q1_fp32", "q2", "q2_fp32"]
    assert [r["latency_ms"] for r in recs] == [1.0, 2.0, 3.0] and [r["speedup"] for r in recs] == [2.0, 1.0, 2 / 3]


def test_exported_quantized_front_holds_measured_next_to_predicted_and_ort_scores_like_torch(qnet, tmp_path):
    from predictors.accuracy.quant import QuantEvaluator
    from predictors.latency.measure import MeasureSettings
    from search.quant_export import export_quantized
    from supernets.bn import recalibrate_bn

    g = torch.Generator().manual_seed(0)
    calib = [(torch.randn(6, 3, 24, 24, generator=g), torch.zeros(6, dtype=torch.long))]
    held = [(torch.randn(16, 3, 24, 24, generator=g), torch.randint(0, 10, (16,), generator=g))]
    q = quant_supernet(qnet.base, resolutions=[24])
    ev = QuantEvaluator(q, calib, held)
    arch = q.space.join(q.space.base.min_arch(24), (32, 8, 8, 8, 32))
    recs = export_quantized(ev, [arch], [{"top1": 0.5, "latency_ms": 1.0}], tmp_path,
                            MeasureSettings(warmup=0, repeats=2, passes=1))
    r = recs[0]
    assert r["policy"] == "mixed" and r["top1_predicted"] == 0.5 and r["latency_ms"] > 0 and r["speedup"] > 0
    assert r["bytes"] < r["bytes_fp32"] and (tmp_path / "exported.json").is_file()
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(r["onnx"]).graph.node}
    assert "QuantizeLinear" not in {n.op_type for n in onnx.load(r["onnx_fp32"]).graph.node}
    qnet.base.set_active_subnet(q.base_arch_of(q.space.split(arch)[0]))
    sub = qnet.base.get_active_subnet().eval()
    recalibrate_bn(sub, [x for x, _ in calib], n_batches=1)
    with torch.no_grad():
        torch_top1 = float((sub(held[0][0]).argmax(1) == held[0][1]).float().mean())
    assert r["top1_fp32"] == pytest.approx(torch_top1)  # ONNX Runtime's FP32 top-1 is the network's
