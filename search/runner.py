"""``run(cfg)``: the search behind ``search.py``.

For each device in ``cfg.device`` (one name or a list) it runs the configured algorithm on that device's
objectives, sharing one evaluator (an arch's accuracy is predicted once for all devices and every
evaluation carries every device's latency). Each device's front is read from every arch evaluated in
the run, so ``pareto.csv`` holds only archs no evaluated arch dominates. Outputs go to
``<out_dir>/<device>/``; the state is saved atomically every ``checkpoint_every`` generations and
``resume=true`` continues from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from predictors.base import ArchModel
from search.algorithms.base import SearchAlgorithm, SearchContext
from search.algorithms.optuna_search import space_choices
from search.components import build_algorithm, build_devices, load_components, predictor_name
from search.config_check import check_devices, check_search_config
from search.evaluator import ArchEvaluator
from search.objectives import DeviceObjectives, latency_values
from search.operators import gene_layout
from search.pareto import ParetoArchive, extreme_archs, hypervolume, reference_point
from search.problem import ArchProblem
from search.report import published_reference, summary_table, write_device_outputs
from search.state import STATE_FILE, exclusive_run_dir, load_state, save_state

__all__ = ["algorithm_label", "from_hydra", "run", "run_dir"]

log = logging.getLogger(__name__)

def _search_config(cfg: Any) -> dict[str, Any]:
    """A search config as a plain dict over what ``configs/search.yaml`` composes to (Hydra's compose API: a
    hand-built ``{"device": "note10", ...}`` gets the same defaults ``search.py`` would)."""
    from omegaconf import DictConfig, OmegaConf

    from supernets.compose import compose_config

    if isinstance(cfg, DictConfig):  # without the hydra node (present when composed by hand)
        cfg = {str(k): OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
               for k, v in cfg.items() if k != "hydra"}
    if not isinstance(cfg, Mapping):
        raise TypeError(f"search config must be a mapping, got {type(cfg).__name__}")
    out = compose_config("search")
    out.update(cfg)
    if out.get("predictor_path"):
        out["predictor"] = out["predictor_path"]
    return out


def from_hydra(cfg: Any) -> dict[str, Any]:
    """The config ``search.py`` received, as :func:`run` takes it. Hydra composed every selected device under its
    own name (``device=[pixel,note10]`` -> ``device: {pixel: ..., note10: ...}``) and the predictor and algorithm
    with their ``_target_``: nothing to look up again."""
    return _search_config(cfg)


def run_dir(cfg: Mapping[str, Any], default: Path | None = None) -> Path:
    """``cfg.out_dir`` if set, else Hydra's run directory when Hydra runs, else ``default`` (the cwd)."""
    if cfg.get("out_dir"):
        return Path(cfg["out_dir"])
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    return Path.cwd() if default is None else default


def _out_dir(cfg: Mapping[str, Any]) -> Path:
    return run_dir(cfg)


def _objective_names(objectives: Any) -> list[str]:
    if isinstance(objectives, Mapping):
        objectives = objectives.get("names")
    if isinstance(objectives, str):
        objectives = [objectives]
    if not objectives:
        raise ValueError("objectives.names must list at least one of top1, latency_ms, macs, params, size_mb")
    return [str(n) for n in objectives]


