"""A new device from a few whole networks measured on it: few-shot transfer of a base device's layer-cost model.

    python scripts/fit_few_shot.py csv=my_phone.csv device=my_phone base=note10 device_config=configs/device

``csv`` columns: ``arch`` (an arch string of ``supernet``), ``ms`` (or ``latency_ms``) and optionally
``supernet`` (per row, e.g. w1.0 and w1.2 subnets in one file). The base device's layer-cost model (its
``layer_cost`` entry, or one fitted on its per-layer table) keeps its coefficients; a compute scale and a
memory/overhead scale are re-fitted on the CSV's networks (:func:`predictors.latency.layer_cost.fit_few_shot`).
Prints the leave-one-out error and writes ``<out_dir>/<device>/<supernet>/meta.yaml`` for every supernet
of the CSV (and ``serve_for``), and ``<device>.yaml`` under ``device_config`` when given.
``curve=true`` instead prints the error against the number of training networks (random subsets, the
rest held out). Options: ``configs/scripts/fit_few_shot.yaml``.
"""

from __future__ import annotations

import csv
import datetime as dt
import shlex
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf

from predictors.latency.devices import Device, device_config, layer_cost_from
from predictors.latency.layer_cost import LayerCostModel, MeasuredNet, fit_few_shot, loo_errors
from predictors.latency.table import LatencyTableError, atomic_write_text, load_meta, load_table
from supernets.paths import LATENCY_TABLES_DIR


def read_nets(path: Path, default_supernet: str | None,
              resolutions: list[int] | None) -> list[tuple[str, MeasuredNet]]:
    """The CSV's ``(supernet, network)`` pairs, each parsed in its supernet's space (``resolutions`` widens the
    spaces)."""
    import supernets
    from supernets.measurable import measurable_for

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cols = set(rows[0]) if rows else set()
    ms_col = "ms" if "ms" in cols else "latency_ms"
    if not rows or "arch" not in cols or ms_col not in cols:
        raise SystemExit(f"{path}: need columns arch and ms (or latency_ms), optionally supernet; got "
                         f"{sorted(cols) or 'no rows'}")
    geos: dict[str, Any] = {}
    nets = []
    for line, r in enumerate(rows, start=2):
        sn = r.get("supernet") or default_supernet
        if not sn:
            raise SystemExit(f"{path}:{line}: no supernet column and no supernet=<name> given")
        if sn not in geos:
            kw = {"resolutions": resolutions} if resolutions else {}
            geos[sn] = measurable_for(supernets.create_supernet(sn, **kw))
        g = geos[sn]
        try:
            arch = g.space.parse(r["arch"])
        except (TypeError, ValueError) as err:
            raise SystemExit(f"{path}:{line}: arch {r['arch']!r} is not an arch of {sn} ({err}); widen the space "
                             f"with resolutions=[...] if its resolution is outside it") from None
        try:
            ms = float(r[ms_col])
        except (TypeError, ValueError):
            ms = float("nan")
        if not (np.isfinite(ms) and ms > 0):
            raise SystemExit(f"{path}:{line}: {ms_col} {r[ms_col]!r} is not a positive number of milliseconds")
        nets.append((sn, MeasuredNet(name=r.get("name") or f"{sn}:{line}", geometry=g, arch=arch, latency_ms=ms)))
    return nets


def base_layer_cost(base: str, supernet: str, geometry: Any, tables_dir: Path) -> LayerCostModel:
    """The base device's layer-cost model for ``supernet``: its ``layer_cost`` entry, its device-wide
    ``layer_cost.yaml``, or one fitted on its per-layer table."""
    cfg = device_config(base)
    folder = tables_dir / cfg["table_dir"] / supernet
    if not (folder / "meta.yaml").is_file():
        raise SystemExit(f"base device {base!r} has no latency data for {supernet} ({folder}); pick a base with a "
                         f"table or layer-cost model for it (e.g. host_cpu after scripts/build_latency_table.py)")
    meta = load_meta(folder)
    table = load_table(folder) if (folder / "table.csv").is_file() else None
    try:
        return layer_cost_from(meta, folder, table, geometry)
    except LatencyTableError as err:
        raise SystemExit(f"base device {base!r} for {supernet}: {err} (a learned model cannot be a few-shot base)") \
            from None


