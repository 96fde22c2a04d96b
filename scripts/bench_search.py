"""Benchmark: one NSGA-II front vs OFA's constrained evolution per budget vs random search.

Setting of OFA's tutorial: OFA-MobileNetV3 w1.2 at r in {160,176,192,208,224}, OFA's published accuracy
predictor (``predictor=ofa_pretrained``) and the Note10 latency table. OFA's EvolutionFinder finds
0.8171 predicted top-1 at 24.73 ms for a 25 ms budget, one 7-22 s run per budget.

    python scripts/bench_search.py                      # NSGA-II as configs/algorithm/nsga2.yaml (search.py's)
    python scripts/bench_search.py pop_size=100 n_gen=500 budgets=[15,20,25,30,35]   # OFA's budget (50k)
    python scripts/bench_search.py seeds=20             # the default front on 20 seeds vs the known reachable values
    python scripts/bench_search.py seeds=20 baseline=true   # ... and the NSGA-II before screening, same seeds
    python scripts/bench_search.py --help               # every option (configs/scripts/bench_search.yaml)

``seeds=N`` runs ``search.py device=note10``'s default front (its algorithm, resolutions and predictor) on seeds
0..N-1 and prints, per budget, the min / median / max over seeds of the best top-1 under that budget and its gap to
the values long runs reach (``KNOWN_REACHABLE``), then the search times (the ``search X s`` of search.py's summary
line). ``baseline=true`` runs ``BASELINE`` (the defaults before screening) on the same seeds, interleaved, and prints
the time ratio.

Prints: wall time for the whole front, best predicted top-1 under each budget read off that one front (on note10,
against OFA's tutorial figure: the only device with a published reference), hypervolume vs random search with the
same number of evaluations, and OFA-style evolution per budget (time, top-1), with the ratios. Timings on a shared
machine vary; all numbers come from this run.
"""

from __future__ import annotations

import tempfile
import time

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

import search
from search.components import load_components

OFA_RESOLUTIONS = [160, 176, 192, 208, 224]
OFA_25MS_TOP1 = 0.8171
#: the device OFA's tutorial figure was found on (its Note10 latency table)
OFA_REFERENCE_DEVICE = "note10"
#: best predicted top-1 under 15/20/25/30/35 ms on note10 that long runs reach (issue #31; OFA's per-budget runs sit
#: about 0.004 below)
KNOWN_REACHABLE = {15: 0.7880, 20: 0.8079, 25: 0.8222, 30: 0.8308, 35: 0.8368}
#: configs/algorithm/nsga2.yaml before surrogate screening (issue #31): pop 200 x 100 gen, random mating, uniform
#: initial population, mutation 0.03
BASELINE = {"screen": 1, "mating_window": 0, "init": "uniform", "mutation_prob": 0.03, "pop_size": 200, "n_gen": 100}


def default_algorithm(**over) -> dict:
    """search.py's algorithm config (configs/algorithm/nsga2.yaml as composed), with ``over`` set."""
    from supernets.compose import compose_config

    return {**compose_config("search")["algorithm"], **{k: v for k, v in over.items() if v is not None}}


