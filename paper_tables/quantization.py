"""Table ``quantization``: FP32-only, INT8-only and mixed-precision searches of a small trained supernet (by default
OFA-MobileNetV3 w1.0 at 32 px on the bundled CIFAR-10 split), each front re-measured as real ONNX Runtime models
(issue 30; SimQ-NAS / APQ searched architecture and precision together).

Steps, all on this host: (1) one latency table with FP32 and INT8 layers (ONNX Runtime static QDQ quantization of
each layer), calibrated on whole mixed-precision subnets, built by the repository's table builder; (2) an accuracy
dataset of quantized subnets measured with ONNX Runtime on the held-out split (each sampled base arch at FP32, INT8
and one random mixed policy); (3) the ``direct`` and ``drop`` predictors ranked on held-out rows, then
``refine_rounds`` rounds (:func:`refine`) that measure what each predictor's fronts would export, keep the predictor
that predicted its own fronts best and refit on every row; (4) NSGA-II with the same population and generations
(equal evaluations) over the FP32-only, INT8-only and mixed spaces; (5) ``export_k`` subnets spread over each front
exported as quantized ONNX (calibrated on training batches), their top-1 measured with ONNX Runtime and their latency
timed together with their FP32 twins in passes, one intra-op thread, beside the table's calibration subnets (the
table refitted to the host of that session: its INT8 speed moves against its FP32 speed); (6) hypervolume of each
policy's *measured* exported points against one reference point.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from paper_tables.common import Column, TableResult, quiet_search, write_atomic

__all__ = ["POLICIES", "build", "summarize", "whole_net_ratios"]

POLICIES = ("fp32", "int8", "mixed")


def _data(meta: dict[str, Any], cfg: dict[str, Any]) -> tuple[list, list]:
    from predictors.accuracy.builder import cache_batches
    from supernets.training.data import create_datamodule

    d = {**dict(meta["data"]), "augment": False, **dict(cfg.get("data") or {})}
    dm = create_datamodule(**d)
    dm.setup()
    return cache_batches(dm.train_dataloader(), int(cfg["calib_batches"])), \
        cache_batches(dm.val_dataloader(), int(cfg["eval_batches"]))


def _latency_models(qnets: dict[str, Any], folder: Path, cfg: dict[str, Any], settings: Any) -> dict[str, Any]:
    from predictors.latency.build import build_latency_table
    from predictors.latency.models import TableLatencyModel
    from predictors.latency.table import load_meta, load_table

    build_latency_table(qnets["mixed"].name, folder, device="host_cpu_quant", settings=settings,
                        n_calibration=int(cfg["n_calibration"]),
                        seed=int(cfg["seed"]), progress=False, supernet=qnets["mixed"],
                        command="python scripts/reproduce.py table=quantization")
    table, meta = load_table(folder), load_meta(folder)
    cal = meta.get("calibration") or {}
    abc = (cal.get("a", 1.0), cal.get("b", 0.0), cal.get("c", 0.0))
    return {p: TableLatencyModel(q.latency_layers(), table, calibration=abc, name="quant_table",
                                 supernet=q.name, device="host_cpu_quant") for p, q in qnets.items()}


#: fewer re-timed calibration subnets than this leave the table as built (four coefficients to pin down)
_MIN_REFIT = 6


def _scaled(model: Any, a32: float, a8: float, calibration: Sequence[float] = (1.0, 0.0, 0.0), name: str = "") -> Any:
    """``model``'s table (any precision policy) with its FP32 layers scaled by ``a32`` and its INT8 layers by ``a8``."""
    from predictors.latency.models import DenseLatencyModel, table_cost

    cost, res = table_cost(model.table), [r for r, c in zip(model.space.resolutions, model.covered) if c]
    return DenseLatencyModel.from_cost(model.geometry, lambda r, layer: cost(r, layer) * (a8 if layer.int8 else a32),
                                       res, calibration=calibration, name=name or model.name,
                                       supernet=model.supernet, device=model.device)