class _DeviceRun:
    """Bookkeeping of one device's search: archive, hypervolume history, progress, checkpoints."""

    def __init__(self, runner: _Run, dev_i: int, obj: DeviceObjectives, algorithm: SearchAlgorithm) -> None:
        self.r = runner
        self.dev_i = dev_i
        self.obj = obj
        self.algorithm = algorithm
        self.archive = ParetoArchive(runner.ev, obj)
        self.history: list[dict[str, Any]] = []
        self.n_evals = 0
        self.t0 = time.perf_counter()
        self.pbar = None
        self.ctx: SearchContext | None = None
        self.ref = np.zeros(obj.n_obj)
        self.last_gen, self.last_state_fn = -1, None

    def observe(self, ids: np.ndarray) -> None:
        self.n_evals += len(ids)
        self.archive.update(ids)

    def end_generation(self, gen: int, state_fn) -> None:
        self.last_gen, self.last_state_fn = gen, state_fn
        F = self.archive.F()
        hv = hypervolume(F, self.ref) if len(F) else 0.0
        best = float(self.r.ev.top1[self.archive.ids].max()) if len(self.archive.ids) else float("nan")
        if self.history and self.history[-1]["gen"] >= gen:  # a replayed generation replaces its row
            self.history = [h for h in self.history if h["gen"] < gen]
        self.history.append({"gen": gen, "n_evals": self.n_evals, "n_evaluated_total": self.r.ev.n,
                             "hypervolume": hv, "front_size": len(self.archive.ids), "best_top1": best,
                             "time_s": time.perf_counter() - self.t0})
        if self.pbar is not None:
            self.pbar.update(1)
            if gen % 10 == 0:
                self.pbar.set_postfix(hv=f"{hv:.4g}", front=len(self.archive.ids), evals=self.n_evals)
        every = int(self.r.cfg.get("checkpoint_every") or 0)
        if every > 0 and gen % every == 0 and gen > 0:
            self.r.checkpoint(self, gen, state_fn, done=False)


class _Run:
    def __init__(self, cfg: dict[str, Any], ev: ArchEvaluator, out: Path, fingerprint: dict[str, Any]) -> None:
        self.cfg = cfg
        self.ev = ev
        self.out = out
        self.fingerprint = fingerprint
        self.meta: dict[str, Any] = {"fingerprint": fingerprint, "devices": {}}
        self.arrays: dict[str, dict[str, np.ndarray]] = {}

    def checkpoint(self, d: _DeviceRun, gen: int, state_fn, *, done: bool) -> None:
        scalars: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        if state_fn is not None:
            for k, v in state_fn().items():
                (arrays if isinstance(v, np.ndarray) else scalars)[k] = v
        if d.ctx is not None:
            arrays["seen"] = np.fromiter(sorted(d.ctx.seen), dtype=np.int64)
        self.arrays[d.obj.device] = arrays
        self.meta["devices"][d.obj.device] = {"gen": gen, "done": done, "exact": state_fn is not None,
                                              "scalars": scalars, "history": d.history, "n_evals": d.n_evals}
        save_state(self.out / STATE_FILE, evaluator=self.ev.state(), meta=self.meta, arrays=self.arrays)


def _probe(ev: ArchEvaluator, obj: DeviceObjectives, rng: np.random.Generator, n: int) -> tuple[np.ndarray, str | None]:
    """Evaluate the extreme archs and ``n`` random ones; if one constraint alone is violated by all of
    them, return a message saying which and by how much (the search would only spin)."""
    space = ev.space
    ids = ev.evaluate(np.concatenate([extreme_archs(space), space.sample_encoded(rng, n)]))
    if obj.needs_macs_params:
        ev.ensure_macs_params(ids, None)
    if not obj.constraints:
        return ids, None
    G = obj.G(ev, ids)
    for j, (name, limit) in enumerate(obj.constraints.items()):
        if (G[:, j] > 0).all():
            v = obj.values(ev, ids, name)
            best = float(v.max() if name == "top1" else v.min())
            what = "highest" if name == "top1" else "lowest"
            return ids, (f"constraint {name} {'>=' if name == 'top1' else '<='} {limit:g} cannot be met on device "
                         f"{obj.device!r}: the {what} {name} among {len(ids)} probed archs (the smallest and largest "
                         f"arch at every resolution and {n} random ones) is {best:.4g}")
    return ids, None


