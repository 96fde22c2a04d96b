"""Benchmark supernet training on CPU (tiny OFA-MobileNetV3, bundled MNIST 8k/2k).

1. ``default``: the default ``python train.py`` config (progressive shrinking). Prints wall and CPU time and the
   top-1 of the largest / smallest / random subnets after BN recalibration, against the targets
   (<= 600 s on 2 cores, max >= 97 %, min >= 93 %).
2. ``compare``: at equal epochs, progressive shrinking (the default recipe: each phase's largest and smallest
   subnets every step), progressive shrinking as OFA samples it (``experiment=tiny_ps_ofa``: uniform subnets, one
   resolution per step), the sandwich rule (BigNAS) and the max / mid / min subnets each trained alone from
   scratch; prints the top-1 of the three subnets under each strategy and the gap to from-scratch (OFA and BigNAS
   claim parity, target within 0.5 pt). The default budget is twice the default
   schedule's 9 epochs: those are sized for a <= 10 min `python train.py`, not for convergence.

Usage:
    python scripts/bench_training.py                       # both parts
    python scripts/bench_training.py part=default
    python scripts/bench_training.py part=compare threads=1 jobs=2 out=/tmp/bt   # rerun: reuses finished runs
    python scripts/bench_training.py part=compare seeds=[0,1] out=/tmp/bt        # a table per seed, then the mean
    python scripts/bench_training.py --help                                      # every option
Timings are only meaningful on an otherwise idle machine; the script prints the load average it saw.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from supernets.paths import CONFIG_DIR
from supernets.training import train
from supernets.training.checkpoint import load_supernet
from supernets.training.data import create_datamodule
from supernets.training.evaluation import evaluate_archs

TARGETS = {"wall_s": 600.0, "max": 0.97, "min": 0.93}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _run(name: str, overrides: list[str], out: Path) -> tuple[dict, float, float, Path]:
    cfg = _compose([f"paths.output_dir={out / name}", "callbacks.progress_bar.refresh_rate=20", *overrides])
    t0, c0 = time.perf_counter(), _cpu_s()
    metrics = train(cfg)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return metrics, wall, cpu, Path(metrics["checkpoint"])


def _three_archs(space) -> dict:
    """The max, mid (middle choice of every gene) and min archs."""
    x = (space.n_choices - 1) // 2
    return {"max": space.max_arch(), "mid": space.decode(x[None, :])[0], "min": space.min_arch()}


def _fixed_choices(arch) -> str:
    """A Hydra override pinning the sampler to one arch whose genes each take a single value."""
    from supernets.compose import override_value

    pinned = {}
    for g, v in arch.to_dict().items():
        vals = {x for x in (v if isinstance(v, tuple) else (v,)) if x is not None}
        if len(vals) != 1:
            raise ValueError(f"gene {g} of {arch} takes several values; cannot pin it with group choices")
        pinned[g] = [vals.pop()]
    return override_value(pinned)


def _evaluate(ckpt: Path, archs: dict, calib: int) -> dict[str, float]:
    model, meta = load_supernet(ckpt)
    dm = create_datamodule(**meta["data"])
    accs = evaluate_archs(model, list(archs.values()), dm, calib_batches=calib)
    return dict(zip(archs, accs))


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="bench_training")
def main(cfg: DictConfig) -> None:
    args = _args(cfg)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_training_"))
    common = [f"threads={args.threads}"] if args.threads else []
    print(f"output: {out}  cores: {os.cpu_count()}  load average at start: {os.getloadavg()}")

    if args.part in ("default", "all"):
        print("\n== default `python train.py` (progressive shrinking, tiny OFA-MobileNetV3, mnist10k) ==")
        ps_metrics, wall, cpu, _ = _run("default", common, out)
        top = {k: ps_metrics.get(f"val/top1_{k}", float("nan")) for k in ("max", "min", "random")}
        print(f"wall {wall:.0f} s   CPU {cpu:.0f} s   load average now {os.getloadavg()}")
        print(f"top-1 after BN recalibration (2k held-out): max {100 * top['max']:.2f} %  "
              f"min {100 * top['min']:.2f} %  random(mean) {100 * top['random']:.2f} %")
        ok = wall <= TARGETS["wall_s"] and top["max"] >= TARGETS["max"] and top["min"] >= TARGETS["min"]
        print(f"targets (<= {TARGETS['wall_s']:.0f} s, max >= 97 %, min >= 93 %): {'MET' if ok else 'NOT MET'}"
              f"{'' if wall <= TARGETS['wall_s'] else ' (wall time; see load average)'}")

    if args.part in ("compare", "all"):
        default_cfg = _compose(["paths.output_dir=/tmp/unused"])
        epochs = args.epochs or 2 * sum(int(p.epochs) for p in default_cfg.schedule.phases)
        from supernets.registry import create_supernet

        space = create_supernet(default_cfg.supernet.name, resolutions=list(default_cfg.supernet.resolutions)).space
        archs = _three_archs(space)
        seeds = args.seeds
        print(f"\n== equal epochs ({epochs}): progressive shrinking vs sandwich vs from scratch; seeds {seeds} ==")
        strategies = {"ps": "progressive shrinking", "ps_ofa": "PS, OFA's sampling", "sandwich": "sandwich"}
        roles = args.roles
        if not set(roles) <= set(archs):
            raise SystemExit(f"roles takes a subset of {list(archs)} (e.g. roles=[max,min]), got {roles}")
        runs: dict[str, list[str]] = {}
        for seed in seeds:
            tag = _seed_tag(seed)
            sc = [*common, f"seed={seed}"] if seed else common
            if args.ps_ckpt is None:
                runs[f"ps{tag}"] = [*sc, *_phase_epochs(epochs, [])]
            if not args.no_ps_ofa:
                runs[f"ps_ofa{tag}"] = [*sc, "experiment=tiny_ps_ofa",
                                        *_phase_epochs(epochs, ["experiment=tiny_ps_ofa"])]
            if not args.no_sandwich:
                runs[f"sandwich{tag}"] = [*sc, "experiment=tiny_sandwich", f"schedule.phases.0.epochs={epochs}"]
            for role in roles:
                runs[f"scratch_{role}{tag}"] = [*sc, "experiment=tiny_uniform", f"schedule.phases.0.epochs={epochs}",
                                                f"schedule.phases.0.choices={_fixed_choices(archs[role])}"]
        ckpts = _run_all(runs, out, args.jobs)
        if args.ps_ckpt is not None:
            ckpts["ps"] = args.ps_ckpt
        tables = []
        for seed in seeds:
            tag = _seed_tag(seed)
            results = {label: _evaluate(ckpts[f"{key}{tag}"], archs, args.calib_batches)
                       for key, label in strategies.items() if f"{key}{tag}" in ckpts}
            results["from scratch"] = {role: _evaluate(ckpts[f"scratch_{role}{tag}"], {role: archs[role]},
                                                       args.calib_batches)[role]
                                       for role in roles if f"scratch_{role}{tag}" in ckpts}
            tables.append(results)
            _print_comparison(results, f"seed {seed}")
        if len(tables) > 1:
            mean = {name: {r: float(np.mean([t[name][r] for t in tables])) for r in tables[0][name]}
                    for name in tables[0] if all(name in t for t in tables)}
            _print_comparison(mean, f"mean of {len(tables)} seeds")
        for role, arch in archs.items():
            print(f"  {role}: {arch}")
    print(f"\nload average at end: {os.getloadavg()}")


def _args(cfg: DictConfig) -> SimpleNamespace:
    """The options, each checked by name (``seeds`` and ``roles`` as lists)."""
    from supernets.config_checks import ConfigError, check_int

    if cfg.part not in ("default", "compare", "all"):
        raise ConfigError(f"part must be one of ['default', 'compare', 'all'], got {cfg.part!r}")
    for key in ("no_sandwich", "no_ps_ofa"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    seeds = [cfg.seeds] if isinstance(cfg.seeds, int) else list(cfg.seeds)
    roles = [cfg.roles] if isinstance(cfg.roles, str) else list(cfg.roles)
    return SimpleNamespace(part=cfg.part, epochs=check_int("epochs", cfg.epochs, min=1, allow_none=True),
                           threads=check_int("threads", cfg.threads, min=1, allow_none=True),
                           calib_batches=check_int("calib_batches", cfg.calib_batches, min=0),
                           seeds=[check_int("seeds", x, min=0) for x in seeds], roles=[str(r) for r in roles],
                           no_sandwich=cfg.no_sandwich, no_ps_ofa=cfg.no_ps_ofa,
                           jobs=check_int("jobs", cfg.jobs, min=1),
                           ps_ckpt=None if cfg.ps_ckpt is None else Path(cfg.ps_ckpt),
                           out=None if cfg.out is None else Path(cfg.out))


def _seed_tag(seed: int) -> str:
    """Suffix of a run's name for its seed; seed 0 keeps the plain names of earlier versions (so reruns reuse them)."""
    return "" if seed == 0 else f"_seed{seed}"