def _split_sums(model: Any, encoded: np.ndarray) -> np.ndarray:
    """Per row: the table sum of its FP32 layers, of its INT8 layers, its number of elastic blocks."""
    (s32, n_blocks), (s8, _) = (_scaled(model, *w).block_sums(encoded) for w in ((1.0, 0.0), (0.0, 1.0)))
    return np.stack([s32, s8, n_blocks], axis=1)


def split_refit(model: Any, cal_rows: list[dict[str, Any]], cal_ms: Sequence[float]) -> dict[str, Any]:
    """``model``'s table refitted on its calibration subnets timed just now (``cal_ms``):
    ``a32 * FP32 sum + a8 * INT8 sum + b * n_blocks + c`` (relative residuals, soft-L1). This host's INT8 speed moves
    against its FP32 speed (the same INT8/FP32 pairs timed 1.41-1.55x, then 1.07-1.17x twenty minutes later): one
    scale for both, fitted when the table was built, cannot follow that."""
    from predictors.latency.models import fit_relative

    sp = model.space
    A = np.column_stack([_split_sums(model, sp.encode([sp.parse(r["arch"]) for r in cal_rows])),
                         np.ones(len(cal_rows))])
    y = np.asarray(cal_ms, dtype=np.float64)
    coef = fit_relative(A, y)
    return {"a32": float(coef[0]), "a8": float(coef[1]), "b": float(coef[2]), "c": float(coef[3]),
            "n_subnets": len(y), "train_mape": float(np.abs(A @ coef / y - 1).mean())}


def split_model(model: Any, fit: dict[str, Any]) -> Any:
    """``model`` (a table model of any precision policy) with ``fit``'s scales in its grid: FP32 layers x a32, INT8
    layers x a8, then ``b * n_blocks + c``; vectorised like every table model."""
    return _scaled(model, fit["a32"], fit["a8"], (1.0, fit["b"], fit["c"]), name=f"{model.name}_refit")


def _plan(space: Any, n_base: int, seed: int) -> list[Any]:
    """Each of ``n_base`` random base archs, then the smallest and the largest (the ends of every front, where a
    predictor fitted on random archs alone extrapolates), at FP32, INT8 and one random mixed policy (paired rows teach
    the drop)."""
    rng = np.random.default_rng(seed)
    r = max(space.base.resolutions)
    out = []
    for base in [*space.base.sample(rng, n_base), space.base.min_arch(r), space.base.max_arch(r)]:
        mixed = tuple(int(b) for b in rng.choice([8, 32], size=space.n_groups))
        while len(set(mixed)) == 1:
            mixed = tuple(int(b) for b in rng.choice([8, 32], size=space.n_groups))
        out += [space.join(base, 32), space.join(base, 8), space.join(base, mixed)]
    return out


def _hv_ref(points: np.ndarray) -> np.ndarray:
    return points.max(axis=0) * 1.05