def run(cfg: Any, *, accuracy: ArchModel | None = None, latency: Mapping[str, ArchModel] | None = None,
        supernet: Any | None = None) -> dict[str, Any]:
    """Run the search described by ``cfg`` (``configs/search.yaml`` or a dict over :data:`DEFAULTS`).

    Models may be injected (``accuracy``, ``latency`` per device name, ``supernet``) instead of loaded by
    name. Returns per device: status (``ok`` or ``infeasible``), front size, hypervolume, the best arch,
    paths; an unmeetable constraint gives ``infeasible`` with a message and the closest arch, promptly.
    """
    from threadpoolctl import threadpool_limits

    cfg = check_search_config(_search_config(cfg))
    # A generation is a few hundred rows: one BLAS thread is fastest, and on a shared machine OpenBLAS's
    # spinning worker threads made the predictor's matmuls ~50x slower (measured: 190 ms vs 4 ms).
    with threadpool_limits(limits=int(cfg.get("blas_threads") or 1), user_api="blas"), \
            exclusive_run_dir(_out_dir(cfg), keep_state=bool(cfg.get("resume") or cfg.get("overwrite"))):
        return _run(cfg, accuracy=accuracy, latency=latency, supernet=supernet)


def _run(cfg: dict[str, Any], *, accuracy: ArchModel | None, latency: Mapping[str, ArchModel] | None,
         supernet: Any | None) -> dict[str, Any]:
    t_start = time.perf_counter()
    built = build_devices(cfg["device"])
    devices = list(built)
    check_devices(built)
    names = _objective_names(cfg.get("objectives"))
    constraints = {k: v for k, v in dict(cfg.get("constraints") or {}).items() if v is not None}
    objs = [DeviceObjectives.build(d, names, constraints) for d in devices]  # validates before loading models
    acfg = cfg.get("algorithm") or "nsga2"
    algo0 = build_algorithm(acfg)  # a bad algorithm config fails before any model loads
    measures = bool(getattr(algo0, "measures_accuracy", False))
    if measures and accuracy is None:  # real evaluations in the loop: the accuracy model measures ckpt's subnets
        out0 = _out_dir(cfg)
        out0.mkdir(parents=True, exist_ok=True)
        accuracy = algo0.real_accuracy(cfg.get("ckpt"), str(out0 / "measured.csv"))
        supernet = accuracy.net if supernet is None else supernet
    comps = load_components(cfg, accuracy=accuracy, latency=latency, supernet=supernet,
                            need_latency=any(o.needs_latency for o in objs), devices=built)
    export_cfg = dict(cfg.get("export") or {})
    if int(export_cfg.get("top_k") or 0) > 0:  # an export that would be refused fails before the search
        _calibration_data(comps, int(export_cfg.get("calib_batches", 10) or 0), (cfg.get("data") or {}).get("root"))
    t_loaded = time.perf_counter()  # the summary's "search" time leaves out loading the models
    cpu_loaded = time.process_time()  # and the CPU time this process spent on it (less sensitive to a busy machine)
    need_mp = any(o.needs_macs_params for o in objs)
    mp_fn = comps.macs_params()
    if need_mp and mp_fn is None:
        raise ValueError(f"objectives/constraints use macs or params but supernet {comps.supernet_name!r} "
                         "offers no macs_params(encoded)")
    size_fn = None
    if any(o.needs_size for o in objs):
        from supernets.model_size import model_size_fn

        size_fn = model_size_fn(comps.supernet)
        if size_fn is None:
            raise ValueError(f"objectives/constraints use size_mb but supernet {comps.supernet_name!r} has no "
                             "measurable layers (latency_layers()) to price its weights by")
    ev = ArchEvaluator(comps.space, comps.accuracy, comps.latency, macs_params=mp_fn if need_mp else None,
                       model_size=size_fn)
    out = _out_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    seed = int(cfg.get("seed", 0))
    fingerprint = {"supernet": comps.supernet_name, "space": comps.space.name, "n_columns": comps.space.n_columns,
                   # the choices too: the saved store's encoded rows mean other archs under other choices
                   "choices": space_choices(comps.space),
                   "devices": devices, "objectives": names, "constraints": constraints, "seed": seed,
                   # n_gen / n_trials may grow on resume: a longer run continues the same search
                   "algorithm": _algorithm_fingerprint(acfg),
                   # which models, not only their classes: the saved predictions are theirs
                   "predictor": _model_identity(comps.accuracy, None if accuracy is not None else
                                               _predictor_id(cfg.get("predictor"))),
                   "latency": {d: _model_identity(m) for d, m in comps.latency.items()}}
    runner = _Run(cfg, ev, out, fingerprint)
    saved_meta: dict[str, Any] = {}
    saved_arrays: dict[str, dict[str, np.ndarray]] = {}
    state_path = out / STATE_FILE
    if cfg.get("resume"):
        if state_path.is_file():
            ev_state, saved_meta, saved_arrays = load_state(state_path)
            if not _same_search(saved_meta.get("fingerprint"), _jsonable(fingerprint)):
                raise ValueError(f"resume=true but {state_path} belongs to another search "
                                 f"({_fingerprint_diff(saved_meta.get('fingerprint'), _jsonable(fingerprint))}); "
                                 "use another out_dir or drop resume=true")
            ev.load_state(ev_state)
            runner.meta = {**saved_meta, "fingerprint": fingerprint}  # an older state is saved again in full
            runner.arrays = saved_arrays
            print(f"resuming from {state_path}: {ev.n} archs already evaluated")
        else:
            print(f"resume=true but {state_path} does not exist: starting a new search")

    results: dict[str, Any] = {}
    dev_runs: list[_DeviceRun] = []
    for dev_i, obj in enumerate(objs):
        algorithm = build_algorithm(acfg)
        d = _DeviceRun(runner, dev_i, obj, algorithm)
        dev_runs.append(d)
        saved = saved_meta.get("devices", {}).get(obj.device)
        rng = np.random.default_rng([seed, dev_i])
        problem_msg = None
        if not measures:  # a probe of hundreds of archs is cheap on predictors, not on real evaluations
            _, problem_msg = _probe(ev, obj, np.random.default_rng([seed, dev_i, 1]), int(cfg.get("probe", 512)))
        d.archive.update(np.arange(ev.n))  # archs evaluated so far (probe, other devices) count for this device
        d.ref = reference_point(ev, obj)
        if problem_msg is not None:
            results[obj.device] = _infeasible(ev, obj, d.archive, problem_msg, out)
            continue
        problem = ArchProblem(ev, obj, observers=[d.observe])
        resume_state = None
        resume_how = None
        # only a search that already reached this budget is skipped: a bigger n_gen / n_trials goes on
        if saved and saved.get("done") and int(saved["gen"]) >= algorithm.total_generations:
            d.history, d.n_evals = saved["history"], saved["n_evals"]
            results[obj.device] = {"status": "ok", "resumed": True, "resume": "complete"}
            continue
        if saved and not saved.get("done") and int(saved["gen"]) > algorithm.total_generations:
            # continuing would run no generation and save the state as "generation -1": the next resume would
            # start from 0. Refused rather than cut: the saved generations stay as they are.
            raise ValueError(f"resume=true: {state_path} holds generation {saved['gen']} of device {obj.device!r}, "
                             f"more than this run's {algorithm.total_generations} (algorithm.n_gen / n_trials); "
                             f"pass at least algorithm.n_gen={saved['gen']} to continue it (the state is unchanged)")
        if saved and saved.get("exact") and algorithm.exact_resume:
            resume_state = {**saved["scalars"], **saved_arrays.get(obj.device, {})}
            d.history, d.n_evals = saved["history"], saved["n_evals"]
            resume_how = "continued"
        elif saved:
            resume_how = "rerun"
            note = ""
            if getattr(algorithm, "storage", None) is not None:
                note = (f"; the study in {algorithm.storage} keeps its earlier trials, and this run adds "
                        f"{getattr(algorithm, 'n_trials', '?')} more")
            print(f"resume: {algorithm.name} on {obj.device} cannot continue its saved loop (generation "
                  f"{saved['gen']}): rerunning its {algorithm.total_generations + 1} generations from the start, "
                  f"where the archs evaluated before are cache hits{note}")
        ctx = SearchContext(problem=problem, layout=gene_layout(ev.space), rng=rng, seed=seed + dev_i,
                            end_generation=d.end_generation, resume_state=resume_state,
                            options={"study_name": f"oncenas-{comps.supernet_name}-{obj.device}-{'-'.join(names)}"})
        if resume_state is not None and "seen" in resume_state:
            ctx.seen.update(np.asarray(resume_state["seen"]).tolist())
        d.ctx = ctx
        d.t0 = time.perf_counter()
        from tqdm.auto import tqdm

        start = (int(resume_state["gen"]) + 1) if resume_state else 0
        with tqdm(total=algorithm.total_generations + 1, initial=start, desc=f"search {obj.device}",
                  disable=not cfg.get("progress", True), leave=False) as pbar:
            d.pbar = pbar
            algorithm.run(ctx)
            d.pbar = None
        runner.checkpoint(d, d.last_gen, d.last_state_fn, done=True)
        results[obj.device] = {"status": "ok", "time_s": time.perf_counter() - d.t0,
                               "n_study_trials": ctx.options.get("n_study_trials"), "resume": resume_how}

    # every device's front from every arch evaluated in the run
    t_search = time.perf_counter() - t_loaded
    cpu_search = time.process_time() - cpu_loaded
    refs_rng = np.random.default_rng(seed)
    for d in dev_runs:
        obj = d.obj
        res = results[obj.device]
        if res.get("status") == "infeasible":
            continue
        d.archive.update(np.arange(ev.n))
        if len(d.archive.ids) == 0:
            msg = (f"no evaluated arch meets {obj.describe_constraints()} on device {obj.device!r} "
                   f"after {d.n_evals} evaluations")
            results[obj.device] = _infeasible(ev, obj, d.archive, msg, out)
            continue
        ids = d.archive.sorted_ids()
        ev.ensure_macs_params(ids, mp_fn)
        refs = published_reference(obj.device, comps.accuracy, comps.space, comps.supernet_name) if cfg.get("plot", True) else []
        title = f"{comps.supernet_name} on {obj.device}: {algorithm_label(acfg)}, {ev.n} archs evaluated"
        pred = cfg.get("predictor")
        meta = {"supernet": comps.supernet_name, "predictor": predictor_name(pred) if pred else str(pred), "seed": seed,
                "algorithm": fingerprint["algorithm"], "n_evaluated": ev.n, "title": title,
                "hypervolume": hypervolume(d.archive.F(), d.ref), "reference_point": d.ref.tolist()}
        df = write_device_outputs(out / obj.device, ev, obj, ids, d.history, meta, refs=refs,
                                  plot=bool(cfg.get("plot", True)), rng=refs_rng)
        extra = getattr(d.algorithm, "extra_columns", None)
        if extra is not None:  # e.g. LINAS: the predicted top-1 beside each measured one
            from search.report import write_atomic

            for col, vals in extra(list(df["arch"])).items():
                df[col] = vals
            write_atomic(out / obj.device / "pareto.csv", df.to_csv(index=False, float_format="%.6g"))
        res.update({"front_size": len(df), "hypervolume": meta["hypervolume"], "n_evals": d.n_evals,
                    "pareto_csv": str(out / obj.device / "pareto.csv"), "front": df,
                    "best": df.loc[df["top1"].idxmax()].to_dict()})
    total = time.perf_counter() - t_start
    _print_summary(results, ev, comps.supernet_name, total, t_search, t_loaded - t_start)
    if int(export_cfg.get("top_k") or 0) > 0:
        _export(results, comps, ev, export_cfg, out, cfg)
    # search_s: the summary line's "search X s"
    return {"out_dir": str(out), "devices": results, "n_evaluated": ev.n, "time_s": total, "search_s": t_search,
            "search_cpu_s": cpu_search}


