"""Export a front's quantized subnets and re-measure them (issue 30): each arch of a
:class:`~supernets.quant_space.QuantSpace` is written as the quantized ONNX model ONNX Runtime runs (static QDQ,
calibrated on training images, FP32 groups excluded; :class:`~predictors.accuracy.quant.QuantEvaluator`) beside
its FP32 twin (the same base subnet unquantized); every file is timed together in passes (one intra-op thread on a
shared host: ratios within one run compare), and each record holds the measured top-1, latency and bytes next to the
predicted ones, plus speed-up, size ratio and accuracy drop against the twin.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from predictors.fileio import atomic_write_text

__all__ = ["export_quantized"]


def export_quantized(evaluator: Any, archs: Sequence[Any], predicted: Sequence[dict[str, float]], out_dir: Path | str,
                     settings: Any, *, start: int = 0, tag: dict[str, Any] | None = None,
                     measure: bool = True, latency_model: Any = None) -> list[dict[str, Any]]:
    """Write ``<i>_r<r>.onnx`` (+ ``_fp32.onnx``) for each arch into ``out_dir`` and measure them.

    Args:
        evaluator: a :class:`~predictors.accuracy.quant.QuantEvaluator` (its quant space's archs).
        predicted: per arch ``{"top1": ..., "latency_ms": ...}`` (the search's predictions).
        settings: :class:`~predictors.latency.measure.MeasureSettings` for the timing passes.
        start: number of the first file (several fronts into one numbering).
        tag: extra fields for every record (e.g. which search it came from).
        measure: time the files now (``False``: the caller times several exports together with
            :func:`measure_exports`).
        latency_model: the search's latency model over ``evaluator``'s (mixed) space: when given, each FP32 twin's
            latency is predicted too, so a miss shared by a subnet and its twin reads as the host's speed having
            moved since the table was built, and a miss of the quantized file alone as the model's.

    Returns:
        One record per arch (also written to ``exported.json`` in ``out_dir`` when measured).
    """
    sp = evaluator.qnet.space
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    twins = [sp.join(sp.split(arch)[0], 32) for arch in archs]  # the same base subnet, all FP32
    for i, (arch, twin_arch, pred) in enumerate(zip(archs, twins, predicted, strict=True), start=start):
        path, twin = out_dir / f"{i:02d}_r{arch.r}.onnx", out_dir / f"{i:02d}_r{arch.r}_fp32.onnx"
        rec = evaluator.evaluate(arch, path)
        evaluator.evaluate(twin_arch, twin)
        records.append({**rec, **(tag or {}), "onnx": str(path), "onnx_fp32": str(twin),
                        "top1_predicted": float(pred["top1"]), "latency_predicted_ms": float(pred["latency_ms"])})
    if latency_model is not None and records:
        for rec, ms in zip(records, latency_model.predict(twins)):
            rec["latency_fp32_predicted_ms"] = float(ms)
    if measure:
        measure_exports(records, settings)
        atomic_write_text(out_dir / "exported.json", json.dumps(records, indent=1))
    return records


def measure_exports(records: list[dict[str, Any]], settings: Any, *,
                    references: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Time every record's quantized file and FP32 twin together (``settings.passes`` passes) and add the measured
    latency, speed-up, size ratio, accuracy drop and prediction errors to the records (in place). ``references``:
    more ONNX files timed in the same passes (e.g. a table's calibration subnets, to refit it to the host's state
    of this session); returns their timings."""
    from predictors.latency.measure import measure_onnx_passes

    # each file next to its twin in every pass: on a shared host the load moves within a pass (byte-identical FP32
    # files timed a pass-half apart read 0.58-1.20x each other at load 7-9), and the speed-up compares the pair
    pairs = [p for e in records for p in (e["onnx"], e["onnx_fp32"])]
    timing = measure_onnx_passes([*pairs, *references], settings, desc="exported subnets")
    timing, ref_timing = timing[: len(pairs)], timing[len(pairs):]
    for e, m, m32 in zip(records, timing[0::2], timing[1::2]):
        e.update(latency_ms=m["value_ms"], latency_fp32_ms=m32["value_ms"], speedup=m32["value_ms"] / m["value_ms"],
                 size_ratio=e["bytes_fp32"] / e["bytes"], drop_points=100 * (e["top1_fp32"] - e["top1"]),
                 latency_err=(e["latency_predicted_ms"] - m["value_ms"]) / m["value_ms"],
                 top1_err_points=100 * (e["top1_predicted"] - e["top1"]))
        if "latency_fp32_predicted_ms" in e:
            e["latency_fp32_err"] = (e["latency_fp32_predicted_ms"] - m32["value_ms"]) / m32["value_ms"]
    return ref_timing
