"""Check a host latency table against whole subnets timed end to end, independently of the table builder.

    python scripts/verify_latency_table.py supernet=ofa_resnet50 n=20 device=host_cpu

Draws ``n`` random subnets (seed 12345: not the build's calibration subnets) at the table's resolutions,
exports each static subnet to ONNX and times it with its own ONNX Runtime loop (1 intra-op thread, the
table's statistic, fresh sessions, ``passes`` passes over all the subnets keeping each one's fastest),
then compares with the device's served (calibrated) prediction: share within ±10 %, Spearman, MAPE. Prints
the load average before and after (a contended host inflates end-to-end timings). Exit status 1 when the
acceptance (>= 90 % within ±10 %, Spearman >= 0.98) fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
from omegaconf import DictConfig
from scipy.stats import spearmanr


def time_onnx(path: Path, statistic: str, sessions: int, repeats: int, warmup: int) -> float:
    import onnxruntime as ort

    times = []
    for _ in range(sessions):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        feed = {inp.name: np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)}
        for _ in range(warmup):
            sess.run(None, feed)
        for _ in range(repeats):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append((time.perf_counter() - t0) * 1e3)
    t = np.asarray(times)
    return float({"median": np.median(t), "p10": np.percentile(t, 10), "min": t.min()}[statistic])


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="verify_latency_table")
def main(cfg: DictConfig) -> None:
    """Exits with status 1 when the acceptance fails."""
    if run(cfg):
        sys.exit(1)


def run(cfg: DictConfig) -> int:
    from supernets.config_checks import check_int

    args = SimpleNamespace(supernet=str(cfg.supernet), device=str(cfg.device), seed=check_int("seed", cfg.seed),
                           **{k: check_int(k, cfg[k], min=0 if k == "warmup" else 1)
                              for k in ("n", "sessions", "repeats", "passes", "warmup")})

    import supernets
    from predictors.latency.devices import load_latency_model
    from predictors.latency.export import export_onnx
    from predictors.latency.table import load_meta
    from supernets.measurable import measurable_for
    from supernets.paths import LATENCY_TABLES_DIR

    meta = load_meta(LATENCY_TABLES_DIR / args.device / args.supernet)
    statistic = (meta.get("measurement") or {}).get("statistic", "median")
    net = supernets.create_supernet(args.supernet).eval()
    m = measurable_for(net)
    model = load_latency_model(args.device, args.supernet)
    sp = net.space
    rng = np.random.default_rng(args.seed)
    enc = sp.sample_encoded(rng, args.n)
    enc[:, 0] = rng.choice([sp.resolutions.index(r) for r in meta["resolutions"]], size=args.n)
    archs = sp.decode(enc)
    pred = model.predict(archs)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, arch in enumerate(archs):
            net.set_active_subnet(arch)
            paths.append(Path(tmp) / f"subnet{i:03d}.onnx")
            export_onnx(net.get_active_subnet().eval(), m.input_shape(arch.r), paths[-1], check=False)
        per_pass = [[time_onnx(p, statistic, args.sessions, args.repeats, args.warmup) for p in paths]
                    for _ in range(args.passes)]
        measured = np.min(per_pass, axis=0)
    measured = np.asarray(measured)
    load1 = os.getloadavg()
    rel = pred / measured - 1
    within = float(np.mean(np.abs(rel) <= 0.10))
    rho = float(spearmanr(pred, measured).statistic)
    print(f"{args.supernet} on {args.device} ({model.name} model, statistic {statistic}): {args.n} subnets at "
          f"{sorted(set(int(a.r) for a in archs))} px, timed in {time.perf_counter() - t0:.0f} s")
    print(f"  within ±10 %: {100 * within:.0f} %   Spearman {rho:.4f}   MAPE {100 * np.abs(rel).mean():.1f} %   "
          f"max |err| {100 * np.abs(rel).max():.1f} %   measured {measured.min():.2f}..{measured.max():.2f} ms")
    print(f"  load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} "
          f"{load1[2]:.2f} ({os.cpu_count()} CPUs)")
    print("  per subnet (pred ms, measured ms, err %): "
          + ", ".join(f"{p:.2f}/{t:.2f}/{100 * e:+.0f}" for p, t, e in zip(pred, measured, rel)))
    return 0 if within >= 0.9 and rho >= 0.98 else 1


if __name__ == "__main__":
    main()
