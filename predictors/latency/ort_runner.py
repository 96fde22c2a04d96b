"""Time the ONNX models of a latency bundle on the machine this runs on. Needs Python 3.9+, numpy and onnxruntime.

This file is self-contained on purpose (no torch, no oncenas): ``build_latency_table.py stage=export`` copies
it into the bundle as ``measure.py``; copy the bundle (folder or .tar.gz) to the target device (a phone
under Termux, a Raspberry Pi, a GPU server) and run::

    python measure.py BUNDLE [--provider CUDAExecutionProvider] [--threads 4] [--statistic p10]

It times every model once per pass, ``--passes`` passes over the whole bundle (noise on a busy machine comes
in bursts of seconds: passes minutes apart rarely all fall into one, and the import keeps each model's fastest
pass). It writes ``BUNDLE/results/timings.csv`` (one row per model and pass, appended and flushed as it goes:
rerun the same command after an interruption and it resumes) and ``BUNDLE/results/fingerprint.json`` (CPU, OS,
onnxruntime version, provider, threads, settings). Bring ``results/`` back and import it with
``build_latency_table.py stage=import``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

TIMING_COLUMNS = ("id", "value_ms", "median_ms", "p10_ms", "min_ms", "iqr_ms", "n", "pass")
#: Fingerprint fields that must agree for timings to share one results folder.
SAME_SETUP = ("cpu", "machine", "onnxruntime", "provider", "threads", "graph_opt", "batch", "statistic", "warmup",
              "repeats", "sessions", "passes")
_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL"}
_STATISTICS = ("median", "p10", "min")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(args: argparse.Namespace) -> dict:
    import onnxruntime as ort

    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "onnxruntime": ort.__version__, "provider": args.provider, "threads": args.threads,
            "graph_opt": args.graph_opt, "batch": 1, "statistic": args.statistic, "warmup": args.warmup,
            "repeats": args.repeats, "sessions": args.sessions, "passes": args.passes, "host": platform.node(),
            "runner": "ort_runner"}


def session(path: Path, args: argparse.Namespace):
    import onnxruntime as ort

    if args.provider not in ort.get_available_providers():
        sys.exit(f"execution provider {args.provider!r} is not available; this onnxruntime has "
                 f"{ort.get_available_providers()}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT[args.graph_opt])
    return ort.InferenceSession(str(path), opts, providers=[args.provider])


def time_model(path: Path, args: argparse.Namespace, seed: int = 0) -> dict:
    """Warm-up, then ``repeats`` timed runs in each of ``sessions`` fresh sessions (ms per forward)."""
    rng = np.random.default_rng(seed)
    times: list[float] = []
    for _ in range(args.sessions):
        sess = session(path, args)
        inp = sess.get_inputs()[0]
        shape = [1 if not isinstance(d, int) else d for d in inp.shape]
        feed = {inp.name: rng.standard_normal(shape).astype(np.float32)}
        for _ in range(args.warmup):
            sess.run(None, feed)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append((time.perf_counter() - t0) * 1e3)
        del sess
    t = np.asarray(times)
    p10, p25, p75 = np.percentile(t, [10, 25, 75])
    stats = {"median": float(np.median(t)), "p10": float(p10), "min": float(t.min())}
    return {"value_ms": stats[args.statistic], "median_ms": stats["median"], "p10_ms": stats["p10"],
            "min_ms": stats["min"], "iqr_ms": float(p75 - p25), "n": int(t.size)}


def open_bundle(path: Path) -> Path:
    """The bundle folder (a ``.tar.gz`` is unpacked beside itself once)."""
    if path.is_dir():
        return path
    if path.name.endswith((".tar.gz", ".tgz")) and path.is_file():
        dest = path.parent / path.name.removesuffix(".tar.gz").removesuffix(".tgz")
        if not (dest / "manifest.json").is_file():
            with tarfile.open(path) as tar:
                bad = [m.name for m in tar.getmembers() if m.name.startswith(("/", "..")) or ".." in Path(m.name).parts]
                if bad:
                    sys.exit(f"{path}: refusing archive members outside the bundle: {bad[:3]}")
                tar.extractall(path.parent)
        return dest
    sys.exit(f"{path} is neither a bundle folder nor a .tar.gz bundle")


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path, help="bundle folder or .tar.gz written by stage=export")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: BUNDLE/results)")
    ap.add_argument("--provider", default="CPUExecutionProvider")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads")
    ap.add_argument("--graph-opt", dest="graph_opt", choices=list(_OPT), default="all")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--sessions", type=int, default=1, help="sessions per model and pass")
    ap.add_argument("--passes", type=int, default=3, help="passes over all the models (each keeps its fastest)")
    ap.add_argument("--statistic", choices=_STATISTICS, default="median",
                    help="what the table stores; p10 repeats better on a shared, busy machine")
    ap.add_argument("--restart", action="store_true", help="discard earlier timings in the results folder")
    ap.add_argument("--max-new", dest="max_new", type=int, default=None, help="stop after this many models")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.sessions < 1 or args.passes < 1 or args.warmup < 0:
        sys.exit(f"threads, repeats, sessions and passes must be >= 1 and warmup >= 0, got {vars(args)}")
    bundle = open_bundle(args.bundle)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    out = args.out or bundle / "results"
    out.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(args)
    fp_path, t_path = out / "fingerprint.json", out / "timings.csv"
    if args.restart:
        t_path.unlink(missing_ok=True)
    if t_path.is_file() and fp_path.is_file():
        old = json.loads(fp_path.read_text(encoding="utf-8"))
        diff = {k: (old.get(k), fp.get(k)) for k in SAME_SETUP if old.get(k) != fp.get(k)}
        if diff:
            sys.exit(f"{out} holds timings taken with another machine/setting {diff} (old, now); pass --restart "
                     f"to discard them or --out to write elsewhere")
    tmp = fp_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fp, indent=1), encoding="utf-8")
    os.replace(tmp, fp_path)
    if t_path.is_file():  # a kill mid-row leaves a torn last line: drop it before appending
        data = t_path.read_bytes()
        if data and not data.endswith(b"\n"):
            t_path.write_bytes(data[: data.rfind(b"\n") + 1])
    done = set()
    if t_path.is_file():
        with open(t_path, newline="", encoding="utf-8") as f:
            done = {(row["id"], int(row.get("pass") or 1)) for row in csv.DictReader(f)}
    models = [*manifest["layers"], *manifest["subnets"]]
    todo = [(p, m) for p in range(1, args.passes + 1) for m in models if (m["id"], p) not in done]
    total = len(models) * args.passes
    new_file = not t_path.is_file() or t_path.stat().st_size == 0
    with open(t_path, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        if new_file:
            w.writerow(TIMING_COLUMNS)
        for i, (p, m) in enumerate(todo):
            if args.max_new is not None and i >= args.max_new:
                break
            res = time_model(bundle / m["file"], args)
            w.writerow([m["id"], *(repr(res[c]) for c in TIMING_COLUMNS[1:-2]), res["n"], p])
            f.flush()
            os.fsync(f.fileno())  # a killed run keeps every finished row
            print(f"[{len(done) + i + 1}/{total}] pass {p} {m['id']} {res['value_ms']:.4f} ms", flush=True)
    return out


if __name__ == "__main__":
    main()