def error_curve(source: LayerCostModel, nets: list[MeasuredNet], method: str, *, repeats: int = 200,
                seed: int = 0) -> list[dict[str, float]]:
    """Mean absolute relative error on held-out networks when fitting on ``n`` random ones, n = 1..N-1."""
    rng = np.random.default_rng(seed)
    out = []
    for n in range(1, len(nets)):
        errs = []
        for _ in range(repeats):
            pick = rng.permutation(len(nets))
            model = fit_few_shot(source, [nets[i] for i in pick[:n]], method)
            errs += [abs(model.network_ms(nets[i].geometry, nets[i].arch) / nets[i].latency_ms - 1) for i in pick[n:]]
        out.append({"n_train": n, "mape": float(np.mean(errs)), "p90": float(np.percentile(errs, 90))})
    return out


def fit(cfg: DictConfig) -> dict[str, Any]:
    """Importable entry point (tests call it without Hydra)."""
    tables = Path(cfg.out_dir) if cfg.get("out_dir") else LATENCY_TABLES_DIR
    base_tables = Path(cfg.base_tables_dir) if cfg.get("base_tables_dir") else LATENCY_TABLES_DIR
    res = [int(r) for r in cfg.resolutions] if cfg.get("resolutions") else None
    pairs = read_nets(Path(cfg.csv), cfg.get("supernet"), res)
    nets = [n for _, n in pairs]
    names = list(dict.fromkeys(sn for sn, _ in pairs))
    base_sn = cfg.get("base_supernet") or names[0]
    geo = next((n.geometry for sn, n in pairs if sn == base_sn), None)
    if geo is None:
        import supernets
        from supernets.measurable import measurable_for

        geo = measurable_for(supernets.create_supernet(base_sn))
    source = base_layer_cost(cfg.base, base_sn, geo, base_tables)
    method = str(cfg.method)
    if cfg.get("curve"):
        curve = error_curve(source, nets, method, repeats=int(cfg.get("curve_repeats", 200)))
        for row in curve:
            print(f"{cfg.device}: {row['n_train']} training networks -> held-out MAPE {100 * row['mape']:.1f} % "
                  f"(p90 {100 * row['p90']:.1f} %)")
        return {"curve": curve}
    if len(nets) < 3:
        raise SystemExit(f"{cfg.csv}: {len(nets)} networks; few-shot needs at least 3 (2 scales + one held out)")
    model = fit_few_shot(source, nets, method)
    loo = loo_errors(source, nets, method)
    mape = float(np.abs(loo).mean())
    print(f"{cfg.device}: {len(nets)} networks, base {cfg.base} ({base_sn}), scales (compute, other) = "
          f"({model.scales[0]:.4f}, {model.scales[1]:.4f}); leave-one-out MAPE {100 * mape:.2f} %, max |err| "
          f"{100 * np.abs(loo).max():.2f} %")
    command = shlex.join(["python", "scripts/fit_few_shot.py", *sys.argv[1:]])
    for sn in dict.fromkeys([*names, *(cfg.get("serve_for") or [])]):
        meta = {"device": cfg.device, "supernet": sn, "source": "few_shot", "units": "ms", "batch": 1,
                "model": "layer_cost", "method": f"few_shot_{method}",
                "description": f"Few-shot transfer of {cfg.base}'s layer-cost model ({base_sn}) re-fitted on "
                               f"{len(nets)} whole networks measured on {cfg.device}",
                "source_device": cfg.base, "layer_cost": model.to_dict(), "n_training_nets": len(nets),
                "training_nets": {n.name: n.latency_ms for n in nets}, "loo_mape": round(mape, 4),
                "loo_max_abs_rel_err": round(float(np.abs(loo).max()), 4),
                "loo_rel_err": {n.name: round(float(v), 4) for n, v in zip(nets, loo)},
                "training_csv": str(cfg.csv), "date": dt.date.today().isoformat(), "command": command}
        folder = tables / cfg.device / sn
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))
        print(f"  -> {folder / 'meta.yaml'}")
    if cfg.get("device_config"):
        path = Path(cfg.device_config)
        path = path / f"{cfg.device}.yaml" if path.is_dir() or not path.suffix else path
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"name": cfg.device, "latency": "few_shot", "table_dir": cfg.device,
               "description": cfg.get("description") or f"few-shot from {len(nets)} measured networks "
                                                          f"(base {cfg.base})"}
        atomic_write_text(path, Device(**doc).to_yaml())  # packaged under device.<name>: device=[a,b] composes both
        print(f"  -> {path}")
    return {"loo_mape": mape, "loo": loo, "model": model}


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="fit_few_shot")
def main(cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg) if cfg.get("verbose") else "", end="")
    fit(cfg)


if __name__ == "__main__":
    main()
