"""The whole pipeline on the bundled default, each step resumable and runnable alone.

    python scripts/pipeline.py                                   # all steps into outputs/pipeline
    python scripts/pipeline.py out=outputs/pipe steps=[search,measure] top_k=3
    python scripts/pipeline.py --help                            # every option (configs/scripts/pipeline.yaml)
    python scripts/pipeline.py ckpt=<supernet.ckpt> steps=[dataset,predictor,latency,search,measure]
                                   # a supernet trained elsewhere (e.g. table=timm_cifar10's fine-tuned one)

Steps (each is the command it prints, so it can also be run by hand):
  train      python train.py experiment=<supernet's tiny one> -> <out>/train/checkpoints/last.ckpt
  dataset    scripts/build_accuracy_dataset.py ckpt=... n=N    -> <out>/accuracy.csv   (resumes itself)
  predictor  scripts/train_predictor.py dataset=... predictor=P -> <out>/predictor.pth
  latency    probe the host_cpu table (a few whole subnets timed now vs its prediction); when it was built on
             another machine or no longer matches this one, refresh a copy in <out>/latency_tables: recalibrate
             it on recal_k whole subnets timed here (latency=recalibrate, the default; a full rebuild follows if
             the probe still disagrees) or rebuild it (latency=rebuild: scripts/build_latency_table.py ...
             out_dir=<out>/latency_tables/host_cpu/<supernet>); latency=keep serves the table as it is
  search     search.py device=host_cpu ckpt=... predictor_path=... export.top_k=K resume=true
             [latency_tables_dir=<out>/latency_tables]
  measure    ONNX Runtime latency of each exported subnet vs the predicted one, and the exported ONNX model's
             top-1 on the checkpoint's held-out split vs the predicted top-1

A finished step leaves ``<out>/<step>.done``; rerunning the command skips finished steps and resumes the
interrupted one (training from last.ckpt, the dataset from its CSV, the search from its saved state).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from supernets.paths import REPO_ROOT

STEPS = ("train", "dataset", "predictor", "latency", "search", "measure")
# The experiment the train step runs for each CPU-sized supernet (train.py's default schedule, ps_tiny, names
# MobileNetV3 genes such as ks, which OFA-ResNet does not have).
TINY_EXPERIMENTS = {"ofa_mbv3_tiny": "tiny_ps", "ofa_resnet_tiny": "tiny_resnet_ps", "vit_cifar_tiny": "vit_cifar"}
# How the latency step makes the host table this machine's when the probe says it is not (see the docstring).
LATENCY_REFRESH = ("recalibrate", "rebuild", "keep")


def _opts(cfg: DictConfig) -> dict:
    """The options as plain values, each checked by name before the first step (``steps`` as a list)."""
    from supernets.config_checks import ConfigError, check_int, reject_comma

    o = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(o, dict)
    for key in ("n", "top_k"):
        o[key] = check_int(key, o[key], min=1)
    o["probe_k"] = check_int("probe_k", o["probe_k"], min=1)
    o["recal_k"] = check_int("recal_k", o["recal_k"], min=3)  # 3 calibration coefficients
    if o.get("ckpt"):  # a supernet trained elsewhere: the checkpoint names it (and the shape it was trained at)
        from supernets.checkpoints import load_checkpoint

        if "train" in (o["steps"] if isinstance(o["steps"], list) else [o["steps"]]):
            raise ConfigError(f"ckpt={o['ckpt']} is a trained supernet: drop the train step "
                              f"(steps=[dataset,predictor,latency,search,measure])")
        meta = load_checkpoint(o["ckpt"])["oncenas"]
        o["supernet"], o["supernet_kwargs"] = str(meta["supernet"]), dict(meta.get("supernet_kwargs") or {})
    for key in ("out", "predictor", "supernet", "train_args", "search_args", "latency"):
        if not isinstance(o[key], str):
            raise ConfigError(f"{key} must be a string, got {o[key]!r}")
    # every step's command line passes out on as Hydra overrides, which read a,b as a list
    reject_comma("out", o["out"])
    if o["latency"] not in LATENCY_REFRESH:
        raise ConfigError(f"latency must be one of {list(LATENCY_REFRESH)}, got {o['latency']!r}")
    # a list (steps=[search,measure]) or one quoted string (steps='search,measure')
    steps = [o["steps"]] if isinstance(o["steps"], str) else o["steps"]
    o["steps"] = [s for part in steps for s in str(part).split(",") if s]
    bad = [s for s in o["steps"] if s not in STEPS]
    if bad:
        raise ConfigError(f"steps: unknown step {bad[0]!r}; steps: {list(STEPS)}")
    _check_latency_steps(o["supernet"], o["steps"])
    return o


def _check_latency_steps(supernet: str, steps: list[str]) -> None:
    """Host latency tables need the family's measurable layers (supernets/measurable.py): refuse, before hours of
    training, a run whose latency, search or measure step could not work for ``supernet``."""
    from predictors.latency.devices import table_buildable
    from supernets import is_supernet, list_supernets

    if not is_supernet(supernet):
        raise SystemExit(f"unknown supernet {supernet!r}; supernets: {list_supernets()}")
    needs_latency = [s for s in steps if s in ("latency", "search", "measure")]
    if needs_latency and not table_buildable(supernet):
        raise SystemExit(
            f"steps {needs_latency} need a host latency table, and those are built only for supernets whose family "
            f"implements the measurable-layer protocol (e.g. supernet=ofa_mbv3_tiny, ofa_resnet_tiny); for "
            f"supernet={supernet} run steps=[train,dataset,predictor]")


def train_overrides(supernet: str, train_args: str = "") -> list[str]:
    """train.py's overrides for ``supernet``: its tiny experiment (supernet and schedule together), unless
    ``train_args`` picks an experiment itself; other supernets get ``supernet=...`` and need a schedule there."""
    args = train_args.split()
    if supernet in TINY_EXPERIMENTS and not any(a.lstrip("+").startswith("experiment=") for a in args):
        return [f"experiment={TINY_EXPERIMENTS[supernet]}", *args]
    return [f"supernet={supernet}", *args]


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)


#: the options each step's result depends on, its own and its inputs' (a changed one reruns it and what follows)
STEP_OPTIONS = {"train": ("supernet", "train_args"), "dataset": ("supernet", "train_args", "n", "ckpt"),
                "predictor": ("supernet", "train_args", "n", "predictor", "ckpt"), "latency": ("supernet", "ckpt"),
                "search": ("supernet", "train_args", "n", "predictor", "top_k", "search_args", "ckpt")}
_OPTS: dict = {}  # this run's options (set by main)


def _done(out: Path, step: str) -> bool:
    """Finished with this run's options; a step finished with others (``predictor=mlp`` after ``predictor=ridge``)
    is not done: it reruns, and so do the steps that depend on it."""
    path = out / f"{step}.done"
    if not path.is_file():
        return False
    want = {k: _OPTS.get(k) for k in STEP_OPTIONS.get(step, ())}
    had = json.loads(path.read_text()).get("options")
    if had != want:
        print(f"{step}: finished with other options ({had} -> {want}): running it again", flush=True)
        return False
    return True


def _mark(out: Path, step: str, info: dict) -> None:
    info = {**info, "options": {k: _OPTS.get(k) for k in STEP_OPTIONS.get(step, ())}}
    tmp = out / f".{step}.done.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, out / f"{step}.done")


def _rerun(out: Path, step: str) -> bool:
    """Whether ``step`` ran before with other options: its outputs are replaced instead of resumed."""
    return (out / f"{step}.done").is_file()


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="pipeline")
def main(cfg: DictConfig) -> None:
    o = _opts(cfg)
    _OPTS.clear()
    _OPTS.update(o)
    out = Path(o["out"]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps = o["steps"]
    py = sys.executable
    ckpt = Path(o["ckpt"]).resolve() if o.get("ckpt") else out / "train" / "checkpoints" / "last.ckpt"
    dataset = out / "accuracy.csv"
    predictor = out / "predictor.pth"
    search_dir = out / "search"
    t0 = time.perf_counter()

    if "train" in steps and not _done(out, "train"):
        cmd = [py, "train.py", *train_overrides(o["supernet"], o["train_args"]), f"hydra.run.dir={out / 'train'}"]
        if ckpt.is_file() and not _rerun(out, "train"):
            cmd.append(f"ckpt_path={ckpt}")  # resume mid-phase
        _run(cmd)
        _mark(out, "train", {"ckpt": str(ckpt)})
    if "dataset" in steps and not _done(out, "dataset"):
        _need(ckpt, "train")
        if _rerun(out, "dataset"):  # another plan or checkpoint: the builder refuses to append to the old rows
            for f in out.glob("accuracy*"):
                f.unlink()
        _run([py, "scripts/build_accuracy_dataset.py", f"ckpt={ckpt}", f"n={o['n']}", f"out={dataset}",
              f"hydra.run.dir={out / 'dataset'}"])
        _mark(out, "dataset", {"dataset": str(dataset)})
    if "predictor" in steps and not _done(out, "predictor"):
        _need(dataset, "dataset")
        _run([py, "scripts/train_predictor.py", f"dataset={dataset}", f"predictor={o['predictor']}", f"out={predictor}",
              "overwrite=true", f"hydra.run.dir={out / 'predictor'}"])
        _mark(out, "predictor", {"predictor": str(predictor)})
    if "latency" in steps and not _done(out, "latency"):
        _mark(out, "latency", latency_step(out, o["supernet"], o["latency"], o["probe_k"], o["recal_k"],
                                           o.get("supernet_kwargs")))
    tables_dir = _latency_tables_dir(out)
    if "search" in steps and not _done(out, "search"):
        _need(ckpt, "train")
        _need(predictor, "predictor")
        # a given checkpoint names its supernet itself (a timm/<model> name is no configs/supernet option)
        _run([py, "search.py", "device=host_cpu", *([] if o.get("ckpt") else [f"supernet={o['supernet']}"]),
              f"ckpt={ckpt}",
              f"predictor_path={predictor}", f"export.top_k={o['top_k']}",
              "overwrite=true" if _rerun(out, "search") else "resume=true",
              f"hydra.run.dir={search_dir}",
              # a table the latency step probed and refreshed moments ago: a second, seconds-long probe only
              # adds the chance of landing in one of this host's noise bursts (it warned once on a table it had
              # just found true here)
              *([f"latency_tables_dir={tables_dir}", "latency_probe=0"] if tables_dir else []),
              *o["search_args"].split()])
        _mark(out, "search", {"search": str(search_dir)})
    if "measure" in steps:
        _need(search_dir / "host_cpu" / "export" / "exported.json", "search")
        measure(search_dir / "host_cpu" / "export" / "exported.json", ckpt, out / "report.csv", o["supernet"],
                tables_dir)
        _mark(out, "measure", {"report": str(out / "report.csv")})
    print(f"pipeline finished in {time.perf_counter() - t0:.0f} s (outputs in {out})")


def _need(path: Path, step: str) -> None:
    if not path.exists():
        raise SystemExit(f"{path} does not exist: run the {step!r} step first (steps={step})")


def latency_step(out: Path, supernet: str, how: str = "recalibrate", probe_k: int = 3, recal_k: int = 20,
                 supernet_kwargs: dict | None = None) -> dict:
    """Make sure the host_cpu table the search will serve describes this machine (see the module docstring).
    Returns what ``latency.done`` records: ``tables_dir`` (null: the repository's), how and how long.
    ``supernet_kwargs``: a given checkpoint's (its layers' shapes, e.g. 10 classes at 32 px): the repository's
    tables are of the registry's default shape, so a table of that shape is built here."""
    from predictors import load_latency_model
    from predictors.latency.probe import probe_host_table, recalibrate_here

    t0 = time.perf_counter()
    tables = out / "latency_tables"
    folder = tables / "host_cpu" / supernet
    try:
        if supernet_kwargs:
            raise ValueError(f"the checkpoint's supernet is shaped by {supernet_kwargs}")
        load_latency_model("host_cpu", supernet)
    except ValueError as e:
        print(f"no usable host_cpu table in the repository ({e}); building one for this machine")
        _run(host_build_command(folder, supernet, supernet_kwargs=supernet_kwargs))
        return {"tables_dir": str(tables), "how": "built", "seconds": round(time.perf_counter() - t0, 1)}
    probe = probe_host_table("host_cpu", supernet, k=probe_k)
    print(probe.message(), flush=True)
    rec: dict = {"probe": probe.summary()}
    if probe.ok or how == "keep":
        if not probe.ok:
            print("latency=keep: serving it as it is")
        return {**rec, "tables_dir": None, "how": "kept", "seconds": round(time.perf_counter() - t0, 1)}
    if how == "recalibrate":
        print(f"recalibrating a copy on {recal_k} whole subnets timed here -> {folder}", flush=True)
        recalibrate_here("host_cpu", supernet, tables, k=recal_k,
                         command=f"python scripts/pipeline.py ... latency=recalibrate recal_k={recal_k}")
        check = probe_host_table("host_cpu", supernet, tables_dir=tables, k=probe_k, seed=54321)
        print("after recalibration: " + check.message(), flush=True)
        rec.update(how=f"recalibrated on {recal_k} whole subnets", after=check.summary())
        if not check.stale:
            return {**rec, "tables_dir": str(tables), "seconds": round(time.perf_counter() - t0, 1)}
        print("recalibration was not enough: rebuilding the table on this machine", flush=True)
    # the statistic the shipped table stores (p10 repeats better than the median on a contended host)
    _run(host_build_command(folder, supernet, _table_settings(supernet).get("statistic")))
    check = probe_host_table("host_cpu", supernet, tables_dir=tables, k=probe_k, seed=54321)
    print("after the rebuild: " + check.message(), flush=True)
    rec.update(how="rebuilt" if how == "rebuild" else f"{rec['how']}, then rebuilt", after=check.summary())
    return {**rec, "tables_dir": str(tables), "seconds": round(time.perf_counter() - t0, 1)}


