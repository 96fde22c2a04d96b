"""Fit and write the shipped latency models that come from published measurements.

* ``note10``: layer-cost model fitted on the converted Note10 per-layer table
  (``latency_tables/note10/layer_cost.yaml``) and served for ``ofa_mbv3_w10`` (no table there) and as the
  fallback for ``ofa_mbv3_w12`` resolutions outside 160..224;
* few-shot devices (``pixel``, ``pixel2``, ``note8``, ``s7edge``, ``lg_g8``): the Note10 layer-cost model with
  its compute and memory/overhead scales re-fitted on the device's published OFA subnets, for
  ``ofa_mbv3_w10`` and ``ofa_mbv3_w12``, with the leave-one-out error in ``meta.yaml``;
* HELP GPUs: see ``--help-gpu`` (ridge models over per-block features, :mod:`predictors.latency.help_gpu`).

Run: ``python scripts/fit_latency_devices.py [--help-gpu]``. Deterministic; rewrites the files atomically.
"""

from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import yaml

from predictors.latency.geometry import MBv3Geometry
from predictors.latency.layer_cost import LayerCostModel, fit_few_shot, loo_errors
from predictors.latency.published import PUBLISHED_CSV, load_published_nets, published_geometries
from predictors.latency.table import atomic_write_text, load_table
from supernets.paths import LATENCY_TABLES_DIR

FEW_SHOT_DEVICES = ("pixel", "pixel2", "note8", "s7edge", "lg_g8")
SUPERNETS = ("ofa_mbv3_w10", "ofa_mbv3_w12")
METHOD = "two_scales"
PUBLISHED_ATTRIBUTION = (
    "Whole-network latencies of the OFA specialised MobileNetV3 subnets (OFA model zoo, Cai et al., ICLR 2020; "
    "han-cai/files a7c9bcd), copied in latency_tables/published/ofa_mbv3_subnets.csv"
)


def write_yaml(path, data) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def fit_note10(geos: dict[float, MBv3Geometry]) -> LayerCostModel:
    table = load_table(LATENCY_TABLES_DIR / "note10" / "ofa_mbv3_w12")
    lc = LayerCostModel.fit(table, geos[1.2])
    nets = load_published_nets("note10", geos)
    errs = {n.name: round(float((lc.network_ms(n.geometry, n.r, n.d, n.ks, n.e) - n.latency_ms) / n.latency_ms), 4)
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
                "attribution": PUBLISHED_ATTRIBUTION, "published_csv": str(PUBLISHED_CSV.relative_to(
                    LATENCY_TABLES_DIR.parent)),
            }
            write_yaml(LATENCY_TABLES_DIR / dev / supernet / "meta.yaml", meta)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--help-gpu", action="store_true", help="also (re)fit the HELP GPU predictors")
    args = p.parse_args()
    geos = published_geometries()
    lc = fit_note10(geos)
    fit_devices(lc, geos)
    if args.help_gpu:
        from predictors.latency.help_gpu import fit_all

        fit_all()


if __name__ == "__main__":
    main()