def _print_comparison(results: dict[str, dict[str, float]], title: str) -> None:
    """Top-1 of the max / mid / min subnets per strategy, then each strategy's gap to from-scratch."""
    nan, roles, scratch = float("nan"), ("max", "mid", "min"), results["from scratch"]
    print(f"\n{'strategy':<24}{'max':>9}{'mid':>9}{'min':>9}   (top-1 %, 2k held-out, BN recalibrated; {title})")
    for name, accs in results.items():
        print(f"{name:<24}" + "".join(f"{100 * accs.get(r, nan):>9.2f}" for r in roles))
    for name in [n for n in results if n != "from scratch"]:
        gaps = {r: 100 * (results[name][r] - scratch[r]) for r in roles if r in scratch}
        within = all(g >= -0.5 for g in gaps.values())
        print(f"{name:<24}" + "".join(f"{gaps[r]:>+9.2f}" if r in gaps else f"{'-':>9}" for r in roles) +
              f"   gap to scratch (pt); within 0.5 pt: {'yes' if within else 'no'}")


def _run_job(name: str, overrides: list[str], out: Path) -> tuple[str, Path, float]:
    _, wall, _, ckpt = _run(name, overrides, out)
    (out / name / "finished.txt").write_text(f"{ckpt}\n{' '.join(overrides)}\n")
    return name, ckpt, wall


