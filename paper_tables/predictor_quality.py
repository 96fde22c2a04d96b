"""Table 3, ``predictor_quality``: ranking quality of the accuracy predictors on measured ImageNet top-1.

Trainable predictors (recipes ``configs/predictor/<name>.yaml``) are k-fold cross-validated with
:func:`predictors.accuracy.cross_validate` on the bundled DyNAS-T dataset (OFA-MobileNetV3 w1.0, r = 224).
OFA's published predictor is scored on the same measured accuracies without any fitting (transfer: it was
trained by OFA on w1.2 subnets, so it ranks w1.0 subnets as if they were w1.2 ones).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from paper_tables.common import Column, TableResult, new_figure, save_figure

__all__ = ["build", "resolution_transfer"]


def resolution_transfer(rt: dict[str, Any]) -> list[dict[str, Any]]:
    """Fit each recipe x feature set on some resolutions of ``rt['dataset']``, score within each held-out one."""
    from predictors.accuracy import build_predictor, ranking_metrics, read_dataset
    from predictors.accuracy.loading import predictor_config

    ds = read_dataset(str(rt["dataset"]))
    r = np.asarray(ds.space.values(ds.encoded, "r"))[:, 0].astype(int)
    out = []
    for split in rt["splits"]:
        train = np.isin(r, [int(v) for v in split["train"]])
        for name in rt["recipes"]:
            for feats in rt["features"]:
                recipe = predictor_config(name)
                recipe["features"] = feats
                if recipe.get("kind") == "ensemble":
                    recipe["member"] = {**recipe["member"], "features": feats}
                t0 = time.perf_counter()
                model = build_predictor(recipe, ds.space, supernet=ds.supernet).fit(ds.encoded[train], ds.top1[train])
                for test_r in split["test"]:
                    test = r == int(test_r)
                    met = ranking_metrics(ds.top1[test], model.predict(ds.encoded[test]))
                    out.append({"predictor": f"{name} ({feats})", "kind": recipe["kind"],
                                "dataset": Path(str(ds.path)).stem, "n": int(test.sum()),
                                "protocol": f"fit at r={sorted(int(v) for v in split['train'])} ({int(train.sum())} "
                                            f"archs), test at r={int(test_r)}",
                                "kendall_tau": met["kendall_tau"], "kendall_tau_std": None,
                                "spearman": met["spearman"], "rmse_points": met["rmse_points"],
                                "time_s": time.perf_counter() - t0})
    return out


def build(cfg: dict[str, Any], out_dir: Path) -> TableResult:
    """Cross-validate and score (``cfg``: configs/reproduce/table/predictor_quality.yaml)."""
    from predictors import load_predictor
    from predictors.accuracy import build_predictor, cross_validate, ranking_metrics, read_dataset
    from predictors.accuracy.loading import predictor_config

    ds = read_dataset(str(cfg["dataset"]))
    n_max = cfg.get("max_rows")
    if n_max is not None and len(ds) > int(n_max):
        ds = ds.subset(np.sort(np.random.default_rng(int(cfg.get("seed", 0))).choice(len(ds), int(n_max), replace=False)))
    folds, seed = int(cfg["folds"]), int(cfg.get("seed", 0))
    rows: list[dict[str, Any]] = []
    for name in cfg["trainable"]:
        recipe = predictor_config(name)
        recipe.update(dict((cfg.get("recipe_overrides") or {}).get(name) or {}))
        t0 = time.perf_counter()
        cv = cross_validate(lambda r=recipe: build_predictor(r, ds.space, supernet=ds.supernet), ds, folds=folds, seed=seed)
        m, s = cv["mean"], cv["std"]
        rows.append({"predictor": name, "kind": recipe["kind"], "dataset": Path(str(ds.path)).stem, "n": len(ds),
                     "protocol": f"{folds}-fold CV (seed {seed})", "kendall_tau": m["kendall_tau"],
                     "kendall_tau_std": s["kendall_tau"], "spearman": m["spearman"], "rmse_points": m["rmse_points"],
                     "time_s": time.perf_counter() - t0})
    for name in cfg.get("transfer", []):
        model = load_predictor(str(name), space=ds.space)
        pred = model.predict(ds.encoded)
        met = ranking_metrics(ds.top1, pred)
        rows.append({"predictor": name, "kind": model.kind, "dataset": Path(str(ds.path)).stem, "n": len(ds),
                     "protocol": f"transfer, no fit ({model.supernet} predictor on {ds.supernet} subnets)",
                     "kendall_tau": met["kendall_tau"], "kendall_tau_std": None, "spearman": met["spearman"],
                     "rmse_points": met["rmse_points"], "time_s": None})
    rt = cfg.get("resolution_transfer")
    if rt:
        rows += resolution_transfer(dict(rt))
    columns = [Column("predictor", "predictor"), Column("kind", "kind"), Column("dataset", "dataset"), Column("n", "n"),
               Column("protocol", "protocol"), Column("kendall_tau", "Kendall tau", ".3f"),
               Column("kendall_tau_std", "± (folds)", ".3f"), Column("spearman", "Spearman", ".3f"),
               Column("rmse_points", "RMSE (top-1 points)", ".2f"), Column("time_s", "CV time s", ".1f")]
    src = ds.meta.get("source", "")
    notes = [f"Dataset: {len(ds)} distinct archs ({src}).",
             "CV figures are means over folds of per-fold metrics; RMSE in ImageNet top-1 percentage points.",
             "The transfer row's RMSE includes the w1.2-vs-w1.0 offset (a wider supernet is more accurate); its "
             "ranking metrics are what a search uses."]
    if rt:
        tds = read_dataset(str(rt["dataset"]))
        notes.append(f"Resolution transfer ({Path(str(tds.path)).stem}: {len(tds)} subnets of the trained tiny "
                     f"supernet, measured top-1 on held-out MNIST; {tds.meta.get('source', '')}): each predictor is "
                     "fitted on the archs at the training resolutions only and scored within each held-out "
                     "resolution (Kendall tau, Spearman, RMSE). 'onehot_stats' holds the resolution as a one-hot slot "
                     "(plus its value among the group stats); 'resolution_free' only as numbers (r, r^2, log r and "
                     "depth/expand x r^2), so an unseen resolution is a value between or beyond trained ones.")

    def plot(path: Path) -> None:
        fig, ax = new_figure(figsize=(6, 4.5))
        names = [r["predictor"] for r in rows]
        taus = [r["kendall_tau"] for r in rows]
        ax.barh(names, taus, color=["C0" if r["time_s"] is not None else "C3" for r in rows])
        ax.set_xlabel("Kendall tau on measured top-1")
        ax.set_xlim(0, 1)
        ax.set_title(f"Accuracy predictors on {Path(str(ds.path)).stem} (blue: {folds}-fold CV, red: transfer)",
                     fontsize=8)
        ax.grid(alpha=0.3, axis="x")
        save_figure(fig, path)

    return TableResult("predictor_quality", "Table 3: accuracy predictor quality", columns, rows, notes, plot)
