"""Table 4, ``search_efficiency``: search algorithms on the same predictors and evaluation budget.

Each algorithm runs through :func:`search.run` on ``ofa_mbv3_w12`` restricted to OFA's predictor's trained
resolutions, with OFA's accuracy predictor and the Note10 latency table. Reported: wall time of the search
loop, evaluations, hypervolume of the front it found (one fixed reference point for all, the runner's), and
the best predicted top-1 under each latency limit. OFA's evolution is single-objective with a latency limit,
so it runs once per limit (the budget split between the runs) and its front is the union of their results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from paper_tables.common import Column, TableResult, new_figure, quiet_search, save_figure

__all__ = ["build"]


def _best_under(front: pd.DataFrame, limit: float) -> float | None:
    ok = front[front["latency_ms"] <= limit]
    return float(ok["top1"].max()) if len(ok) else None


def build(cfg: dict[str, Any], out_dir: Path) -> TableResult:
    """Run every algorithm (``cfg``: configs/reproduce/table/search_efficiency.yaml)."""
    from search.pareto import hypervolume, non_dominated

    device = str(cfg["device"])
    limits = [float(v) for v in cfg["limits_ms"]]
    base = {"supernet": {"name": cfg["supernet"], "resolutions": [int(r) for r in cfg["search_resolutions"]]},
            "predictor": cfg["predictor"], "device": device, "seed": int(cfg.get("seed", 0)), "probe": 0,
            "plot": False, "progress": False}
    rows, fronts = [], {}
    ref = None
    for label, spec in dict(cfg["algorithms"]).items():
        spec = dict(spec)
        runs = [(None, spec)] if spec.get("name") != "ofa_evolution" else [(lim, spec) for lim in limits]
        parts, t, n_evals = [], 0.0, 0
        for lim, acfg in runs:
            sub = Path(out_dir) / "search" / (label if lim is None else f"{label}_{lim:g}ms")
            res = quiet_search({**base, "algorithm": acfg, "constraints": {"latency_ms": lim}, "out_dir": str(sub),
                                "overwrite": True},
                               sub / "search.log")
            d = res["devices"][device]
            if d.get("status") != "ok":
                raise RuntimeError(f"search {label} (limit {lim}) on {device} did not finish: {d.get('message')}")
            parts.append(d["front"])
            t += float(d["time_s"])
            # Optuna's collect() re-evaluates the study's trials (cache hits) after the loop: count trials
            n_evals += int(d.get("n_study_trials") or d["n_evals"])
            run_ref = np.asarray(json.loads((sub / device / "pareto.json").read_text())["reference_point"])
            if ref is None:
                ref = run_ref
            elif not np.allclose(ref, run_ref):
                raise RuntimeError(f"reference points differ between runs ({ref} vs {run_ref}): the same models must "
                                   "give the same extremes")
        front = pd.concat(parts, ignore_index=True).drop_duplicates("arch")
        # the runner's objective space (error 1 - top1, latency), which its reference point is in
        F = np.stack([1.0 - front["top1"].to_numpy(), front["latency_ms"].to_numpy()], axis=1)
        front = front.iloc[non_dominated(F)].sort_values("latency_ms").reset_index(drop=True)
        fronts[label] = front
        F = np.stack([1.0 - front["top1"].to_numpy(), front["latency_ms"].to_numpy()], axis=1)
        row = {"algorithm": label, "config": " ".join(f"{k}={v}" for k, v in spec.items()), "runs": len(runs),
               "n_evals": n_evals, "time_s": t, "hypervolume": hypervolume(F, ref), "front_size": len(front)}
        for lim in limits:
            row[f"best_{lim:g}"] = _best_under(front, lim)
        rows.append(row)
    columns = [Column("algorithm", "algorithm"), Column("config", "settings"), Column("runs", "runs"),
               Column("n_evals", "evaluations"), Column("time_s", "wall time s", ".2f"),
               Column("hypervolume", "hypervolume", ".4f"), Column("front_size", "front size")]
    columns += [Column(f"best_{lim:g}", f"best top-1 ≤ {lim:g} ms", "pct2") for lim in limits]
    notes = [f"Device {device}, supernet {cfg['supernet']} at r={list(cfg['search_resolutions'])}, predictor "
             f"{cfg['predictor']}; objectives (top-1 max, latency min); seed {cfg.get('seed', 0)}.",
             f"Hypervolume of (1 - top-1, latency ms), the search's own objectives, against the reference point "
             f"{np.round(ref, 4).tolist()} (the worst objectives of the smallest and largest arch per resolution, "
             "+5 %), the same for every algorithm; for a single-run algorithm it equals its pareto.json hypervolume.",
             "Wall times are of the search loop on a shared 2-core machine (contended): compare within one run only."]

    def plot(path: Path) -> None:
        fig, ax = new_figure(figsize=(7, 4.5))
        for k, (label, f) in enumerate(fronts.items()):
            ax.step(f["latency_ms"], 100 * f["top1"], where="post", c=f"C{k}", lw=1.2, label=label)
        for lim in limits:
            ax.axvline(lim, c="0.6", ls="--", lw=0.8)
        ax.set_xlabel(f"predicted latency on {device} (ms)")
        ax.set_ylabel("predicted top-1 (%)")
        ax.set_xlim(0, 1.4 * max(limits))
        ax.set_title("Fronts found with the same evaluation budget", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        save_figure(fig, path)

    return TableResult("search_efficiency", "Table 4: search algorithms, same predictors and budget", columns, rows,
                       notes, plot)