def summarize(df: pd.DataFrame, searched: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], np.ndarray,
                                                                             np.ndarray]:
    """One row per policy from the exported subnets' measurements (``exported.csv``): measured hypervolume against
    one reference point for all policies (and with the model's size as a third objective), speed-ups, size
    ratios, drops, and how many predictions held; returns the rows and the two reference points."""
    from search.pareto import hypervolume, non_dominated

    pts = np.stack([1 - df["top1"].to_numpy(), df["latency_ms"].to_numpy()], axis=1)
    ref = _hv_ref(pts)
    # the same points with the model's bytes as a third objective (these searches use top1 and latency_ms only;
    # search.py can add size_mb), in MB so the three axes have comparable magnitudes
    pts3 = np.concatenate([pts, df[["bytes"]].to_numpy() / 1e6], axis=1)
    ref3 = _hv_ref(pts3)
    out_rows = []
    for p in POLICIES:
        sel = (df["search"] == p).to_numpy()
        f, f3 = pts[sel], pts3[sel]
        sub = df[sel]
        q8 = sub[sub["policy"] != "fp32"]
        new = sub[~sub["in_dataset"].astype(bool)] if "in_dataset" in sub else sub
        out_rows.append({
            "policy": p, "evaluations": searched[p]["n_evaluated"], "front": searched[p]["front"],
            "exported": int(sel.sum()), "hypervolume_measured": hypervolume(f[non_dominated(f)], ref),
            "hypervolume_predicted_own_ref": searched[p]["hv_pred"],
            "hypervolume_measured_size": hypervolume(f3[non_dominated(f3)], ref3),
            "size_min_mb": float(sub["bytes"].min() / 1e6),
            "top1_best": float(sub["top1"].max()), "latency_min_ms": float(sub["latency_ms"].min()),
            "median_speedup": float(q8["speedup"].median()) if len(q8) else float("nan"),
            "median_size_ratio": float(q8["size_ratio"].median()) if len(q8) else float("nan"),
            "median_drop_points": float(q8["drop_points"].median()) if len(q8) else float("nan"),
            "latency_within_10pct": float((sub["latency_err"].abs() <= 0.10).mean()),
            "latency_within_10pct_now": (float((sub["latency_err_now"].abs() <= 0.10).mean())
                                         if "latency_err_now" in sub else float("nan")),
            "top1_within_1pt": float((sub["top1_err_points"].abs() <= 1.0).mean()),
            # out of sample: exported subnets the predictor was not fitted on (refine rounds measure some first)
            "top1_within_1pt_new": (float((new["top1_err_points"].abs() <= 1.0).mean()) if len(new) else float("nan")),
            "n_new": len(new),
            "policies_on_front": " ".join(f"{k}:{v}" for k, v in sub["policy"].value_counts().sort_index().items()),
        })
    return out_rows, ref, ref3


def whole_net_ratios(supernet: str, resolution: int, settings: Any,
                     num_classes: int | None = None) -> list[dict[str, Any]]:
    """FP32 vs INT8 vs mixed (stem and head FP32) of a registered supernet's largest and smallest subnets (random
    weights, random calibration inputs: timing and size only), timed together in passes: how INT8 pays on this host
    beyond the tiny net."""
    import tempfile

    import supernets
    from predictors.latency.measure import measure_onnx_passes
    from predictors.latency.quant import export_subnet_onnx
    from supernets.quant import quant_supernet

    kwargs = {"resolutions": [resolution], **({"num_classes": num_classes} if num_classes else {})}
    q = quant_supernet(supernets.create_supernet(supernet, **kwargs).eval())
    sp, n = q.space, q.space.n_groups
    policies = {"fp32": (32,) * n, "int8": (8,) * n, "mixed": (32, *(8,) * (n - 2), 32)}
    with tempfile.TemporaryDirectory(prefix="quant_ratio_") as tmp:
        runs = []
        for which, base in (("largest", sp.base.max_arch(resolution)), ("smallest", sp.base.min_arch(resolution))):
            for p, bits in policies.items():
                path = Path(tmp) / f"{which}_{p}.onnx"
                export_subnet_onnx(q, sp.join(base, bits), q.latency_layers().input_shape(resolution), path)
                runs.append({"subnet": which, "policy": p, "path": path, "bytes": path.stat().st_size})
        for r, m in zip(runs, measure_onnx_passes([r["path"] for r in runs], settings, desc="whole nets")):
            r["ms"] = m["value_ms"]
    fp32 = {r["subnet"]: r for r in runs if r["policy"] == "fp32"}
    return [{"subnet": r["subnet"], "policy": r["policy"], "ms": r["ms"], "bytes": r["bytes"],
             "speedup_vs_fp32": fp32[r["subnet"]]["ms"] / r["ms"], "size_ratio": fp32[r["subnet"]]["bytes"] / r["bytes"]}
            for r in runs]