def algorithm_label(acfg: Any) -> str:
    if isinstance(acfg, str):
        return acfg
    bits = [str(acfg.get("name", "nsga2"))]
    for k in ("pop_size", "n_gen", "n_trials", "sampler"):
        if k in acfg:
            bits.append(f"{k}={acfg[k]}")
    return " ".join(bits)


def _algorithm_fingerprint(acfg: Any) -> Any:
    """What identifies the algorithm's search: its settings, less the budget (``n_gen`` / ``n_trials`` may grow on
    resume) and less how the config builds it (``_target_``; pymoo's ``kind`` repeats its ``name``)."""
    if isinstance(acfg, str):
        return acfg
    return {k: v for k, v in dict(acfg).items() if k not in ("n_gen", "n_trials", "_target_")
            and not (k == "kind" and v == acfg.get("name"))}


def _predictor_id(predictor: Any) -> str:
    """The configured predictor's name, or its artefact path made absolute (the same file from any cwd)."""
    name = predictor_name(predictor)
    return str(Path(name).resolve()) if Path(name).is_file() else name


def _model_identity(model: ArchModel, configured: str | None = None) -> str:
    """What tells two models apart: class, the configured name/path, and the model's own name/path/device."""
    from search.subspace import SubspaceModel

    inner = model.model if isinstance(model, SubspaceModel) else model  # the adapter is not the model
    bits = [type(inner).__name__]
    if configured:
        bits.append(configured)
    for attr in ("name", "path", "device"):
        v = getattr(inner, attr, None)
        if isinstance(v, (str, Path)) and str(v):
            bits.append(f"{attr}={v}")
    return " ".join(bits)