def _opts(cfg: DictConfig) -> dict:
    """The options as plain values, each checked by name."""
    from supernets.config_checks import ConfigError, check_int

    o = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(o, dict)
    for key in ("pop_size", "n_gen", "ofa_gens", "random_batch"):
        if o[key] is not None or key not in ("pop_size", "n_gen"):  # null: the algorithm config's
            o[key] = check_int(key, o[key], min=1 if key in ("pop_size", "random_batch") else 0)
    o["seed"] = check_int("seed", o["seed"], min=0)
    o["seeds"] = check_int("seeds", o["seeds"], min=0)
    if not isinstance(o["baseline"], bool):
        raise ConfigError(f"baseline must be true or false, got {o['baseline']!r}")
    budgets = o["budgets"]
    if not isinstance(budgets, list) or not budgets or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0 for b in budgets):
        raise ConfigError(f"budgets must be a list of latency limits in ms (e.g. budgets=[15,20,25,30,35]), "
                          f"got {budgets!r}")
    if not isinstance(o["device"], str):
        raise ConfigError(f"device must be a device name (configs/device/<name>.yaml), got {o['device']!r}")
    return o


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="bench_search")
def main(cfg: DictConfig) -> dict:
    o = _opts(cfg)
    base = {"device": o["device"], "predictor": "ofa_pretrained", "progress": False, "plot": False,
            "checkpoint_every": 0, "seed": o["seed"], "probe": 512}
    if o["seeds"] == 0:  # OFA's tutorial resolutions; seeds=N: search.py's (restrict_resolutions: 160..224)
        base["supernet"] = {"name": "ofa_mbv3_w12", "resolutions": OFA_RESOLUTIONS}
    t = time.perf_counter()
    comps = load_components(base)
    models = {"accuracy": comps.accuracy, "latency": comps.latency, "supernet": comps.supernet}
    print(f"loaded ofa_mbv3_w12 (r={list(comps.space.resolutions)}), ofa_pretrained and the {o['device']} latency "
          f"model in {time.perf_counter() - t:.2f} s")
    tmp = tempfile.mkdtemp(prefix="bench_search_")
    dev = o["device"]

    def one(name: str, **over) -> dict:
        cfg = {**base, "out_dir": f"{tmp}/{name}", **over}
        res = search.run(cfg, **models)
        return {**res["devices"][dev], "search_s": res["search_s"], "search_cpu_s": res["search_cpu_s"]}

    if o["seeds"] > 0:
        return _seeds(o, one)

    # --- one NSGA-II run: the whole front
    algo = default_algorithm(pop_size=o["pop_size"], n_gen=o["n_gen"])
    nsga = one("nsga2", algorithm=algo)
    front = nsga["front"]
    print(f"\nNSGA-II pop {algo['pop_size']} x {algo['n_gen']} gen: whole front ({len(front)} archs) in "
          f"{nsga['time_s']:.3f} s search time, {nsga['n_evals']} evaluations")
    best = {}
    for b in o["budgets"]:
        ok = front[front["latency_ms"] <= b]
        best[b] = (float(ok["top1"].max()), float(ok.loc[ok["top1"].idxmax(), "latency_ms"])) if len(ok) else (np.nan, np.nan)
        print(f"  budget {b:>3} ms: best predicted top-1 {best[b][0]:.5f} at {best[b][1]:.2f} ms")
    if dev != OFA_REFERENCE_DEVICE:  # a figure found under Note10 latencies says nothing about another device
        print(f"  no published reference for device {dev!r} (OFA's tutorial figure, {OFA_25MS_TOP1} at 25 ms, is "
              f"for {OFA_REFERENCE_DEVICE})")
    elif 25 in best:
        ok25 = best[25][0] >= OFA_25MS_TOP1
        print(f"  25 ms: {best[25][0]:.5f} vs OFA tutorial {OFA_25MS_TOP1} -> {'PASS' if ok25 else 'FAIL'}")

    # --- random search with the same number of evaluations (the last batch is smaller)
    n = int(nsga["n_evals"])
    batch = int(o["random_batch"])
    rnd = one("random", algorithm={"name": "random", "batch_size": batch, "n_gen": max(0, -(-n // batch) - 1),
                                   "max_evals": n})
    hv_n, hv_r = nsga["hypervolume"], rnd["hypervolume"]
    print(f"\nhypervolume (same reference point): NSGA-II {hv_n:.5f} ({n} evaluations) vs random {hv_r:.5f} "
          f"({rnd['n_evals']} evaluations) -> ratio {hv_n / hv_r:.4f} ({'higher' if hv_n > hv_r else 'NOT higher'})")

    # --- OFA-style constrained evolution, one run per budget
    print(f"\nOFA-style evolution (pop 100, parents 0.25, mutation 0.5, prob 0.1, {o['ofa_gens']} gen), one run per budget:")
    ofa_times = []
    for b in o["budgets"]:
        r = one(f"ofa_{b}", constraints={"latency_ms": b},
                algorithm={"name": "ofa_evolution", "pop_size": 100, "n_gen": o["ofa_gens"]})
        if r["status"] != "ok":
            print(f"  budget {b:>3} ms: {r['message']}")
            continue
        ofa_times.append(r["time_s"])
        print(f"  budget {b:>3} ms: top-1 {r['best']['top1']:.5f} at {r['best']['latency_ms']:.2f} ms in "
              f"{r['time_s']:.3f} s   (NSGA-II front: {best[b][0]:.5f}, diff {best[b][0] - r['best']['top1']:+.5f})")
    if ofa_times:
        mean_ofa = float(np.mean(ofa_times))
        print(f"\nspeed: one NSGA-II front {nsga['time_s']:.3f} s vs one OFA run per budget {mean_ofa:.3f} s "
              f"(mean) -> {mean_ofa / nsga['time_s']:.1f}x per budget, {sum(ofa_times) / nsga['time_s']:.1f}x "
              f"for all {len(ofa_times)} budgets")
    print("(timings taken on a shared 2-core machine; ratios are within this run)")
    return {"nsga2": nsga, "random": rnd, "best": best}


def best_under(front, budgets) -> dict:
    """Best top-1 on ``front`` (a pareto.csv frame) under each latency budget (NaN where none fits)."""
    return {b: float(front.loc[front["latency_ms"] <= b, "top1"].max()) if (front["latency_ms"] <= b).any()
            else float("nan") for b in budgets}


def _seeds(o: dict, one) -> dict:
    """search.py's default front on seeds 0..seeds-1 (and, with ``baseline``, the NSGA-II before screening, each seed
    right after): min / median / max best top-1 per budget, and the search times."""
    import os

    runs = {"default": default_algorithm(pop_size=o["pop_size"], n_gen=o["n_gen"])}
    if o["baseline"]:
        runs["baseline"] = default_algorithm(**BASELINE)
    rows: dict[str, list] = {k: [] for k in runs}
    times: dict[str, list] = {k: [] for k in runs}
    cpu: dict[str, list] = {k: [] for k in runs}
    evals: dict[str, int] = {}
    loads = []
    for s in range(o["seeds"]):
        for name, algo in runs.items():
            r = one(f"{name}{s}", seed=s, algorithm=algo)
            rows[name].append(best_under(r["front"], o["budgets"]))
            times[name].append(r["search_s"])
            cpu[name].append(r["search_cpu_s"])
            evals[name] = int(r["n_evals"])
        loads.append(os.getloadavg()[0])
    summary = {}
    for name, algo in runs.items():
        extra = "" if name == "default" else f" ({' '.join(f'{k}={v}' for k, v in BASELINE.items())})"
        print(f"\n{name}: NSGA-II pop {algo['pop_size']} x {algo['n_gen']} gen, screen {algo.get('screen', 1)}{extra} "
              f"on {o['device']}, {o['seeds']} seeds ({evals[name]} evaluations each); load average (1 min) "
              f"min {min(loads):.2f} median {np.median(loads):.2f} max {max(loads):.2f} on {os.cpu_count()} CPUs")
        print("budget   known    min      median   max      gap(min)  gap(median)  seeds >0.004 below")
        summary[name] = {}
        for b in o["budgets"]:
            v = np.array([row[b] for row in rows[name]])
            k = KNOWN_REACHABLE.get(b, float("nan"))
            summary[name][b] = {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}
            print(f"{b:>4} ms  {k:.4f}  {v.min():.5f}  {np.median(v):.5f}  {v.max():.5f}  {v.min() - k:+.5f}  "
                  f"{np.median(v) - k:+.5f}     {int((v < k - 0.004).sum())}")
        t, c = np.array(times[name]), np.array(cpu[name])
        print(f"search time per front (search.py's 'search X s'): min {t.min():.3f} s, median {np.median(t):.3f} s, "
              f"max {t.max():.3f} s (wall time on a shared machine; see the load above); CPU time of the search: "
              f"min {c.min():.3f} s, median {np.median(c):.3f} s, max {c.max():.3f} s")
    if o["baseline"]:
        for what, t in (("wall", times), ("CPU", cpu)):
            ratio = np.array(t["baseline"]) / np.array(t["default"])
            print(f"{'' if what == 'CPU' else chr(10)}search {what} time baseline / default, seed by seed: median "
                  f"{np.median(ratio):.2f}x (min {ratio.min():.2f}x, max {ratio.max():.2f}x)")
    return {"per_budget": summary["default"], "times": times["default"], "cpu_times": cpu["default"], "runs": summary,
            "all_times": times}


if __name__ == "__main__":
    main()