def host_build_command(folder: Path, supernet: str, statistic: str | None = None, *,
                       supernet_kwargs: dict | None = None) -> list[str]:
    """The full rebuild of the host table on this machine, into ``folder`` (the out dir, never the repository's)."""
    from supernets.compose import override_value

    shaped = [f"supernet_kwargs={override_value(supernet_kwargs)}"] if supernet_kwargs else []
    return [sys.executable, "scripts/build_latency_table.py", f"supernet={supernet}", "device=host_cpu",
            f"out_dir={folder}", "restart=true", "progress=false", *shaped,
            *([f"measure.statistic={statistic}"] if statistic else [])]


def _latency_tables_dir(out: Path) -> Path | None:
    """The tables folder the latency step chose (``latency.done``), None for the repository's."""
    done = out / "latency.done"
    info = json.loads(done.read_text()) if done.is_file() else {}
    return Path(info["tables_dir"]) if info.get("tables_dir") else None


def _table_settings(supernet: str, tables_dir: Path | None = None) -> dict:
    """The measurement settings the host_cpu table was built with (so measured and predicted agree on
    provider, threads, batch and statistic)."""
    import yaml

    from supernets.paths import LATENCY_TABLES_DIR

    root = LATENCY_TABLES_DIR if tables_dir is None else tables_dir
    meta = yaml.safe_load((root / "host_cpu" / supernet / "meta.yaml").read_text()) or {}
    keys = ("provider", "threads", "graph_opt", "warmup", "repeats", "sessions", "passes", "batch", "statistic")
    return {k: v for k, v in (meta.get("measurement") or {}).items() if k in keys}


