"""Time ONNX models with ONNX Runtime: explicit execution provider, intra-op threads, graph
optimisation level, warm-up, repeats, several sessions; median and spread, plus an environment
fingerprint (CPU model, the ISA features ORT's kernels dispatch on, core count, ORT version, EP, threads,
batch) so a number always says where it came from, and a table built elsewhere is recognised as such."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HOST_FIELDS", "MeasureSettings", "best_of_passes", "cpu_isa", "environment_fingerprint", "fingerprint_diff",
           "isa_from_cpuinfo", "measure_onnx", "measure_onnx_passes"]

_OPT_LEVELS = ("disable", "basic", "extended", "all")
_STATISTICS = ("median", "p10", "min")
#: Fingerprint fields that make ONNX Runtime timings differ between machines: the CPU, the instruction sets
#: MLAS picks its GEMM/conv kernels by, the cores, the runtime and how a session is configured.
HOST_FIELDS = ("cpu", "isa", "cpu_count", "onnxruntime", "provider", "threads", "graph_opt", "batch")
# /proc/cpuinfo flags (x86 "flags", Arm "Features") that select ORT/MLAS kernels: SSE4/AVX/AVX2+FMA, AVX-512
# (F/BW/DQ/VL), the int8 dot products (AVX-VNNI, AVX512-VNNI), bf16/fp16, AMX tiles; Arm NEON dot product,
# i8mm, bf16, SVE.
_ISA_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl",
              "avx_vnni", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
              "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")


@dataclass(frozen=True)
class MeasureSettings:
    """How to time a model (all recorded in the table's ``meta.yaml``).

    Attributes:
        provider: ONNX Runtime execution provider.
        threads: intra-op threads (1 = stable, per-core numbers; inter-op is always 1).
        graph_opt: ``disable`` | ``basic`` | ``extended`` | ``all``.
        warmup: untimed runs per session (allocations, caches).
        repeats: timed runs per session.
        sessions: independent sessions per pass (the statistic is taken over all runs of a pass's sessions).
        passes: passes over *all* the models being measured together (a table's layers, a set of subnets), each
            model once per pass; a model's value is the minimum over passes of its per-pass statistic. Timing
            noise on a shared host comes in bursts lasting seconds and only ever adds time: runs of one model
            back to back all fall into the same burst (the same subnet measured 10.9 ms in one session and 15.4 ms
            in the next here), while passes minutes apart rarely all do. With 4 passes instead of 1, the table sums
            of 20 OFA-MobileNetV3 w1.2 subnets went from correlation 0.86 to 0.995 with their whole-network times.
        batch: batch size of the input.
        statistic: what a table stores as *the* latency: ``median`` (default), ``p10`` or ``min``. On a
            shared, contended host the 10th percentile repeats far better than the median (other
            processes only ever add time), so builds there may prefer ``p10``.
    """

    provider: str = "CPUExecutionProvider"
    threads: int = 1
    graph_opt: str = "all"
    warmup: int = 10
    repeats: int = 50
    sessions: int = 1
    passes: int = 3
    batch: int = 1
    statistic: str = "median"

    def __post_init__(self) -> None:
        if self.statistic not in _STATISTICS:
            raise ValueError(f"statistic {self.statistic!r} is not one of {_STATISTICS}")
        if self.graph_opt not in _OPT_LEVELS:
            raise ValueError(f"graph_opt {self.graph_opt!r} is not one of {_OPT_LEVELS}")
        if (self.threads < 1 or self.repeats < 1 or self.sessions < 1 or self.passes < 1 or self.warmup < 0
                or self.batch < 1):
            raise ValueError(f"measurement settings must be positive (warm-up may be 0), got {self}")


@lru_cache(maxsize=1)
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa_from_cpuinfo(text: str) -> str:
    """The kernel-selecting ISA features named in a ``/proc/cpuinfo`` text, space-joined in a fixed order."""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(val.split())
    return " ".join(f for f in _ISA_FLAGS if f in flags)


@lru_cache(maxsize=1)
def cpu_isa() -> str:
    """:func:`isa_from_cpuinfo` of this machine ("" where /proc/cpuinfo cannot be read)."""
    try:
        return isa_from_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return ""


def environment_fingerprint(settings: MeasureSettings | None = None) -> dict[str, Any]:
    """Where and how a measurement was taken."""
    import onnxruntime as ort

    s = settings or MeasureSettings()
    return {"cpu": _cpu_model(), "isa": cpu_isa(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "onnxruntime": ort.__version__, "provider": s.provider, "threads": s.threads, "graph_opt": s.graph_opt,
            "batch": s.batch, "statistic": s.statistic, "host": platform.node()}


def fingerprint_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{field: (old, new)}`` over :data:`HOST_FIELDS` where two fingerprints disagree (a field the old one
    lacks, as in tables built before it was recorded, counts as differing: nothing says it was this machine)."""
    old = old or {}
    return {k: (old.get(k), new.get(k)) for k in HOST_FIELDS if old.get(k) != new.get(k)}


def _session(path: Path | str, s: MeasureSettings):
    import onnxruntime as ort

    if s.provider not in ort.get_available_providers():
        raise ValueError(f"execution provider {s.provider!r} is not available; this onnxruntime has "
                         f"{ort.get_available_providers()}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = s.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[s.graph_opt]
    return ort.InferenceSession(str(path), opts, providers=[s.provider])


def measure_onnx(path: Path | str, settings: MeasureSettings | None = None, *, seed: int = 0,
                 **overrides: Any) -> dict[str, Any]:
    """Latency of one ONNX model (ms per forward at ``settings.batch``).

    Keyword overrides replace fields of ``settings`` (e.g. ``measure_onnx(p, repeats=20)``).

    Returns:
        ``{"value_ms" (the configured statistic), "median_ms", "min_ms", "mean_ms", "std_ms", "p10_ms",
        "p90_ms", "iqr_ms", "session_medians_ms", "n",
        "env": fingerprint, "settings": {...}}``.
    """
    s = settings or MeasureSettings()
    if overrides:
        s = MeasureSettings(**{**asdict(s), **overrides})
    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist (export it with export_onnx first)")
    rng = np.random.default_rng(seed)
    times: list[float] = []
    medians = []
    for _ in range(s.sessions):
        sess = _session(path, s)
        inp = sess.get_inputs()[0]
        shape = [s.batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(inp.shape)]
        if shape[0] != s.batch:
            raise ValueError(f"{path} was exported for batch {shape[0]}; re-export it for batch {s.batch}")
        x = rng.standard_normal(shape).astype(np.float32)
        feed = {inp.name: x}
        for _ in range(s.warmup):
            sess.run(None, feed)
        run = []
        for _ in range(s.repeats):
            t0 = time.perf_counter()
            sess.run(None, feed)
            run.append((time.perf_counter() - t0) * 1e3)
        medians.append(float(np.median(run)))
        times.extend(run)
        del sess
    t = np.asarray(times)
    p10, p25, p75, p90 = np.percentile(t, [10, 25, 75, 90])
    stats = {"median": float(np.median(t)), "p10": float(p10), "min": float(t.min())}
    return {"value_ms": stats[s.statistic], "median_ms": stats["median"], "min_ms": stats["min"],
            "mean_ms": float(t.mean()), "std_ms": float(t.std()),
            "p10_ms": float(p10), "p90_ms": float(p90), "iqr_ms": float(p75 - p25), "session_medians_ms": medians,
            "n": int(t.size), "env": environment_fingerprint(s), "settings": asdict(s)}


def best_of_passes(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One model's per-pass :func:`measure_onnx` results folded into one: the pass with the lowest value (noise
    only adds time), with ``pass_values_ms`` (every pass's value) and ``n`` (runs over all passes)."""
    if not results:
        raise ValueError("best_of_passes needs at least one pass")
    best = min(results, key=lambda r: r["value_ms"])
    return {**best, "pass_values_ms": [float(r["value_ms"]) for r in results],
            "n": int(sum(r["n"] for r in results))}


def measure_onnx_passes(paths: Sequence[Path | str], settings: MeasureSettings | None = None, *,
                        progress: bool = False, desc: str = "timing") -> list[dict[str, Any]]:
    """Time several ONNX models together in ``settings.passes`` passes (each pass times every model once, see
    :class:`MeasureSettings`); returns one :func:`best_of_passes` result per path, in order."""
    from tqdm.auto import tqdm

    s = settings or MeasureSettings()
    per_pass: list[list[dict[str, Any]]] = [[] for _ in paths]
    with tqdm(total=s.passes * len(paths), desc=desc, disable=not progress) as bar:
        for _ in range(s.passes):
            for i, path in enumerate(paths):
                per_pass[i].append(measure_onnx(path, s))
                bar.update(1)
    return [best_of_passes(r) for r in per_pass]