def refine(rows: list[dict[str, Any]], fit: Any, propose: Any, measure: Any, error: Any, rounds: int
           ) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    """Rounds of real evaluations where the searches end (DyNAS-T's LINAS loop, applied to the accuracy dataset).

    Each round, every predictor kind (``fit(rows)`` -> ``{kind: model}``) proposes what its searches' fronts would
    export (``propose(model, kind, round)`` -> archs); those not yet in ``rows`` are measured (``measure(archs)`` ->
    rows), each kind is scored on its own proposals (``error(model, rows)``: the error where its searches would end)
    and the best kind is kept; then every kind is refitted on all rows.

    Why: fitted on random archs, the predictors over-predicted the subnets the searches exported (by 2-3 points for the
    direct GBM in Table 9's runs, by up to 10 for the ridge-based drop predictor, which extrapolates): the front is
    picked where a predictor errs upwards, and held-out random rows do not show it. Returns the rows, the chosen kind
    (``None`` without rounds) and per round ``{"added", "errors"}``."""
    log: list[dict[str, Any]] = []
    best = None
    for r in range(int(rounds)):
        models = fit(rows)
        proposed = {k: list({str(a): a for a in propose(m, k, r)}.values()) for k, m in models.items()}
        known = {row["arch"] for row in rows}
        new = list({str(a): a for archs in proposed.values() for a in archs if str(a) not in known}.values())
        rows = [*rows, *measure(new)]
        by_arch = {row["arch"]: row for row in rows}
        # scored out of sample: on its proposals it was not fitted on (all of them if it was fitted on every one)
        own = {k: [a for a in archs if str(a) not in known] or archs for k, archs in proposed.items()}
        errors = {k: float(error(models[k], [by_arch[str(a)] for a in own[k]])) for k in models}
        best = min(errors, key=errors.get)
        log.append({"added": len(new), "errors": errors})
    return rows, best, log


