"""Which refresh makes a host latency table built elsewhere true of this machine: recalibration or a rebuild?

    python scripts/bench_host_refresh.py                       # ofa_mbv3_tiny, K = 5,10,20, 20 held-out subnets
    python scripts/bench_host_refresh.py k=[10] held_out=30 no_rebuild=true

Times ``held_out`` random whole subnets with the table's own measurement settings (what the pipeline's measure
step does) before and after the refreshes (their mean is the truth; the drift between the two passes is the
contention's share of any error), then scores against them (MAPE, share within ±10 %, median measured/predicted):
the shipped table as it is; the table recalibrated here on K whole subnets for each of ``k``
(:func:`predictors.latency.probe.recalibrate_here`); and a full rebuild on this machine (every block + 30
calibration subnets, ``build_latency_table``), each with its wall time. Wall times on a contended host: compare
within one run.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
from omegaconf import DictConfig


def _scores(model, archs, measured: np.ndarray) -> dict[str, float]:
    pred = np.asarray(model.predict(archs))
    ratio = measured / pred
    return {"mape": float(np.mean(np.abs(pred - measured) / measured)),
            "within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.10)), "median_ratio": float(np.median(ratio))}


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="bench_host_refresh")
def main(cfg: DictConfig) -> None:
    from supernets.config_checks import check_int

    ks = [check_int("k", v, min=3) for v in ([cfg.k] if isinstance(cfg.k, int) else cfg.k)]
    args = SimpleNamespace(supernet=str(cfg.supernet), device=str(cfg.device), no_rebuild=bool(cfg.no_rebuild),
                           held_out=check_int("held_out", cfg.held_out, min=3))

    import supernets
    from predictors import load_latency_model
    from predictors.latency.build import build_latency_table
    from predictors.latency.devices import device_config
    from predictors.latency.probe import measure_archs, recalibrate_here, table_settings
    from predictors.latency.table import load_meta
    from supernets.paths import LATENCY_TABLES_DIR

    print(f"load average {os.getloadavg()[0]:.2f} (2-core host shared with others: wall times are contended)")
    table_dir = device_config(args.device)["table_dir"]
    meta = load_meta(LATENCY_TABLES_DIR / table_dir / args.supernet)
    settings = table_settings(meta)
    net = supernets.create_supernet(args.supernet).eval()
    shipped = load_latency_model(args.device, args.supernet)
    sp = shipped.space
    archs = sp.decode(sp.sample_encoded(np.random.default_rng(2024), args.held_out))
    t = time.perf_counter()
    before = np.array([m["value_ms"] for m in measure_archs(args.supernet, archs, settings, net)])
    print(f"{args.held_out} held-out subnets timed here ({settings.statistic}) in {time.perf_counter() - t:.1f} s; "
          f"table built on: {meta.get('fingerprint', {}).get('cpu')!r}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="host_refresh_") as tmp:
        for k in ks:
            out = Path(tmp) / f"recal{k}"
            t = time.perf_counter()
            recalibrate_here(args.device, args.supernet, out, k=k, supernet_obj=net)
            secs = time.perf_counter() - t
            rows.append((f"recalibrated, K={k}", secs, load_latency_model(args.device, args.supernet, tables_dir=out)))
            print(f"recalibrated on K={k} in {secs:.1f} s", flush=True)
        if not args.no_rebuild:
            out = Path(tmp) / "rebuild"
            t = time.perf_counter()
            build_latency_table(args.supernet, out / table_dir / args.supernet, device=args.device, settings=settings,
                                progress=False, supernet=net, command="bench_host_refresh (rebuild)")
            secs = time.perf_counter() - t
            rows.append(("full rebuild (blocks + 30 subnets)", secs,
                         load_latency_model(args.device, args.supernet, tables_dir=out)))
            print(f"rebuilt in {secs:.1f} s", flush=True)
        after = np.array([m["value_ms"] for m in measure_archs(args.supernet, archs, settings, net)])
        measured = (before + after) / 2
        print(f"held-out timed again: after/before median {np.median(after / before):.3f}, mean |after/before - 1| "
              f"{np.mean(np.abs(after / before - 1)):.3f} (load average now {os.getloadavg()[0]:.2f})")
        rows = [("shipped table", 0.0, shipped), *rows]
        rows = [(name, secs, _scores(model, archs, measured)) for name, secs, model in rows]
    print(f"{'model':38s} {'time_s':>7s} {'MAPE':>7s} {'within10':>8s} {'med_ratio':>9s}")
    for name, secs, s in rows:
        print(f"{name:38s} {secs:7.1f} {s['mape']:7.3f} {s['within_10pct']:8.2f} {s['median_ratio']:9.3f}")


if __name__ == "__main__":
    main()