def _same_search(saved: Any, now: dict[str, Any]) -> bool:
    """Whether a saved state's fingerprint is this search's. A state saved before fingerprints held the space's
    choices and the models' identities (they held the predictor's class only) is compared on what it holds."""
    if not isinstance(saved, Mapping):
        return False
    if "choices" in saved:
        return dict(saved) == now
    older = {k: v for k, v in now.items() if k in saved}
    if "predictor" in older:
        older["predictor"] = str(now["predictor"]).split()[0]  # the class name leads the identity
    return dict(saved) == older


def _fingerprint_diff(saved: Any, now: dict[str, Any], width: int = 200) -> str:
    """Which fingerprint entries differ, saved vs now (each shortened to ``width`` characters)."""
    def short(v: Any) -> str:
        t = repr(v)
        return t if len(t) <= width else t[: width - 3] + "..."

    if not isinstance(saved, Mapping):
        return f"its fingerprint is {short(saved)}"
    out = []
    for k in dict.fromkeys([*saved, *now]):
        a, b = saved.get(k), now.get(k)
        if a == b:
            continue
        if k == "choices" and isinstance(a, Mapping) and isinstance(b, Mapping):
            cols = [c for c in dict.fromkeys([*a, *b]) if a.get(c) != b.get(c)]
            out += [f"choices of {c}: saved {short(a.get(c))}, now {short(b.get(c))}" for c in cols[:3]]
        else:
            out.append(f"{k}: saved {short(a)}, now {short(b)}")
    return "; ".join(out)


