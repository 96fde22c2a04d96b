"""Fit and write the shipped latency models that come from published measurements.

* ``note10``: layer-cost model fitted on the converted Note10 per-layer table
  (``latency_tables/note10/layer_cost.yaml``) and served for ``ofa_mbv3_w10`` (no table there) and as the
  fallback for ``ofa_mbv3_w12`` resolutions outside 160..224;
* few-shot devices (``pixel``, ``pixel2``, ``note8``, ``s7edge``, ``lg_g8``): the Note10 layer-cost model with
  its compute and memory/overhead scales re-fitted on the device's published OFA subnets, for
  ``ofa_mbv3_w10`` and ``ofa_mbv3_w12``, with the leave-one-out error in ``meta.yaml``;
* HELP GPUs: see ``help_gpu=true`` (ridge models over per-block features, :mod:`predictors.latency.help_gpu`).

* any device known by measured whole networks: ``learned=runs.csv device=NAME supernet=S`` fits a
  ridge model over per-block features (CSV columns ``arch`` = canonical arch string, ``latency_ms``).

Run: ``python scripts/fit_latency_devices.py [help_gpu=true]``. Deterministic; rewrites the files atomically.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import hydra
import numpy as np
import yaml
from omegaconf import DictConfig

from predictors.latency.layer_cost import LayerCostModel, fit_few_shot, loo_errors
from predictors.latency.published import PUBLISHED_SOURCE, load_published_nets, published_geometries
from predictors.latency.table import atomic_write_text, load_table
from supernets.measurable_mbv3 import MBv3Geometry
from supernets.paths import LATENCY_TABLES_DIR

FEW_SHOT_DEVICES = ("pixel", "pixel2", "note8", "s7edge", "lg_g8")
SUPERNETS = ("ofa_mbv3_w10", "ofa_mbv3_w12")
METHOD = "two_scales"
#: fewest networks in a learned model's held-out fifth (its Spearman and MAPE need a few points)
MIN_HELD_OUT = 3
PUBLISHED_ATTRIBUTION = (
    "Whole-network latencies of the OFA specialised MobileNetV3 subnets (OFA model zoo, Cai et al., ICLR 2020; "
    "han-cai/files a7c9bcd), bundled in supernets/data/ofa_specialized_summary.csv"
)


def write_yaml(path, data) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def fit_note10(geos: dict[float, MBv3Geometry]) -> LayerCostModel:
    table = load_table(LATENCY_TABLES_DIR / "note10" / "ofa_mbv3_w12")
    lc = LayerCostModel.fit(table, geos[1.2])
    nets = load_published_nets("note10", geos)
    errs = {n.name: round(float((lc.network_ms(n.geometry, n.arch) - n.latency_ms) / n.latency_ms), 4)
            for n in nets}
    doc = {**lc.to_dict(), "fitted_on": "latency_tables/note10/ofa_mbv3_w12/table.csv",
           "fit": "scipy.optimize.nnls on relative errors of every table row (470 layers)",
           "layer_mape": round(lc.info["layer_mape"], 4), "layer_max_rel_err": round(lc.info["layer_max_rel_err"], 4),
           "check_published_note10_rel_err": errs,
           "check_published_note10_max_abs_rel_err": round(max(abs(v) for v in errs.values()), 4),
           "date": dt.date.today().isoformat(), "command": "python scripts/fit_latency_devices.py"}
    write_yaml(LATENCY_TABLES_DIR / "note10" / "layer_cost.yaml", doc)
    print(f"note10 layer-cost: layer MAPE {lc.info['layer_mape']:.4f}; published Note10 subnets rel. errors {errs}")
    meta = {"device": "note10", "supernet": "ofa_mbv3_w10", "source": "layer_cost", "units": "ms", "batch": 1,
            "model": "layer_cost", "method": "layer_cost",
            "description": "Note10 layer-cost model (fitted on the w1.2 per-layer table) applied to w1.0 shapes",
            "layer_cost": lc.to_dict(), "check_published_note10_rel_err": errs,
            "date": dt.date.today().isoformat(), "command": "python scripts/fit_latency_devices.py",
            "attribution": "fitted on OFA's published Note10 lookup tables (han-cai/files a7c9bcd)"}
    write_yaml(LATENCY_TABLES_DIR / "note10" / "ofa_mbv3_w10" / "meta.yaml", meta)
    return lc


def fit_devices(lc: LayerCostModel, geos: dict[float, MBv3Geometry]) -> None:
    for dev in FEW_SHOT_DEVICES:
        nets = load_published_nets(dev, geos)
        model = fit_few_shot(lc, nets, METHOD)
        loo = loo_errors(lc, nets, METHOD)
        mape = float(np.abs(loo).mean())
        print(f"{dev}: {len(nets)} published subnets, scales {model.scales}, LOO MAPE {mape:.4f}, "
              f"max |err| {np.abs(loo).max():.4f}")
        for supernet in SUPERNETS:
            meta = {
                "device": dev, "supernet": supernet, "source": "few_shot", "units": "ms", "batch": 1,
                "model": "layer_cost", "method": f"few_shot_{METHOD}",
                "description": (
                    "Few-shot transfer: Note10 layer-cost coefficients kept; a compute scale (MAC terms) and a "
                    "memory/overhead scale (activation, SE, h-swish, per-layer terms) re-fitted by non-negative "
                    "relative least squares on the device's published OFA subnets"),
                "source_device": "note10",
                "layer_cost": model.to_dict(),
                "n_training_nets": len(nets),
                "training_nets": {n.name: n.latency_ms for n in nets},
                "loo_mape": round(mape, 4),
                "loo_max_abs_rel_err": round(float(np.abs(loo).max()), 4),
                "loo_rel_err": {n.name: round(float(v), 4) for n, v in zip(nets, loo)},
                "date": dt.date.today().isoformat(), "command": "python scripts/fit_latency_devices.py",
                "attribution": PUBLISHED_ATTRIBUTION, "published_source": PUBLISHED_SOURCE,
            }
            write_yaml(LATENCY_TABLES_DIR / dev / supernet / "meta.yaml", meta)


def fit_learned_device(csv_path: str, device: str, supernet: str) -> None:
    """Ridge latency model from whole-network measurements -> latency_tables/<device>/<supernet>/."""
    import csv

    from scipy.stats import spearmanr

    from predictors.latency.devices import geometry_for
    from predictors.latency.learned import LearnedLatencyModel

    g = geometry_for(supernet)
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"arch", "latency_ms"} <= set(rows[0]):
        raise SystemExit(f"{csv_path}: need columns arch, latency_ms (got {list(rows[0]) if rows else 'no rows'})")
    archs, lat = [], []
    for line, r in enumerate(rows, start=2):
        try:
            archs.append(g.space.parse(r["arch"]))
        except (TypeError, ValueError) as err:
            raise SystemExit(f"{csv_path}:{line}: arch {r['arch']!r} is not an arch of {supernet} ({err})") from None
        try:
            ms = float(r["latency_ms"])
        except (TypeError, ValueError):
            ms = float("nan")
        if not (np.isfinite(ms) and ms > 0):
            raise SystemExit(f"{csv_path}:{line}: latency_ms {r['latency_ms']!r} is not a positive number of "
                             f"milliseconds")
        lat.append(ms)
    # the held-out fifth must hold a few networks, or its Spearman/MAPE are NaN (and would be saved as such)
    if len(lat) < 5 * MIN_HELD_OUT:
        raise SystemExit(f"{csv_path}: {len(lat)} measured networks; need at least {5 * MIN_HELD_OUT} so that the "
                         f"held-out fifth has >= {MIN_HELD_OUT}; measure more networks on {device}")
    x = g.space.encode(archs)
    y = np.array(lat)
    perm = np.random.default_rng(0).permutation(len(y))
    te, tr = perm[: len(y) // 5], perm[len(y) // 5:]
    held = LearnedLatencyModel.fit(g, x[tr], y[tr], alpha=1.0).predict(x[te])
    rho, mape = float(spearmanr(held, y[te]).statistic), float(np.mean(np.abs(held - y[te]) / y[te]))
    if not (np.isfinite(rho) and np.isfinite(mape)):
        raise SystemExit(f"{csv_path}: held-out Spearman {rho} / MAPE {mape} are not finite (held-out latencies "
                         f"{y[te].tolist()}, predictions {held.tolist()}); measure more varied networks")
    model = LearnedLatencyModel.fit(g, x, y, alpha=1.0)
    meta = {"device": device, "supernet": supernet, "source": "learned", "units": "ms",
            "trained_on": f"{len(y)} whole networks from {csv_path}",
            "held_out": {"spearman": rho, "mape": mape, "n_test": len(te)},
            "date": dt.date.today().isoformat(),
            "command": f"python scripts/fit_latency_devices.py learned={csv_path} device={device} "
                       f"supernet={supernet}"}
    model.save(LATENCY_TABLES_DIR / device / supernet, meta)
    print(f"{device}/{supernet}: held-out {meta['held_out']}; add configs/device/{device}.yaml to use it")


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="fit_latency_devices")
def main(cfg: DictConfig) -> None:
    from supernets.config_checks import ConfigError

    args = SimpleNamespace(help_gpu=cfg.help_gpu, learned=cfg.learned, device=cfg.device, supernet=cfg.supernet)
    if not isinstance(args.help_gpu, bool):
        raise ConfigError(f"help_gpu must be true or false, got {args.help_gpu!r}")
    if args.learned:
        if not (args.device and args.supernet):
            raise ConfigError(f"learned={args.learned} needs device=<name> and supernet=<name>, got "
                              f"device={args.device} supernet={args.supernet}")
        fit_learned_device(args.learned, args.device, args.supernet)
        return
    geos = published_geometries()
    lc = fit_note10(geos)
    fit_devices(lc, geos)
    if args.help_gpu:
        from predictors.latency.help_fit import fit_all, write_device_configs
        from supernets.paths import CONFIG_DIR

        write_device_configs(fit_all(), CONFIG_DIR / "device")


if __name__ == "__main__":
    main()
