"""Benchmark latency models against end-to-end ONNX Runtime measurements on this host.

``python scripts/bench_latency.py supernet=ofa_mbv3_tiny device=host_cpu [n_subnets=100]``

Measures ``n_subnets`` random subnets end to end (fresh seed, not the calibration subnets) and compares
every model the device's table supports: plain table sum, calibrated table, layer-cost (fitted on the
table, then calibrated on the build's calibration subnets), learned (ridge over per-block features
trained on the calibration subnets only) and a MACs-proportional baseline. Prints Spearman, MAPE and the
share within ±10 % per model, then the time to predict ``n_predict`` archs with each model, as a ratio
against a per-arch Python table walk measured in the same run.

Only a device whose table holds ONNX Runtime measurements taken on this host can be scored: the subnets are timed
here, so any other device (a phone's published table, a few-shot or learned model, a table from another machine)
would be compared against this host's timings.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from scipy.stats import spearmanr

from predictors.latency.build import load_calibration, measure_subnets
from predictors.latency.devices import device_config, list_devices, load_latency_model
from predictors.latency.layer_cost import LayerCostModel
from predictors.latency.learned import LearnedLatencyModel
from predictors.latency.measure import MeasureSettings, environment_fingerprint
from predictors.latency.models import DenseLatencyModel, fit_calibration
from predictors.latency.table import load_meta, load_table
from supernets.measurable import MeasurableLayers, measurable_for
from supernets.paths import LATENCY_TABLES_DIR

#: Fingerprint fields naming the machine (the others are measurement settings, or change with every kernel update).
_MACHINE_FIELDS = ("cpu", "machine")
#: The prediction-speed target: one search generation's worth of archs well under a frame of wall time.
TARGET_N, TARGET_MS = 10_000, 50.0


def metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    rel = np.abs(pred - true) / true
    return {"spearman": float(spearmanr(pred, true).statistic), "mape": float(rel.mean()),
            "within_10pct": float((rel <= 0.10).mean()), "ratio_min": float((true / pred).min()),
            "ratio_max": float((true / pred).max())}


def _calibrated(model: DenseLatencyModel, rows: list[dict[str, Any]], name: str) -> DenseLatencyModel:
    x = model.space.encode([model.space.parse(r["arch"]) for r in rows])
    s, nb = model.block_sums(x)
    return model.with_calibration(fit_calibration(s, nb, [r["measured_ms"] for r in rows]), name)


def python_walk(table: Any, geometry: MeasurableLayers, archs: list[Any]) -> np.ndarray:
    """Baseline: per-arch dict walking over the table (what the vectorised models replace)."""
    return np.array([sum(table.lookup(a.r, spec.key) for spec in geometry.layers(a))
                     for a in archs])


def measured_here(meta: dict[str, Any], env: dict[str, Any]) -> bool:
    """Whether a table (its ``meta.yaml``) holds ONNX Runtime measurements taken on the host ``env`` describes."""
    fp = meta.get("fingerprint") or {}
    return (meta.get("source") == "measured" and meta.get("runtime") == "onnxruntime"
            and all(fp.get(k) == env.get(k) for k in _MACHINE_FIELDS))


def host_devices(env: dict[str, Any]) -> list[str]:
    """Registered devices (aliases left out) with at least one table measured on this host."""
    out = []
    for name in list_devices():
        dev = device_config(name)
        if dev["name"] == name and any(measured_here(load_meta(m.parent), env)
                                       for m in (LATENCY_TABLES_DIR / dev["table_dir"]).glob("*/meta.yaml")):
            out.append(name)
    return out


def _require_measured_here(device: str, supernet: str, folder: Path) -> None:
    env = environment_fingerprint()
    meta = load_meta(folder)
    if measured_here(meta, env):
        return
    fp = meta.get("fingerprint") or {}
    if meta.get("source") == "measured" and meta.get("runtime") == "onnxruntime":
        what = f"ONNX Runtime measurements taken on another machine ({fp.get('cpu', '?')}, {fp.get('machine', '?')})"
    else:
        what = f"source {meta.get('source', 'unrecorded')!r} data, not measurements taken on this host"
    raise SystemExit(
        f"device {device!r}: its latency model for {supernet} ({folder}) is built from {what}, but this benchmark "
        f"times the subnets with ONNX Runtime on this host ({env['cpu']}, {env['machine']}) and would score the model "
        f"against those timings. Devices measured on this host: {', '.join(host_devices(env)) or 'none'}. To check another "
        f"device, build its table on it (scripts/build_latency_table.py) and run this benchmark there"
    )


def bench(cfg: DictConfig) -> dict[str, Any]:
    """Importable entry point; returns the report it prints."""
    import supernets

    if int(cfg.n_predict) < 1:
        raise SystemExit(f"n_predict must be >= 1 (archs per timed prediction call), got {cfg.n_predict}")
    if int(cfg.n_subnets) < 3:  # a rank correlation of fewer is undefined or meaningless
        raise SystemExit(f"n_subnets must be >= 3 (subnets measured and scored), got {cfg.n_subnets}")
    dev = device_config(cfg.device)
    folder = LATENCY_TABLES_DIR / dev["table_dir"] / cfg.supernet
    if (folder / "meta.yaml").is_file():  # without one, load_latency_model names the command that builds it
        _require_measured_here(cfg.device, cfg.supernet, folder)
    main_model = load_latency_model(cfg.device, cfg.supernet)  # raises with the build command if missing
    supernet = supernets.create_supernet(cfg.supernet).eval()
    geometry = measurable_for(supernet)
    sp = geometry.space
    table = load_table(folder)
    calib = load_calibration(folder)
    covered = [r for r in sp.resolutions if r in table.resolutions]
    res = list(cfg.resolutions) if cfg.get("resolutions") else covered
    bad = [r for r in res if r not in covered]
    if bad:  # the per-arch table walk (the speed baseline) needs every resolution in the table
        raise SystemExit(f"resolutions {bad} are not covered by the {dev['name']} table of {cfg.supernet}; allowed: "
                         f"{covered} (extend the table with python scripts/build_latency_table.py "
                         f"supernet={cfg.supernet} device={dev['name']} 'resolutions=[...]')")

    models: dict[str, Any] = {}
    plain = main_model.with_calibration((1.0, 0.0, 0.0), "table_sum")
    models["table_sum"] = plain
    if calib:
        models["calibrated"] = _calibrated(plain, calib, "calibrated")
        lc = LayerCostModel.fit(table, geometry).dense(geometry, supernet=cfg.supernet, device=cfg.device)
        models["layer_cost"] = _calibrated(lc, calib, "layer_cost")
        xc = sp.encode([sp.parse(r["arch"]) for r in calib])
        yc = np.array([r["measured_ms"] for r in calib])
        models["learned"] = LearnedLatencyModel.fit(geometry, xc, yc, alpha=1.0, name="learned")
        macs_c = supernet.macs_params(xc)[0].astype(float)
        k = float(np.sum(macs_c * yc / yc**2) / np.sum((macs_c / yc) ** 2))
        models["macs_baseline"] = k

    rng = np.random.default_rng(int(cfg.seed))
    enc = sp.sample_encoded(rng, int(cfg.n_subnets))
    enc[:, 0] = rng.choice([sp.resolutions.index(r) for r in res], size=len(enc))
    archs = sp.decode(enc)
    mcfg = OmegaConf.to_container(cfg.measure, resolve=True)
    if mcfg.get("statistic") is None:  # compare like with like: the statistic the table was built with
        mcfg["statistic"] = table.meta.get("measurement", {}).get("statistic", "median")
    settings = MeasureSettings(**mcfg)
    n_rep = min(int(cfg.get("n_repeat_check", 0)), len(archs))
    with tempfile.TemporaryDirectory() as tmp:
        measured = np.array([m["value_ms"] for m in measure_subnets(supernet, archs, settings, Path(tmp))])
        # The same subnets measured again: how far two measurements of one net disagree on this host
        # right now, i.e. the best any predictor can score.
        again = np.array([m["value_ms"] for m in measure_subnets(supernet, archs[:n_rep], settings, Path(tmp))])

    report: dict[str, Any] = {"supernet": cfg.supernet, "device": cfg.device, "n_subnets": len(archs),
                              "resolutions": res, "env": environment_fingerprint(settings), "models": {}}
    print(f"{len(archs)} random {cfg.supernet} subnets measured end to end on {cfg.device} "
          f"({settings.statistic} per subnet; median over subnets {np.median(measured):.4f} ms; "
          f"host {report['env']['cpu']}, ORT {report['env']['onnxruntime']}, "
          f"{settings.threads} thread(s))")
    print(f"{'model':<14} {'spearman':>9} {'MAPE %':>8} {'within10 %':>10} {'true/pred range':>18}")
    if n_rep >= 3:
        r = metrics(again, measured[:n_rep])
        report["repeat_measurement"] = r
        print(f"{'re-measured':<14} {r['spearman']:>9.4f} {100 * r['mape']:>8.2f} {100 * r['within_10pct']:>10.1f} "
              f"{r['ratio_min']:>8.3f}-{r['ratio_max']:.3f}   <- noise floor: first {n_rep} subnets timed twice")
    for name, m in models.items():
        pred = m * supernet.macs_params(enc)[0].astype(float) if name == "macs_baseline" else m.predict(enc)
        r = metrics(pred, measured)
        report["models"][name] = r
        print(f"{name:<14} {r['spearman']:>9.4f} {100 * r['mape']:>8.2f} {100 * r['within_10pct']:>10.1f} "
              f"{r['ratio_min']:>8.3f}-{r['ratio_max']:.3f}")

    n = int(cfg.n_predict)
    big = sp.sample_encoded(np.random.default_rng(123), n)
    big[:, 0] = np.random.default_rng(124).choice([sp.resolutions.index(r) for r in res], size=n)
    walk_archs = sp.decode(big[:500])
    t0 = time.perf_counter()
    python_walk(table, geometry, walk_archs)
    walk_ms = (time.perf_counter() - t0) * 1e3 * n / len(walk_archs)
    how = f"all {n} walked" if len(walk_archs) == n else f"extrapolated from {len(walk_archs)} walked"
    print(f"predict {n} archs: python per-arch table walk (baseline, {how}) {walk_ms:.1f} ms")
    if n != TARGET_N:
        print(f"(the <= {TARGET_MS:.0f} ms target is for {TARGET_N} archs: n_predict={TARGET_N} checks it)")
    report["predict_ms"] = {"python_walk": walk_ms}
    for name, m in models.items():
        if name == "macs_baseline":
            continue
        m.predict(big[:10])  # warm
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            m.predict(big)
            times.append((time.perf_counter() - t0) * 1e3)
        t = float(np.median(times))
        report["predict_ms"][name] = t
        verdict = f"; target <= {TARGET_MS:.0f} ms: {'ok' if t <= TARGET_MS else 'MISSED'}" if n == TARGET_N else ""
        print(f"predict {n} archs: {name:<12} {t:7.2f} ms  ({walk_ms / t:.0f}x faster than the walk{verdict})")
    if cfg.get("out"):
        Path(cfg.out).write_text(json.dumps(report, indent=2))
    return report


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="bench_latency")
def main(cfg: DictConfig) -> None:
    bench(cfg)


if __name__ == "__main__":
    main()