def _jsonable(o: Any) -> Any:
    import json

    return json.loads(json.dumps(o, default=str))


def _infeasible(ev: ArchEvaluator, obj: DeviceObjectives, archive: ParetoArchive, message: str, out: Path) -> dict:
    closest = None
    if archive.closest is not None:
        j = archive.closest
        closest = {"arch": str(ev.space.decode(ev.encoded([j]))[0]), "top1": float(ev.top1[j]),
                   "latency_ms": float(latency_values(ev, j, obj.device)),
                   "macs": None if np.isnan(ev.macs[j]) else float(ev.macs[j]),
                   "params": None if np.isnan(ev.params[j]) else float(ev.params[j])}
        message += (f"; closest arch: {closest['arch']} (top1 {closest['top1']:.4f}, "
                    f"latency {closest['latency_ms']:.2f} ms)")
    log.warning(message)
    import json

    from search.report import write_atomic

    write_atomic(out / obj.device / "infeasible.json", json.dumps({"message": message, "closest": closest}, indent=1))
    return {"status": "infeasible", "message": message, "closest": closest, "front_size": 0}


def _print_summary(results: dict[str, Any], ev: ArchEvaluator, supernet: str, total: float, t_search: float,
                   t_load: float = 0.0) -> None:
    lines = [f"\n== search summary: {supernet}, {ev.n} distinct archs evaluated "
             f"({ev.n_requested} requested), load {t_load:.2f} s, search {t_search:.2f} s, total {total:.2f} s =="]
    for dev, res in results.items():
        if res.get("status") == "infeasible":
            lines.append(f"-- {dev}: INFEASIBLE: {res['message']}")
            continue
        b = res["best"]
        lines.append(f"-- {dev}: front of {res['front_size']} archs, hypervolume {res['hypervolume']:.5g}, "
                     f"best top-1 {100 * b['top1']:.2f}% at "
                     + (f"{b['latency_ms']:.2f} ms" if np.isfinite(b["latency_ms"]) else f"{b['macs'] / 1e6:.1f}M MACs")
                     + f" -> {res['pareto_csv']}")
        lines.append(summary_table(res["front"]))
    print("\n".join(lines))