def measure(exported_json: Path, ckpt: Path, report: Path, supernet: str, tables_dir: Path | None = None) -> None:
    """Measured vs predicted latency and evaluated vs predicted top-1 of the exported subnets."""
    import numpy as np
    import onnxruntime as ort
    import pandas as pd

    from predictors.latency.measure import MeasureSettings, measure_onnx_passes
    from supernets.training.checkpoint import load_checkpoint
    from supernets.training.data import create_datamodule
    from supernets.utils import resize_batch

    recs = json.loads(exported_json.read_text())
    meta = load_checkpoint(ckpt)["oncenas"]
    dm = create_datamodule(**dict(meta["data"]))
    dm.setup()
    val = list(dm.val_dataloader())
    settings = MeasureSettings(**_table_settings(supernet, tables_dir))
    refs = reference_subnets(supernet, tables_dir, k=None)  # every calibration subnet of the served table
    with tempfile.TemporaryDirectory(prefix="pipeline_refs_") as tmp:
        ref_paths = export_references(ckpt, [a for a, _ in refs], settings, Path(tmp)) if refs else []
        # all exported subnets in passes, as the table was measured (each keeps its fastest pass), beside the
        # reference subnets whose calibration timings say how fast the host runs now
        timings, drift, ref_now = time_with_drift_control(
            [rec["onnx"] for rec in recs], ref_paths, [ms for _, ms in refs],
            lambda paths: measure_onnx_passes(paths, settings), with_references=True)
    now = recalibrated_predictions(ckpt, supernet, tables_dir, [rec["arch"] for rec in recs], ref_now)
    rows = []
    for rec, m in zip(recs, timings):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(rec["onnx"], opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        r = int(inp.shape[-1])
        fixed = isinstance(inp.shape[0], int)
        correct = total = 0
        for x, y in val:
            x = resize_batch(x, r).numpy().astype(np.float32)
            chunks = np.split(x, len(x)) if fixed and inp.shape[0] == 1 else [x]
            logits = np.concatenate([sess.run(None, {inp.name: c})[0] for c in chunks])
            correct += int((logits.argmax(1) == y.numpy()).sum())
            total += len(y)
        rows.append({"arch": rec["arch"], "latency_pred_ms": rec["latency_ms"], "latency_meas_ms": m["value_ms"],
                     "latency_ratio": m["value_ms"] / rec["latency_ms"],
                     "latency_pred_now_ms": np.nan if now is None else now[len(rows)],
                     "latency_ratio_now": np.nan if now is None else m["value_ms"] / now[len(rows)],
                     "top1_pred": rec["top1"], "top1_eval": correct / total, "host_drift": drift, "onnx": rec["onnx"]})
    df = pd.DataFrame(rows)
    tmp = report.with_suffix(".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, report)
    show = df.drop(columns=["onnx", "host_drift"]).copy()
    print("\nexported subnets: predicted vs measured host latency (ONNX Runtime, "
          f"{m['settings'].get('statistic', '')}), predicted vs evaluated top-1 (held-out split, exported ONNX)")
    print(show.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    within = (np.abs(df["latency_ratio"] - 1) <= 0.10).mean()
    drift_note = "" if drift is None else f" (reference subnets ran {drift:.2f}x their calibration timings)"
    print(f"{100 * within:.0f}% of exported subnets within ±10% of the predicted latency{drift_note} -> {report}")
    if now is not None:
        within_now = (np.abs(df["latency_ratio_now"] - 1) <= 0.10).mean()
        print(f"{100 * within_now:.0f}% within ±10% of the table recalibrated as latency=recalibrate does, on its "
              f"{len(refs)} calibration subnets timed in the same passes as the exported ones (which are not among "
              "them): the prediction at the host's speed of the moment")


def reference_subnets(supernet: str, tables_dir: Path | None, k: int | None = 3) -> list[tuple[str, float]]:
    """``k`` of the served table's calibration subnets (None: all), spread over its latency range, with the time each
    measured when the table was calibrated: timed again beside the exported subnets, they say whether the host still
    runs at the calibration's speed. Empty where the table has fewer than ``k`` (or 3) calibration subnets."""
    from predictors.latency.calibration import load_calibration
    from supernets.paths import LATENCY_TABLES_DIR

    rows = load_calibration((LATENCY_TABLES_DIR if tables_dir is None else tables_dir) / "host_cpu" / supernet)
    if len(rows) < (3 if k is None else k):
        return []
    if k is None:
        return [(r["arch"], float(r["measured_ms"])) for r in rows]
    rows = sorted(rows, key=lambda r: r["measured_ms"])
    picks = sorted({round(i * (len(rows) - 1) / (k - 1)) for i in range(k)})
    return [(rows[i]["arch"], float(rows[i]["measured_ms"])) for i in picks]


def export_references(ckpt: Path, archs: list[str], settings, workdir: Path) -> list[Path]:
    """The reference subnets as ONNX files, cut from the checkpoint's supernet (shaped as it was trained)."""
    from predictors.latency.build import export_subnets
    from supernets.checkpoints import load_supernet

    net, _ = load_supernet(ckpt)
    return export_subnets(net, [net.space.parse(a) for a in archs], settings, workdir)


def recalibrated_predictions(ckpt: Path, supernet: str, tables_dir: Path | None, archs: list[str],
                             ref_now: list[dict] | None) -> list[float] | None:
    """Latency of ``archs`` from the served table with its calibration refitted as ``latency=recalibrate`` does
    (``refit_calibration``) on its calibration subnets timed just now (``ref_now``, in their ``calibration.csv``
    order). A shared host's speed moves by tens of percent within minutes; refitted in the timing session of the
    exported subnets, the table's prediction is tested against timings of the same host state. None without
    references or where the served model is not a table."""
    from predictors import load_latency_model
    from predictors.latency.calibration import load_calibration
    from predictors.latency.probe import refit_calibration
    from supernets.checkpoints import load_supernet
    from supernets.paths import LATENCY_TABLES_DIR

    if not ref_now:
        return None
    rows = load_calibration((LATENCY_TABLES_DIR if tables_dir is None else tables_dir) / "host_cpu" / supernet)
    net, _ = load_supernet(ckpt)
    model = load_latency_model("host_cpu", supernet, tables_dir=tables_dir, space=net.space)
    if not hasattr(model, "block_sums") or len(rows) != len(ref_now):
        return None
    fit = refit_calibration([{**r, "measured_ms": t["value_ms"]} for r, t in zip(rows, ref_now)], model.calibration)
    a, b, c = fit["a"], fit["b"], fit["c"]
    sums, n_blocks = model.block_sums(net.space.encode([net.space.parse(s) for s in archs]))
    return [float(v) for v in a * sums + b * n_blocks + c]


def time_with_drift_control(paths: list, ref_paths: list, ref_ms: list[float], time_all, *, tolerance: float = 0.05,
                            attempts: int = 3, wait_s: float = 20.0, with_references: bool = False
                            ) -> tuple[list[dict], float | None] | tuple[list[dict], float | None, list[dict] | None]:
    """Time ``paths`` and the reference subnets together (``time_all(paths)`` -> one record per path). Where the
    references run outside ``tolerance`` of their calibration timings (half the check's ±10 %: a host 8 % off
    leaves the prediction 2 %), the host's speed has moved since the table was calibrated (this shared host was
    seen to run 0.58x, then 0.95x, within a minute with nothing else running), and the timing is no test of the
    prediction: wait and time again, up to ``attempts`` times, and keep the attempt whose host speed was closest
    to the calibration's. Every attempt's drift is printed. Returns the records of ``paths`` and that drift
    (median measured/calibration ratio of the references; None without references), and with ``with_references``
    the references' records of that attempt too."""
    import numpy as np

    best = None
    for attempt in range(1, attempts + 1):
        records = time_all([*paths, *ref_paths])
        if not ref_paths:
            return (records, None, None) if with_references else (records, None)
        drift = float(np.median([r["value_ms"] / ms for r, ms in zip(records[len(paths):], ref_ms)]))
        if best is None or abs(np.log(drift)) < abs(np.log(best[1])):
            best = (records[: len(paths)], drift, records[len(paths):])
        if abs(drift - 1) <= tolerance:
            break
        more = f"; timing again in {wait_s:.0f} s" if attempt < attempts else ""
        print(f"host speed check {attempt}/{attempts}: the table's reference subnets ran {drift:.2f}x their "
              f"calibration timings (tolerance ±{tolerance:.0%}): the host's speed moved since the table was "
              f"calibrated, so this timing says nothing about the prediction{more}", flush=True)
        if attempt < attempts:
            time.sleep(wait_s)
    return best if with_references else best[:2]


if __name__ == "__main__":
    main()