def build(cfg: dict[str, Any], out_dir: Path) -> TableResult:
    import torch

    from paper_tables.linas import train_ckpt
    from predictors.accuracy.quant import PinnedQuantModel, QuantEvaluator, build_quant_dataset, compare_predictors
    from predictors.latency.build import export_subnets
    from predictors.latency.calibration import load_calibration
    from predictors.latency.measure import MeasureSettings, measure_onnx_passes
    from predictors.latency.quant import QuantSettings
    from search.export import choose_spread
    from search.quant_export import export_quantized, measure_exports
    from supernets.quant import quant_supernet
    from supernets.training.checkpoint import load_supernet

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    torch.set_num_threads(int(cfg.get("threads") or 1))
    ckpt = Path(cfg["ckpt"]) if cfg.get("ckpt") else train_ckpt(cfg, out_dir)
    base, meta = load_supernet(ckpt)
    qnets = {p: quant_supernet(base, p, resolutions=cfg.get("resolutions")) for p in POLICIES}
    mixed = qnets["mixed"].space
    calib, held_out = _data(meta, cfg)
    settings = MeasureSettings(**dict(cfg["measure"]))
    qsettings = QuantSettings(**dict(cfg["quant"]))
    load = os.getloadavg()

    # (1) FP32 + INT8 layer table, calibrated on whole mixed-precision subnets
    t = time.perf_counter()
    latency = _latency_models(qnets, out_dir / "latency_table", cfg, settings)
    t_table = time.perf_counter() - t

    # (2) accuracy dataset of quantized subnets, (3) predictors ranked on held-out rows
    t = time.perf_counter()
    evaluator = QuantEvaluator(qnets["mixed"], calib, held_out, settings=qsettings)
    rows = build_quant_dataset(evaluator, _plan(mixed, int(cfg["n_base"]), int(cfg["seed"])),
                               out_dir / "quant_accuracy.csv")
    t_acc = time.perf_counter() - t
    cmp = compare_predictors(mixed, rows, seed=int(cfg["seed"]), direct=dict(cfg["predictor"]))
    n_sampled = len(rows)
    best = held_out_best = max(("direct", "drop"), key=lambda k: cmp[k]["kendall_tau"])

    def fit_kind(kind: str, rows: list[dict[str, Any]]) -> Any:  # refitted on every row given
        model, archs = cmp["models"][kind], [mixed.parse(r["arch"]) for r in rows]
        if kind == "direct":
            return model.fit(archs, [r["top1"] for r in rows])
        return model.fit(archs, np.array([r["top1"] for r in rows]), np.array([r["top1_fp32"] for r in rows]))

    # the table's calibration subnets as files: timed before the searches (with refit_before_search, the searches read
    # the table refitted to the host of that moment) and again beside the exports
    cal_rows = load_calibration(out_dir / "latency_table")
    (out_dir / "export" / "calibration").mkdir(parents=True, exist_ok=True)
    cal_paths = export_subnets(qnets["mixed"], [mixed.parse(r["arch"]) for r in cal_rows], settings,
                               out_dir / "export" / "calibration")
    built, refit_before = latency, None  # the table models as built: every refit starts from their grids
    if cfg.get("refit_before_search") and len(cal_rows) >= _MIN_REFIT:
        timed = measure_onnx_passes(cal_paths, settings, desc="calibration subnets")
        refit_before = split_refit(built["mixed"], cal_rows, [t["value_ms"] for t in timed])
        latency = {p: split_model(m, refit_before) for p, m in built.items()}

    def search(p: str, model: Any, run: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
        q = qnets[p]
        scfg = {"device": "host_cpu_quant", "supernet": q.name, "progress": False, "plot": False,
                "out_dir": str(run), "seed": int(cfg["seed"]), "overwrite": True, "algorithm": dict(cfg["search"]),
                "objectives": {"names": ["top1", "latency_ms"]}}
        acc = model if p == "mixed" else PinnedQuantModel(model, q.space)
        res = quiet_search(scfg, run / "search.log", accuracy=acc, latency={"host_cpu_quant": latency[p]}, supernet=q)
        front = pd.read_csv(run / "host_cpu_quant" / "pareto.csv").sort_values("latency_ms").reset_index(drop=True)
        return front, res

    def picks(p: str, front: pd.DataFrame) -> tuple[list[int], list[Any]]:
        pick = choose_spread(len(front), int(cfg["export_k"]))
        q = qnets[p]
        return pick, [mixed.join(*q.space.split(q.space.parse(front["arch"].iloc[i]))) for i in pick]

    def propose(model: Any, kind: str, r: int) -> list[Any]:  # what each policy's front would export
        return [a for p in POLICIES for a in picks(p, search(p, model, out_dir / f"refine{r}_{kind}_{p}")[0])[1]]

    def error(model: Any, rows: list[dict[str, Any]]) -> float:  # RMSE (points) on measured rows
        pred = model.predict([mixed.parse(r["arch"]) for r in rows])
        return float(100 * np.sqrt(np.mean((np.asarray(pred) - np.array([r["top1"] for r in rows])) ** 2)))

    # (3b) real evaluations where the searches end: what each kind's fronts would export, measured and learnt; the
    # kind that predicted its own fronts best is searched with
    t = time.perf_counter()
    rows, refined, refine_log = refine(
        rows, lambda rs: {k: fit_kind(k, rs) for k in ("direct", "drop")}, propose,
        lambda archs: build_quant_dataset(evaluator, archs, out_dir / "quant_accuracy.csv"), error,
        int(cfg.get("refine_rounds") or 0))
    best = refined or best
    acc_model = fit_kind(best, rows)
    t_refine = time.perf_counter() - t
    learnt = {r["arch"] for r in rows}

    # (4) searches at equal evaluations, (5) exported subnets measured
    export: list[dict[str, Any]] = []
    searched: dict[str, dict[str, Any]] = {}
    for p in POLICIES:
        front, res = search(p, acc_model, out_dir / f"search_{p}")
        searched[p] = {"n_evaluated": res.get("n_evaluated"), "front": len(front),
                       "hv_pred": res["devices"]["host_cpu_quant"].get("hypervolume")}
        pick, archs = picks(p, front)
        export += export_quantized(evaluator, archs, [front.iloc[i].to_dict() for i in pick], out_dir / "export" / p,
                                   settings, start=len(export), tag={"search": p}, measure=False,
                                   latency_model=latency["mixed"])
    for e in export:  # an exported subnet the predictor was fitted on is scored apart (in-sample)
        e["in_dataset"] = e["arch"] in learnt
    # every front's files timed together, beside the calibration subnets: the table refitted to this session's host
    cal_now = measure_exports(export, settings, references=cal_paths)
    refit = None
    if len(cal_rows) >= _MIN_REFIT:
        refit = split_refit(built["mixed"], cal_rows, [t["value_ms"] for t in cal_now])
        archs = [mixed.parse(e["arch"]) for e in export]
        now = split_model(built["mixed"], refit).predict([*archs, *(mixed.join(mixed.split(a)[0], 32) for a in archs)])
        for e, ms, ms32 in zip(export, now[: len(archs)], now[len(archs):]):
            e.update(latency_pred_now_ms=float(ms), latency_err_now=(float(ms) - e["latency_ms"]) / e["latency_ms"],
                     latency_fp32_err_now=(float(ms32) - e["latency_fp32_ms"]) / e["latency_fp32_ms"])
    df = pd.DataFrame(export)
    write_atomic(out_dir / "exported.csv", df.to_csv(index=False, float_format="%.6g"))
    write_atomic(out_dir / "exported.json", json.dumps(export, indent=1))

    # (6) measured hypervolume per policy, one reference point
    out_rows, ref, ref3 = summarize(df, searched)
    q_all = df[df["policy"] != "fp32"]
    q_new = q_all[~q_all["in_dataset"]]
    notes = [
        f"Supernet: {base.name} from {ckpt} ({meta.get('data', {}).get('name')}); top-1 measured with ONNX Runtime on "
        f"{sum(len(y) for _, y in held_out)} held-out images; quantizer: onnxruntime.quantization.quantize_static "
        f"(QDQ, per-channel S8 weights, U8 activations, {qsettings.method}, {qsettings.calib_samples} calibration "
        f"images), mixed precision by nodes_to_exclude.",
        f"Latency: one table of FP32 + INT8 layers ({out_dir / 'latency_table'}), calibrated on {cfg['n_calibration']} "
        f"subnets (a third all-FP32, a third all-INT8, a third mixed); "
        + ("searched as built" if refit_before is None else
           f"searched refitted on them timed just before the searches (a32 {refit_before['a32']:.3f}, a8 "
           f"{refit_before['a8']:.3f}, train MAPE {refit_before['train_mape']:.1%}): 'latency within ±10 %' is "
           f"against that prediction")
        + f"; exported subnets timed together in {settings.passes} passes, {settings.threads} "
        f"intra-op thread; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, at end "
        f"{os.getloadavg()[0]:.2f} (a shared 2-core host).",
        f"Accuracy predictors on {cmp['n_test']} held-out rows of the {n_sampled} sampled: direct ({cfg['predictor']}) "
        f"Kendall tau {cmp['direct']['kendall_tau']:.3f}, Spearman {cmp['direct']['spearman']:.3f}, RMSE "
        f"{cmp['direct']['rmse_points']:.2f} pt; drop (FP32 ridge - GBM drop) Kendall tau "
        f"{cmp['drop']['kendall_tau']:.3f}, Spearman {cmp['drop']['spearman']:.3f}, RMSE "
        f"{cmp['drop']['rmse_points']:.2f} pt; held-out choice {held_out_best}.",
        f"Search: {cfg['search']} per policy (same evaluations); hypervolume_measured of each policy's exported "
        f"subnets' measured (1 - top1, latency) against one reference point {np.round(ref, 4).tolist()}; 'HV measured "
        f"(+ size)' adds the quantized ONNX file's MB as a third objective (reference {np.round(ref3, 4).tolist()}).",
        f"Exported quantized subnets (INT8 or mixed, {len(q_all)}): measured latency within ±10 % of predicted "
        f"{(q_all['latency_err'].abs() <= 0.10).mean():.0%}, measured top-1 within 1 point of predicted "
        f"{(q_all['top1_err_points'].abs() <= 1.0).mean():.0%} (of the {int((~q_all['in_dataset']).sum())} not in the "
        f"dataset: {(q_new['top1_err_points'].abs() <= 1.0).mean():.0%}; measured - predicted mean "
        f"{-q_new['top1_err_points'].mean():+.2f} pt); speed-up over the same subnet in FP32 "
        f"{q_all['speedup'].min():.2f}-{q_all['speedup'].max():.2f}x, size {q_all['size_ratio'].min():.2f}-"
        f"{q_all['size_ratio'].max():.2f}x smaller. Their FP32 twins, predicted from the same table: within ±10 % "
        f"{(q_all['latency_fp32_err'].abs() <= 0.10).mean():.0%}, median measured/predicted "
        f"{(1 / (1 + q_all['latency_fp32_err'])).median():.3f} (quantized: "
        f"{(1 / (1 + q_all['latency_err'])).median():.3f}; a shared miss is the host's speed since the table).",
        *([] if refit is None else [
            f"Recalibrated in the exports' timing session (the table's {refit['n_subnets']} calibration subnets timed "
            f"in the same passes, fitted as a32 * FP32 sum + a8 * INT8 sum + b * n_blocks + c: a32 {refit['a32']:.3f}, "
            f"a8 {refit['a8']:.3f}, train MAPE {refit['train_mape']:.1%}): quantized exports within ±10 % "
            f"{(q_all['latency_err_now'].abs() <= 0.10).mean():.0%} (FP32 twins "
            f"{(q_all['latency_fp32_err_now'].abs() <= 0.10).mean():.0%}, all exports "
            f"{(df['latency_err_now'].abs() <= 0.10).mean():.0%})."]),
        f"Refinement ({int(cfg.get('refine_rounds') or 0)} round(s): the subnets each predictor's fronts would "
        f"export measured and learnt before the final searches, each predictor scored on its own): "
        + ("; ".join(f"round {i}: {g['added']} rows added, RMSE on own proposals "
                     + ", ".join(f"{k} {v:.2f} pt" for k, v in g["errors"].items()) for i, g in enumerate(refine_log))
           or "none")
        + f"; {t_refine:.0f} s; searched with {best}, fitted on {len(rows)} rows; exported subnets among them score "
        f"in-sample and are counted apart.",
        f"Wall time: latency table {t_table:.0f} s, accuracy dataset {t_acc:.0f} s, total "
        f"{time.perf_counter() - t0:.0f} s; per-subnet figures in exported.csv.",
    ]
    cols = [Column("policy", "policy"), Column("evaluations", "search evaluations"), Column("front", "front size"),
            Column("exported", "exported"), Column("hypervolume_measured", "HV measured", ".5f"),
            Column("hypervolume_measured_size", "HV measured (+ size)", ".5f"),
            Column("size_min_mb", "smallest (MB)", ".3f"),
            Column("top1_best", "best top-1 (measured)", "pct1"),
            Column("latency_min_ms", "fastest (ms, measured)", ".3f"),
            Column("median_speedup", "median speed-up vs FP32", ".2f"),
            Column("median_size_ratio", "median size ratio", ".2f"),
            Column("median_drop_points", "median top-1 drop (pt)", ".2f"),
            Column("latency_within_10pct", "latency within ±10 %", "pct0"),
            Column("latency_within_10pct_now", "latency within ±10 % (recalibrated)", "pct0"),
            Column("top1_within_1pt", "top-1 within 1 pt", "pct0"),
            Column("top1_within_1pt_new", "top-1 within 1 pt (not in the dataset)", "pct0"),
            Column("n_new", "exported not in the dataset"),
            Column("policies_on_front", "precisions exported")]
    return TableResult(name="quantization", title="Table 9: quantization inside the search (FP32 / INT8 / mixed "
                       "precision, ONNX Runtime QDQ)", columns=cols, rows=out_rows, notes=notes,
                       summary={"compare": {k: cmp[k] for k in ("direct", "drop")}, "best": best})
