"""Table ``linas``: measured hypervolume vs number of real evaluations on a trained tiny supernet.

Four routes, each spending a budget of real evaluations (BN recalibration + held-out top-1 of a subnet):

* ``linas``: :class:`search.algorithms.linas.LINAS` (predictor refit each iteration, chosen by out-of-fold error among
  ``linas_predictors``; next batch by expected hypervolume improvement over the measured front);
* ``one_shot``: half the budget on an accuracy dataset (the builder's plan: max, min, uniform and MACs-stratified
  archs), one predictor fit, NSGA-II on its predictions, the other half measuring archs spread along the predicted
  front (the project's one-shot route with the same number of real evaluations);
* ``nsga2_real``: the lean NSGA-II with real evaluations as its accuracy (small population);
* ``random``: uniformly sampled archs.

The hypervolume is of each route's *measured* front, in the runner's objectives (1 - top1, latency), against one
reference point (the worst of the smallest/largest arch at every resolution, +5 %). Routes run once per seed to the
largest budget; a smaller budget reads the front of the first ``b`` archs measured (the loops are sequential, so
this is the run with budget ``b``), except ``one_shot``, whose split depends on the budget: it runs per budget.
Every real evaluation is cached per arch in one CSV shared by the routes (an arch's measured top-1 depends only on
the checkpoint and the data), so repeated archs cost nothing; each route still counts its own distinct archs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from paper_tables.common import Column, TableResult, new_figure, quiet_search, save_figure
from search.pareto import extreme_archs

__all__ = ["build", "hv_curve"]

METHODS = ("linas", "one_shot", "nsga2_real", "random")


def train_ckpt(cfg: dict[str, Any], out_dir: Path) -> Path:
    """Train the tiny supernet as configured (``train`` overrides of configs/train.yaml) when no ckpt is given."""
    from hydra import compose

    from supernets.compose import hydra_on
    from supernets.training import train

    run = out_dir / "train"
    with hydra_on():  # inside scripts/reproduce.py's own Hydra app too
        tcfg = compose("train", overrides=[*list(cfg.get("train") or []), f"paths.output_dir={run}", "logger=none",
                                           "callbacks.lr_monitor=null", "callbacks.progress_bar=null",
                                           "trainer.enable_progress_bar=false"])
    train(tcfg)
    found = sorted(run.rglob("phase_*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"training wrote no checkpoint under {run}")
    return found[-1]


def hv_curve(X: np.ndarray, F: np.ndarray, ref: np.ndarray, budgets: list[int]) -> list[float]:
    """Hypervolume of the front of the first ``b`` rows (evaluation order) for each budget ``b``."""
    from search.pareto import hypervolume, non_dominated

    out = []
    for b in budgets:
        f = F[: min(b, len(F))]
        out.append(hypervolume(f[non_dominated(f)], ref) if len(f) else 0.0)
    return out


def _store(run_dir: Path, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Encoded archs and objectives (1 - top1, latency) of a run, in evaluation order (its saved state)."""
    from search.state import STATE_FILE, load_state

    ev, _, _ = load_state(run_dir / STATE_FILE)
    d = [str(v) for v in ev["devices"]].index(device)
    return np.asarray(ev["X"]), np.stack([1.0 - np.asarray(ev["top1"]), np.asarray(ev["lat"])[:, d]], axis=1)