def _finished(out: Path, name: str, overrides: list[str]) -> Path | None:
    """The checkpoint of a run of ``out`` that finished with these same overrides (so a rerun resumes)."""
    marker = out / name / "finished.txt"
    if not marker.is_file():
        return None
    ckpt, ov = [*marker.read_text().splitlines(), "", ""][:2]
    return Path(ckpt) if ov == " ".join(overrides) and Path(ckpt).is_file() else None


def _run_all(runs: dict[str, list[str]], out: Path, jobs: int) -> dict[str, Path]:
    """Train every configuration (``jobs`` at a time, in spawned processes); returns their last checkpoints."""
    ckpts = {}
    for name in list(runs):
        done = _finished(out, name, runs[name])
        if done is not None:
            ckpts[name] = done
            print(f"  {name}: reusing the finished run in {out / name}", flush=True)
            runs = {k: v for k, v in runs.items() if k != name}
    if jobs <= 1:
        for name, ov in runs.items():
            _, ckpts[name], wall = _run_job(name, ov, out)
            print(f"  {name} trained in {wall:.0f} s", flush=True)
        return ckpts
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_run_job, name, ov, out) for name, ov in runs.items()]
        for fut in as_completed(futures):
            name, ckpt, wall = fut.result()
            ckpts[name] = ckpt
            print(f"  {name} trained in {wall:.0f} s (parallel jobs: {jobs})", flush=True)
    return ckpts


def _phase_epochs(total: int, overrides: list[str]) -> list[str]:
    """Overrides scaling the phase epochs of the schedule these overrides select to ``total`` in all."""
    cfg = _compose(["paths.output_dir=/tmp/unused", *overrides])
    return [f"schedule.phases.{i}.epochs={e}" for i, e in enumerate(_split(total, cfg))]


def _split(total: int, cfg) -> list[int]:
    """Scale a schedule's phase epochs to ``total`` (each phase keeps at least one epoch)."""
    base = [int(p.epochs) for p in cfg.schedule.phases]
    if total < len(base):
        raise SystemExit(f"epochs must be >= {len(base)} (one per progressive-shrinking phase), got {total}")
    scaled = [max(1, round(e * total / sum(base))) for e in base]
    while sum(scaled) > total:  # rounding up overshot: trim the longest phase, never one down to 0 epochs
        scaled[int(np.argmax(scaled))] -= 1
    scaled[0] += total - sum(scaled)
    return scaled


if __name__ == "__main__":
    main()