def _calibration_data(comps, n: int, data_root: str | None = None) -> dict[str, Any] | None:
    """The data config to recalibrate exported subnets' BN on: ``data_root`` (``data.root=``, the user's
    ``<class>/*`` image folder) when given, else the checkpoint's own data; None when there is none (or ``n`` is 0).
    A checkpoint converted from OFA's published supernets has no data of its own and needs ``data.root`` (OFA
    recalibrates every subnet before deploying it): refused without."""
    if n <= 0:
        return None
    meta = comps.ckpt_meta or {}
    if data_root:
        r = comps.space.columns[comps.space.group_slices["r"].start].choices if "r" in comps.space.group_names else [224]
        return {"name": "imagefolder", "root": str(data_root), "image_size": int(max(r)), "batch_size": 32,
                "val_fraction": 0.0, "drop_last": False}
    if meta.get("data"):
        return dict(meta["data"])
    if meta.get("bn_calibration_required"):
        raise ValueError(f"ckpt={meta.get('converted_from', 'the checkpoint')} holds OFA's published weights, whose "
                         f"subnets need their BatchNorm recalibrated on your data before export: pass "
                         f"data.root=<folder with <class>/*.jpg images> (or export.calib_batches=0 to export "
                         f"without, at a large accuracy loss)")
    return None


def _calibration_batches(comps, n: int, data_root: str | None = None) -> list | None:
    """``n`` training batches of :func:`_calibration_data` (for BN recalibration of exported subnets)."""
    data_cfg = _calibration_data(comps, n, data_root)
    if data_cfg is None:
        return None
    from supernets.data.modules import create_datamodule

    dm = create_datamodule(**data_cfg)
    dm.setup()
    out = []
    for batch in dm.train_dataloader():
        out.append(batch[0] if isinstance(batch, (list, tuple)) else batch)
        if len(out) >= n:
            break
    return out


