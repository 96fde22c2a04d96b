"""Table 1, ``ofa_specialized``: OFA's model-zoo subnets for Note10 and Pixel1 against this project's search.

Per published OFA-MobileNetV3 subnet (``supernets.published``): its published latency and top-1, the
project's latency model's prediction for it (the device's model for its width, over a space reaching
260 px), OFA's accuracy predictor's top-1 for it, and the best subnet the project's NSGA-II search finds at
no more predicted latency. One multi-objective search per device and width: a w1.0 subnet is compared
with the w1.0 supernet's front, a w1.2 one with the w1.2 front, both scored by the same predictor, so each
comparison holds the channel widths fixed. OFA's predictor (w1.2, trained on r = 160..224) gives
meaningless outputs outside its resolutions, so the searches stay inside them and published subnets at
other resolutions get ``n/a`` with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paper_tables.common import Column, TableResult, new_figure, quiet_search, save_figure

__all__ = ["build"]

_SUPERNET = {1.0: "ofa_mbv3_w10", 1.2: "ofa_mbv3_w12"}


def _predictor(space):
    """OFA's MobileNetV3 predictor accepting archs of ``space`` whatever supernet they come from (it is
    applied to w1.0 archs too; its own config ties it to ofa_mbv3_w12)."""
    from predictors.accuracy import OFAMobileNetV3Predictor
    from predictors.accuracy.loading import predictor_config
    from supernets.paths import REPO_ROOT

    weights = Path(predictor_config("ofa_pretrained")["weights"])
    return OFAMobileNetV3Predictor(space, supernet=None, weights=str(weights if weights.is_absolute() else REPO_ROOT / weights))


def _slot(r: int) -> int:
    return (r - 112) // 16


def _na_reason(r: int, trained: tuple[int, int]) -> str | None:
    if _slot(r) > 7:
        return f"r={r}: OFA's predictor encodes r as one of 8 slots (r-112)//16 covering 112..239"
    if not _slot(trained[0]) <= _slot(r) <= _slot(trained[1]):
        return (f"r={r}: resolution slot {_slot(r)} was never trained (OFA's predictor saw r={trained[0]}..{trained[1]}, "
                f"slots {_slot(trained[0])}..{_slot(trained[1])})")
    return None


def build(cfg: dict[str, Any], out_dir: Path) -> TableResult:
    """Run the searches and build the table (``cfg``: configs/reproduce/table/ofa_specialized.yaml)."""
    from predictors import load_latency_model
    from predictors.latency.published import published_geometries
    from supernets.published import published_mbv3_subnets
    from supernets.space import MobileNetV3Space

    devices: dict[str, str] = dict(cfg["devices"])  # OFA's label -> this project's device name
    search_res = [int(r) for r in cfg["search_resolutions"]]
    trained = (int(cfg["predictor_trained_resolutions"][0]), int(cfg["predictor_trained_resolutions"][1]))
    geos = published_geometries()
    score_space = MobileNetV3Space(resolutions=tuple(r for r in geos[1.2].space.resolutions if _slot(r) <= 7))
    scorer = _predictor(score_space)
    search_space = MobileNetV3Space(resolutions=tuple(search_res))
    search_pred = _predictor(search_space)

    published = {lab: published_mbv3_subnets(lab) for lab in devices}
    widths = sorted({p["width_mult"] for rows in published.values() for p in rows})
    fronts: dict[tuple[str, float], Any] = {}
    for w in widths:
        out = Path(out_dir) / "search" / _SUPERNET[w]
        res = quiet_search({
            "supernet": {"name": _SUPERNET[w], "resolutions": search_res},
            "device": list(devices.values()),
            "algorithm": dict(cfg["algorithm"]),
            "seed": int(cfg.get("seed", 0)),
            "probe": 0, "plot": bool(cfg.get("search_plots", False)), "progress": False,
            "out_dir": str(out), "overwrite": True,  # a reproduction recomputes its searches
        }, out / "search.log", accuracy=search_pred)
        for dev in devices.values():
            fronts[(dev, w)] = res["devices"][dev]["front"]

    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for lab, dev in devices.items():
        for p in sorted(published[lab], key=lambda q: q["latency_ms"]):
            w = p["width_mult"]
            lat_model = load_latency_model(dev, _SUPERNET[w], geometry=geos[w])
            pred_lat = float(lat_model.predict([p["arch"]])[0])
            reason = _na_reason(p["resolution"], trained)
            pred_top1 = None if reason else float(scorer.predict([score_space.from_ofa_dict(p["arch"].to_ofa_dict())])[0])
            if reason:
                notes.append(f"{p['name']}: predictor top-1 n/a, {reason}")
            front = fronts[(dev, w)]
            ok = front[front["latency_ms"] <= pred_lat]
            best = ok.loc[ok["top1"].idxmax()] if len(ok) else None
            row = {"device": lab, "subnet": p["name"], "width": w, "r": p["resolution"],
                   "published_ms": p["latency_ms"], "published_top1": p["top1"] / 100, "predicted_ms": pred_lat,
                   "latency_err": (pred_lat - p["latency_ms"]) / p["latency_ms"], "predictor_top1": pred_top1,
                   "searched_top1": None if best is None else float(best["top1"]),
                   "searched_ms": None if best is None else float(best["latency_ms"]),
                   "searched_arch": None if best is None else str(best["arch"])}
            if pred_top1 is None:
                row["passes"] = None
            else:
                row["passes"] = bool(best is not None and row["searched_top1"] >= pred_top1 and row["searched_ms"] <= pred_lat)
            rows.append(row)
    scored = [r for r in rows if r["passes"] is not None]
    n_pass = sum(bool(r["passes"]) for r in scored)
    alg = cfg["algorithm"]
    notes[:0] = [
        f"Acceptance: {n_pass}/{len(scored)} scoreable published subnets have a searched subnet with predicted top-1 "
        f">= the predictor's top-1 for the published one at no more predicted latency "
        f"({len(rows) - len(scored)} not scoreable, see below).",
        f"Search: {alg.get('name')} pop_size={alg.get('pop_size')} n_gen={alg.get('n_gen')} seed={cfg.get('seed', 0)}, "
        f"one run per device and width over r={search_res} (the predictor's trained resolutions); budget = the "
        "published subnet's predicted latency; searched subnets come from the supernet of the published subnet's "
        "width (w1.0 rows: ofa_mbv3_w10 scored by the w1.2 predictor, as the published w1.0 subnet is).",
        "Latency: predicted by load_latency_model(device, supernet of the subnet's width) (note10: OFA's per-layer "
        "table for w1.2 at 160..224, the layer-cost model elsewhere; pixel: few-shot layer-cost model fitted on these "
        "7 subnets, so its errors here are in-sample); top-1 columns are ImageNet top-1 (%): published after "
        "fine-tuning, predicted by OFA's accuracy predictor (no fine-tuning).",
        "OFA's predictor has no width input: it scores a w1.0 arch as the same arch of the w1.2 supernet, so at "
        "equal latency the w1.0 front lies above the w1.2 one in the plot; compare each row within its width.",
    ]
    columns = [Column("device", "device"), Column("subnet", "published subnet"), Column("width", "w", ".1f"),
               Column("r", "r"), Column("published_ms", "published ms", ".0f"),
               Column("published_top1", "published top-1", "pct1"), Column("predicted_ms", "predicted ms", ".2f"),
               Column("latency_err", "lat. err %", "pct1"), Column("predictor_top1", "predictor top-1", "pct2"),
               Column("searched_top1", "searched top-1", "pct2"), Column("searched_ms", "searched ms", ".2f"),
               Column("passes", "searched >= published"), Column("searched_arch", "searched arch")]

    def plot(path: Path) -> None:
        fig, axes = new_figure(ncols=len(devices), figsize=(6 * len(devices), 4.5), squeeze=False)
        for ax, (lab, dev) in zip(axes[0], devices.items()):
            for k, w in enumerate(widths):
                f = fronts[(dev, w)]
                ax.step(f["latency_ms"], 100 * f["top1"], where="post", c=f"C{k}", lw=1,
                        label=f"searched front {_SUPERNET[w]}")
                pts = [r for r in rows if r["device"] == lab and r["width"] == w and r["predictor_top1"] is not None]
                ax.scatter([r["predicted_ms"] for r in pts], [100 * r["predictor_top1"] for r in pts], marker="*",
                           s=140, c=f"C{k}", edgecolors="k", zorder=4, label=f"published w{w} (predicted)")
            top = max(r["published_ms"] for r in rows if r["device"] == lab)
            ax.set_xlim(0, 1.15 * top)
            ax.set_ylim(72, 86)
            ax.set_xlabel(f"predicted latency on {dev} (ms)")
            ax.set_ylabel("predicted top-1 (%)")
            ax.set_title(f"{lab}: searched fronts vs OFA's published subnets", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        save_figure(fig, path)

    return TableResult("ofa_specialized", "Table 1: OFA specialised subnets (Note10, Pixel1) vs the project's search",
                       columns, rows, notes, plot,
                       summary={"passing": n_pass, "scored": len(scored), "total": len(rows)})

