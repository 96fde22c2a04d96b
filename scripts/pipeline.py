"""The whole pipeline on the bundled default, each step resumable and runnable alone.

    python scripts/pipeline.py                                   # all steps into outputs/pipeline
    python scripts/pipeline.py out=outputs/pipe steps=search,measure top_k=3

Steps (each is the command it prints, so it can also be run by hand):
  train      python train.py +experiment=<supernet's tiny one> -> <out>/train/checkpoints/last.ckpt
  dataset    scripts/build_accuracy_dataset.py ckpt=... n=N    -> <out>/accuracy.csv   (resumes itself)
  predictor  scripts/train_predictor.py dataset=... predictor=P -> <out>/predictor.pth
  latency    scripts/build_latency_table.py device=host_cpu    (skipped when the table exists)
  search     search.py device=host_cpu ckpt=... predictor_path=... export.top_k=K resume=true
  measure    ONNX Runtime latency of each exported subnet vs the predicted one, and the exported ONNX model's
             top-1 on the checkpoint's held-out split vs the predicted top-1

A finished step leaves ``<out>/<step>.done``; rerunning the command skips finished steps and resumes the
interrupted one (training from last.ckpt, the dataset from its CSV, the search from its saved state).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from supernets.paths import REPO_ROOT

STEPS = ("train", "dataset", "predictor", "latency", "search", "measure")
# The experiment the train step runs for each CPU-sized supernet (train.py's default schedule, ps_tiny, names
# MobileNetV3 genes such as ks, which OFA-ResNet does not have).
TINY_EXPERIMENTS = {"ofa_mbv3_tiny": "tiny_ps", "ofa_resnet_tiny": "tiny_resnet_ps", "vit_cifar_tiny": "vit_cifar"}


def _opts(argv: list[str] | None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("overrides", nargs="*", help="key=value: out, steps, n, predictor, top_k, supernet, train_args")
    o = {"out": "outputs/pipeline", "steps": ",".join(STEPS), "n": 300, "predictor": "mlp", "top_k": 3,
         "supernet": "ofa_mbv3_tiny", "train_args": "", "search_args": ""}
    for ov in p.parse_args(argv).overrides:
        k, _, v = ov.partition("=")
        if k not in o:
            raise SystemExit(f"unknown option {k!r}; options: {sorted(o)}")
        if isinstance(o[k], int):
            try:
                o[k] = int(v)
            except ValueError:
                raise SystemExit(f"option {k} must be an integer, got {v!r} (e.g. {k}={o[k]})") from None
        else:
            o[k] = v
    bad = [s for s in o["steps"].split(",") if s not in STEPS]
    if bad:
        raise SystemExit(f"unknown step {bad[0]!r}; steps: {list(STEPS)}")
    _check_latency_steps(o["supernet"], o["steps"].split(","))
    return o


def _check_latency_steps(supernet: str, steps: list[str]) -> None:
    """Host latency tables are built from OFA-MobileNetV3 layer geometry only: refuse, before hours of training,
    a run whose latency, search or measure step could not work for ``supernet``."""
    from predictors.latency.devices import table_buildable
    from supernets import list_supernets

    if supernet not in list_supernets():
        raise SystemExit(f"unknown supernet {supernet!r}; supernets: {list_supernets()}")
    needs_latency = [s for s in steps if s in ("latency", "search", "measure")]
    if needs_latency and not table_buildable(supernet):
        raise SystemExit(
            f"steps {needs_latency} need a host latency table, and those are built for OFA-MobileNetV3 supernets "
            f"only (e.g. supernet=ofa_mbv3_tiny); for supernet={supernet} run steps=train,dataset,predictor")


def train_overrides(supernet: str, train_args: str = "") -> list[str]:
    """train.py's overrides for ``supernet``: its tiny experiment (supernet and schedule together), unless
    ``train_args`` picks an experiment itself; other supernets get ``supernet=...`` and need a schedule there."""
    args = train_args.split()
    if supernet in TINY_EXPERIMENTS and not any(a.lstrip("+").startswith("experiment=") for a in args):
        return [f"+experiment={TINY_EXPERIMENTS[supernet]}", *args]
    return [f"supernet={supernet}", *args]


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)


def _done(out: Path, step: str) -> bool:
    return (out / f"{step}.done").is_file()


def _mark(out: Path, step: str, info: dict) -> None:
    tmp = out / f".{step}.done.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, out / f"{step}.done")


def main(argv: list[str] | None = None) -> None:
    o = _opts(argv)
    out = Path(o["out"]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps = o["steps"].split(",")
    py = sys.executable
    ckpt = out / "train" / "checkpoints" / "last.ckpt"
    dataset = out / "accuracy.csv"
    predictor = out / "predictor.pth"
    search_dir = out / "search"
    t0 = time.perf_counter()

    if "train" in steps and not _done(out, "train"):
        cmd = [py, "train.py", *train_overrides(o["supernet"], o["train_args"]), f"hydra.run.dir={out / 'train'}"]
        if ckpt.is_file():
            cmd.append(f"ckpt_path={ckpt}")  # resume mid-phase
        _run(cmd)
        _mark(out, "train", {"ckpt": str(ckpt)})
    if "dataset" in steps and not _done(out, "dataset"):
        _need(ckpt, "train")
        _run([py, "scripts/build_accuracy_dataset.py", f"ckpt={ckpt}", f"n={o['n']}", f"out={dataset}",
              f"hydra.run.dir={out / 'dataset'}"])
        _mark(out, "dataset", {"dataset": str(dataset)})
    if "predictor" in steps and not _done(out, "predictor"):
        _need(dataset, "dataset")
        _run([py, "scripts/train_predictor.py", f"dataset={dataset}", f"predictor={o['predictor']}", f"out={predictor}",
              "overwrite=true", f"hydra.run.dir={out / 'predictor'}"])
        _mark(out, "predictor", {"predictor": str(predictor)})
    if "latency" in steps and not _done(out, "latency"):
        from predictors import load_latency_model

        try:
            load_latency_model("host_cpu", o["supernet"])
            print(f"host_cpu latency table for {o['supernet']} found: not rebuilt")
        except ValueError as e:
            print(f"no usable host_cpu table ({e}); building it")
            _run([py, "scripts/build_latency_table.py", f"supernet={o['supernet']}", "device=host_cpu"])
        _mark(out, "latency", {})
    if "search" in steps and not _done(out, "search"):
        _need(ckpt, "train")
        _need(predictor, "predictor")
        _run([py, "search.py", "device=host_cpu", f"supernet={o['supernet']}", f"ckpt={ckpt}",
              f"predictor_path={predictor}", f"export.top_k={o['top_k']}", "resume=true",
              f"hydra.run.dir={search_dir}", *o["search_args"].split()])
        _mark(out, "search", {"search": str(search_dir)})
    if "measure" in steps:
        _need(search_dir / "host_cpu" / "export" / "exported.json", "search")
        measure(search_dir / "host_cpu" / "export" / "exported.json", ckpt, out / "report.csv", o["supernet"])
        _mark(out, "measure", {"report": str(out / "report.csv")})
    print(f"pipeline finished in {time.perf_counter() - t0:.0f} s (outputs in {out})")


def _need(path: Path, step: str) -> None:
    if not path.exists():
        raise SystemExit(f"{path} does not exist: run the {step!r} step first (steps={step})")


def _table_settings(supernet: str) -> dict:
    """The measurement settings the host_cpu table was built with (so measured and predicted agree on
    provider, threads, batch and statistic)."""
    import yaml

    from supernets.paths import LATENCY_TABLES_DIR

    meta = yaml.safe_load((LATENCY_TABLES_DIR / "host_cpu" / supernet / "meta.yaml").read_text()) or {}
    keys = ("provider", "threads", "graph_opt", "warmup", "repeats", "sessions", "batch", "statistic")
    return {k: v for k, v in (meta.get("measurement") or {}).items() if k in keys}


def measure(exported_json: Path, ckpt: Path, report: Path, supernet: str) -> None:
    """Measured vs predicted latency and evaluated vs predicted top-1 of the exported subnets."""
    import numpy as np
    import onnxruntime as ort
    import pandas as pd

    from predictors.latency.measure import measure_onnx
    from search.export import resize_to
    from supernets.training.checkpoint import load_checkpoint
    from supernets.training.data import create_datamodule

    recs = json.loads(exported_json.read_text())
    meta = load_checkpoint(ckpt)["oncenas"]
    dm = create_datamodule(**dict(meta["data"]))
    dm.setup()
    val = list(dm.val_dataloader())
    settings = _table_settings(supernet)
    rows = []
    for rec in recs:
        m = measure_onnx(rec["onnx"], **settings)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(rec["onnx"], opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        r = int(inp.shape[-1])
        fixed = isinstance(inp.shape[0], int)
        correct = total = 0
        for x, y in val:
            x = resize_to(x, r).numpy().astype(np.float32)
            chunks = np.split(x, len(x)) if fixed and inp.shape[0] == 1 else [x]
            logits = np.concatenate([sess.run(None, {inp.name: c})[0] for c in chunks])
            correct += int((logits.argmax(1) == y.numpy()).sum())
            total += len(y)
        rows.append({"arch": rec["arch"], "latency_pred_ms": rec["latency_ms"], "latency_meas_ms": m["value_ms"],
                     "latency_ratio": m["value_ms"] / rec["latency_ms"], "top1_pred": rec["top1"],
                     "top1_eval": correct / total, "onnx": rec["onnx"]})
    df = pd.DataFrame(rows)
    tmp = report.with_suffix(".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, report)
    show = df.drop(columns=["onnx"]).copy()
    print("\nexported subnets: predicted vs measured host latency (ONNX Runtime, "
          f"{m['settings'].get('statistic', '')}), predicted vs evaluated top-1 (held-out split, exported ONNX)")
    print(show.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    within = (np.abs(df["latency_ratio"] - 1) <= 0.10).mean()
    print(f"{100 * within:.0f}% of exported subnets within ±10% of the predicted latency -> {report}")


if __name__ == "__main__":
    main()