def _export_quantized(results: dict[str, Any], comps, export_cfg: dict, out: Path, cfg: dict) -> None:
    """``export.top_k`` of a quant space: each picked arch written as the quantized ONNX ONNX Runtime runs (static
    QDQ, calibrated on the checkpoint's training batches) beside its FP32 twin, its top-1 measured on held-out batches
    and its latency timed in passes, next to the predicted ones (:func:`search.quant_export.export_quantized`)."""
    from predictors.accuracy.builder import cache_batches
    from predictors.accuracy.quant import QuantEvaluator
    from predictors.latency.measure import MeasureSettings
    from search.export import choose_spread
    from search.quant_export import export_quantized, measure_exports
    from supernets.data.modules import create_datamodule
    from supernets.quant import quant_supernet

    n_calib = int(export_cfg.get("calib_batches", 10) or 0)
    data_cfg = _calibration_data(comps, n_calib, (cfg.get("data") or {}).get("root"))
    if data_cfg is None:
        raise ValueError("export.top_k of a quant space (quant=...) quantizes on training batches and measures top-1 "
                         "on held-out ones: pass ckpt=<train.py checkpoint> (its data) or data.root=<images>, and "
                         "export.calib_batches >= 1")
    extra = dict(export_cfg.get("data") or {})
    try:  # un-augmented training images to calibrate on (CIFAR-10 augments by default)
        dm = create_datamodule(**{**data_cfg, "augment": False, **extra})
    except TypeError:  # a data module without augmentation has no such option
        dm = create_datamodule(**{**data_cfg, **extra})
    dm.setup()
    calib = cache_batches(dm.train_dataloader(), n_calib)
    held_out = cache_batches(dm.val_dataloader(), int(export_cfg.get("eval_batches") or 4))
    q = comps.supernet
    # measured over the mixed twin (each arch's FP32 twin is the same base arch at FP32, whatever the search pinned)
    mixed = quant_supernet(q.base, "mixed", resolutions=q.space.base.resolutions)
    evaluator = QuantEvaluator(mixed, calib, held_out)
    settings = MeasureSettings(**dict(export_cfg.get("measure") or {}))
    for dev, res in results.items():
        if res.get("status") != "ok" or "front" not in res:
            continue
        df = res["front"]
        pick = choose_spread(len(df), int(export_cfg["top_k"]))
        archs = [mixed.space.join(*q.space.split(q.space.parse(a))) for a in df["arch"].iloc[pick]]
        lat = comps.latency.get(dev) if q.space == mixed.space else None  # FP32 twins predicted where they're in the space
        recs = export_quantized(evaluator, archs, [df.iloc[i].to_dict() for i in pick], out / dev / "export", settings,
                                measure=False, latency_model=lat)
        measure_exports(recs, settings)
        for rec, i in zip(recs, pick):
            if "size_mb" in df:
                rec["size_predicted_mb"] = float(df["size_mb"].iloc[i])
        res["exported"] = recs
        import json

        from search.report import write_atomic

        write_atomic(out / dev / "export" / "exported.json", json.dumps(recs, indent=1))
        print(f"exported {len(recs)} quantized subnets of the {dev} front to {out / dev / 'export'}, measured:")
        for r in recs:
            print(f"  {Path(r['onnx']).name} {r['policy']:5s} top-1 {100 * r['top1']:.2f}% (predicted "
                  f"{100 * r['top1_predicted']:.2f}%), {r['latency_ms']:.3f} ms (predicted {r['latency_predicted_ms']:.3f}), "
                  f"{r['bytes'] / 1e6:.3f} MB" + (f" (predicted {r['size_predicted_mb']:.3f})" if "size_predicted_mb" in r
                                                   else "") + f"; vs its FP32 twin: speed-up "
                  f"{r['speedup']:.2f}x, {r['size_ratio']:.2f}x smaller" + (
                      f" (twin {r['latency_fp32_ms']:.3f} ms, predicted {r['latency_fp32_predicted_ms']:.3f})"
                      if "latency_fp32_predicted_ms" in r else ""))


def _export(results: dict[str, Any], comps, ev: ArchEvaluator, export_cfg: dict, out: Path, cfg: dict) -> None:
    from search.export import choose_spread, export_subnets

    if hasattr(comps.supernet, "precision"):  # a quant space: quantized ONNX, re-measured
        _export_quantized(results, comps, export_cfg, out, cfg)
        return

    k = int(export_cfg["top_k"])
    weights = f"ckpt {cfg['ckpt']}" if cfg.get("ckpt") else "untrained (no ckpt given)"
    calib = _calibration_batches(comps, int(export_cfg.get("calib_batches", 10) or 0),
                                 (cfg.get("data") or {}).get("root"))
    for dev, res in results.items():
        if res.get("status") != "ok" or "front" not in res:
            continue
        df = res["front"]
        pick = choose_spread(len(df), k)
        archs = [comps.space.parse(a) for a in df["arch"].iloc[pick]]
        recs = export_subnets(comps.supernet, archs, out / dev / "export", onnx=bool(export_cfg.get("onnx", True)),
                              weights=weights, calib=calib, **({"onnx_atol": export_cfg["onnx_atol"]}
                                                               if export_cfg.get("onnx_atol") is not None else {}))
        for rec, i in zip(recs, pick):
            rec.update({"top1": float(df["top1"].iloc[i]), "latency_ms": float(df["latency_ms"].iloc[i])})
        res["exported"] = recs
        import json

        from search.report import write_atomic

        write_atomic(out / dev / "export" / "exported.json", json.dumps(recs, indent=1))
        print(f"exported {len(recs)} subnets of the {dev} front to {out / dev / 'export'} (weights: {weights})")