def _one_shot(base: dict, measured, space, b: int, seed: int, cfg: dict, sub: Path, latency) -> np.ndarray:
    """Objectives of the archs the one-shot route measures with budget ``b`` (evaluation order)."""
    from predictors.accuracy.builder import plan_archs
    from search.algorithms.linas import fit_best_predictor, spread_pick

    net = measured.net
    n_data = max(2, b // 2)
    # the builder's plan always holds the smallest and largest arch: reference-point extremes, which no route's
    # front may count (see build), so the plan is drawn two larger and they are dropped
    archs = plan_archs(space, n_data + 2, seed, macs_fn=lambda x: net.macs_params(x)[0])
    ext = {str(a) for a in space.decode(_extremes(space))}
    archs = [a for a in archs if str(a) not in ext][:n_data]
    Xd = space.encode(archs)
    yd = measured.predict(Xd)
    recipes = [dict(p) for p in cfg.get("one_shot_predictors") or [cfg["predictor"]]]
    pred, _ = fit_best_predictor(recipes, space, Xd, yd, seed=seed, supernet=measured.supernet)
    res = quiet_search({**base, "seed": seed, "out_dir": str(sub), "algorithm": dict(cfg["one_shot_search"])},
                       sub / "search.log", accuracy=pred, supernet=net, latency=latency)
    front = res["devices"][base["device"]]["front"]
    keys = {str(a) for a in archs}
    front = front[~front["arch"].isin(keys)].reset_index(drop=True)
    F = np.stack([1.0 - front["top1"].to_numpy(), front["latency_ms"].to_numpy()], axis=1)
    pick = spread_pick(F, np.zeros(len(F), dtype=np.int64), b - n_data)
    Xf = space.encode([space.parse(a) for a in front["arch"].iloc[pick]])
    X = np.concatenate([Xd, Xf])[:b]
    lat = latency[base["device"]].predict(X)
    top1 = measured.predict(X)
    return np.stack([1.0 - top1, lat], axis=1)


def build(cfg: dict[str, Any], out_dir: Path) -> TableResult:
    """Run every route on every seed (``cfg``: configs/reproduce/table/linas.yaml)."""
    from predictors import load_latency_model
    from search.measured import measured_from_checkpoint

    out_dir = Path(out_dir)
    ckpt = Path(cfg["ckpt"]) if cfg.get("ckpt") else train_ckpt(cfg, out_dir)
    device = str(cfg["device"])
    budgets = sorted(int(b) for b in cfg["budgets"])
    seeds = [int(s) for s in cfg["seeds"]]
    measured = measured_from_checkpoint(ckpt, calib_batches=int(cfg["calib_batches"]),
                                        eval_batches=cfg.get("eval_batches"), cache=out_dir / "measured.csv",
                                        data=cfg.get("data"))
    net, space = measured.net, measured.space
    latency = {device: load_latency_model(device, measured.supernet)}
    # overwrite: a rebuild in the same out_dir starts every route afresh (its measurements stay in measured.csv)
    base = {"supernet": measured.supernet, "device": device, "probe": 0, "plot": False, "progress": False,
            "checkpoint_every": 0, "overwrite": True}
    models = {"accuracy": measured, "supernet": net, "latency": latency}
    top = budgets[-1]
    # Every runner measures the smallest and largest arch at each resolution first (its reference point). They are
    # not the route's choice and, on a trained supernet, sit on the front: counted, they would hand every route
    # the same front. So a route's budget b is the b archs measured *after* them, and its front is read from those.
    n_ext = len(_extremes(space))
    run = [str(m) for m in cfg.get("methods") or METHODS]
    if unknown := sorted(set(run) - set(METHODS)):
        raise ValueError(f"table=linas methods: {unknown} unknown; allowed {list(METHODS)}")
    algos = {
        "linas": {**dict(cfg["linas"]), "name": "linas", "n_evals": top + n_ext,
                  "_target_": "search.algorithms.linas.LINAS",
                  "predictor": [dict(p) for p in cfg.get("linas_predictors") or [cfg["predictor"]]]},
        "nsga2_real": {"name": "nsga2", "pop_size": int(cfg["nsga2_pop"]), "n_gen": -(-top // int(cfg["nsga2_pop"]))},
        "random": {"name": "random", "batch_size": 10, "n_gen": top, "max_evals": top},
    }
    curves: dict[str, list[list[float]]] = {m: [] for m in METHODS}
    n_used: dict[str, list[int]] = {m: [] for m in METHODS}
    ref = _reference(net, measured, latency, device)
    for seed in seeds:
        for m, acfg in algos.items():
            if m not in run:
                continue
            sub = out_dir / "runs" / f"{m}_seed{seed}"
            quiet_search({**base, "seed": seed, "out_dir": str(sub), "algorithm": acfg}, sub / "search.log", **models)
            X, F = _store(sub, device)
            if not (space.normalize(X[:n_ext]) == _extremes(space)).all():
                raise RuntimeError(f"run {sub} did not measure the reference extremes first")
            # the loops ran past the budget: their first `top` archs (after the extremes) are the run with that budget
            X, F = X[n_ext:n_ext + top], F[n_ext:n_ext + top]
            curves[m].append(hv_curve(X, F, ref, budgets))
            n_used[m].append(len(F))
        oc = []
        for b in budgets if "one_shot" in run else []:
            F = _one_shot(base, measured, space, b, seed, cfg, out_dir / "runs" / f"one_shot_b{b}_seed{seed}", latency)
            oc.append(hv_curve(np.zeros(len(F)), F, ref, [b])[0])
        if oc:
            curves["one_shot"].append(oc)
            n_used["one_shot"].append(top)
    rows = []
    for m in (m for m in METHODS if m in run):
        a = np.array(curves[m])
        for j, b in enumerate(budgets):
            rows.append({"method": m, "evaluations": b, "hypervolume": float(np.median(a[:, j])),
                         "hv_min": float(a[:, j].min()), "hv_max": float(a[:, j].max()), "seeds": len(seeds)})
    df = pd.DataFrame(rows)
    reach = _evaluations_to_reach(df, budgets, [m for m in METHODS if m in run])
    columns = [Column("method", "method"), Column("evaluations", "evaluations"),
               Column("hypervolume", "hypervolume (median)", ".5f"), Column("hv_min", "min", ".5f"),
               Column("hv_max", "max", ".5f"), Column("seeds", "seeds")]
    wins = set(run) == set(METHODS) and all(df[(df.evaluations == b) & (df.method == "linas")].hypervolume.iloc[0]
               > df[(df.evaluations == b) & (df.method != "linas")].hypervolume.max() for b in budgets)
    n_calib = sum(len(y) for _, y in measured.calib)
    n_eval = sum(len(y) for _, y in measured.eval_batches)
    lcfg = algos["linas"]
    notes = [f"Checkpoint {ckpt.name} ({measured.supernet}); device {device} (latency table); real evaluation = BN "
             f"recalibration on {n_calib} training images (seeded, the same for every route) + top-1 on {n_eval} "
             "held-out images; one evaluator object and one cache for every route.",
             f"LINAS: {lcfg.get('n_init')} ladder archs, then batches of {lcfg.get('batch_size')} by "
             f"{lcfg.get('select', 'hvi')} (uncertainty floor {lcfg.get('noise', 0.01)}), predictor chosen per "
             f"iteration by 5-fold error among {[p['kind'] for p in lcfg['predictor']]}; one-shot: "
             f"{[p['kind'] for p in cfg.get('one_shot_predictors') or [cfg['predictor']]]} (the best by 5-fold error) on half "
             "the budget, NSGA-II on it, the other half spread along its front; "
             f"NSGA-II on real evaluations: population {cfg['nsga2_pop']}.",
             f"Hypervolume of (1 - measured top-1, latency ms) against {np.round(ref, 4).tolist()}; median, min and "
             f"max over seeds {seeds}. {len(measured.values)} distinct archs measured in all ({measured.n_measured} "
             "in this run, the rest from the cache).",
             f"Budgets count the archs each route chose: the {n_ext} reference-point extremes (smallest and largest "
             "arch at every resolution), which every runner measures first, are left out of its front and its count "
             "(LINAS's predictor does learn from them; the one-shot route's plan is drawn without them).",
             f"LINAS beats the other three at every budget: {'yes' if wins else 'NO'}.",
             "Evaluations needed to reach another route's hypervolume at the largest budget (median over seeds; "
             "'>' = not reached): " + "; ".join(reach)]

    def plot(path: Path) -> None:
        fig, ax = new_figure(figsize=(6, 4))
        for k, m in enumerate(m for m in METHODS if m in run):
            s = df[df.method == m]
            ax.plot(s.evaluations, s.hypervolume, "o-", c=f"C{k}", label=m)
            ax.fill_between(s.evaluations, s.hv_min, s.hv_max, color=f"C{k}", alpha=0.15)
        ax.set_xlabel("real evaluations")
        ax.set_ylabel("hypervolume of the measured front")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save_figure(fig, path)

    measured.close()
    return TableResult("linas", "Table 7: LINAS, measured hypervolume vs real evaluations", columns, rows, notes, plot,
                       summary={"linas_wins_every_budget": bool(wins)})


def _extremes(space) -> np.ndarray:
    """The smallest and the largest arch at every resolution (what the runner's reference point measures)."""
    return space.normalize(extreme_archs(space))


def _reference(net, measured, latency, device: str) -> np.ndarray:
    """The runner's reference point: worst objectives of the smallest/largest arch at every resolution, +5 %."""
    X = _extremes(net.space)
    F = np.stack([1.0 - measured.predict(X), latency[device].predict(X)], axis=1)
    worst, best = F.max(axis=0), F.min(axis=0)
    return worst + 0.05 * np.maximum(worst - best, 1e-12)


def _evaluations_to_reach(df: pd.DataFrame, budgets: list[int], methods: list[str]) -> list[str]:
    """Per ordered pair (a, b): the smallest budget at which a's median hypervolume reaches b's at the top budget."""
    out = []
    top = budgets[-1]
    final = {m: float(df[(df.method == m) & (df.evaluations == top)].hypervolume.iloc[0]) for m in methods}
    for a in methods:
        bits = []
        for b in methods:
            if a == b:
                continue
            s = df[(df.method == a) & (df.hypervolume >= final[b])]
            bits.append(f"{b}'s {final[b]:.4f}: {int(s.evaluations.min()) if len(s) else f'>{top}'}")
        out.append(f"{a} -> " + ", ".join(bits))
    return out
