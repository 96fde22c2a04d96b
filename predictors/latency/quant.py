"""Quantized subnets with ONNX Runtime's own tooling (the only quantizer here): static post-training quantization in
QDQ format, per-channel signed 8-bit weights, unsigned 8-bit activations, calibrated on real inputs through a
``CalibrationDataReader`` (``MinMax`` by default; ``Entropy`` / ``Percentile`` configurable), mixed precision by
passing the FP32 groups' nodes as ``nodes_to_exclude`` (groups read from the node-name scopes torch's exporter
writes and the graph's data flow, :func:`supernets.quant.precision_group_of_node`).

The latency table builder exports through :func:`export_layer_onnx` / :func:`export_subnet_onnx`, so INT8 layers
and mixed-precision calibration subnets are built, timed and calibrated by the same code as FP32 ones.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from predictors.fileio import atomic_path
from predictors.latency.export import export_onnx
from supernets.utils import resize_batch

__all__ = ["QuantSettings", "export_layer_onnx", "export_quant_subnet", "export_subnet_onnx", "ort_top1",
           "quantize_onnx"]

_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantSettings:
    """How subnets are quantized.

    Attributes:
        method: calibration method of ``quantize_static`` (``minmax``, ``entropy``, ``percentile``).
        per_channel: per-output-channel weight scales (else per tensor).
        calib_samples: inputs the calibration reader feeds (from the caller's training batches).
        op_types: operator types to quantize (``quantize_static``'s ``op_types_to_quantize``); ``None``: every type
            ORT can quantize (element-wise ops too, each wrapped in its own Q/DQ pair where ORT's CPU kernels have no
            INT8 version of it).
    """

    method: str = "minmax"
    per_channel: bool = True
    calib_samples: int = 128
    op_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"quantization method {self.method!r} is not one of {_METHODS}")
        if self.calib_samples < 1:
            raise ValueError(f"calib_samples must be >= 1, got {self.calib_samples}")


def _reader(input_name: str, samples: Sequence[np.ndarray]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Samples(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {input_name: np.ascontiguousarray(x, dtype=np.float32)}

        def rewind(self) -> None:
            self.it = iter(samples)

    return _Samples()


def quantize_onnx(fp32_path: Path | str, out_path: Path | str, samples: Sequence[np.ndarray], *,
                  exclude_groups: Sequence[int] = (), n_groups: int = 1,
                  settings: QuantSettings | None = None) -> dict[str, Any]:
    """Quantize an exported FP32 model with ``onnxruntime.quantization.quantize_static`` (QDQ, S8 weights,
    U8 activations), leaving the nodes of ``exclude_groups`` in FP32; written atomically to ``out_path``.

    Args:
        samples: batch-1 inputs (NCHW float32) for calibration.
        exclude_groups / n_groups: precision groups to keep in FP32, of ``n_groups``
            (:func:`supernets.quant.precision_group_of_node`).

    Returns:
        ``{"n_nodes", "n_excluded", "bytes"}``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from supernets.quant import precision_groups_of_graph

    s = settings or QuantSettings()
    if not samples:
        raise ValueError(f"quantizing {fp32_path} needs calibration samples, got none")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[s.method]
    with tempfile.TemporaryDirectory(prefix="quant_pre_") as tmp, atomic_path(Path(out_path), suffix=".onnx") as out:
        # ORT's pre-processing (shape inference + its basic graph optimisation): the TorchScript exporter routes
        # conv biases through Identity nodes, which the quantizer cannot fold (INT8 was 3x slower than FP32 without)
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        model = onnx.load(str(pre))
        names = [n.name for n in model.graph.node]
        groups = precision_groups_of_graph(model.graph, n_groups)
        keep = {int(g) for g in exclude_groups}
        exclude = [n for n, g in zip(names, groups) if g in keep]
        quantize_static(str(pre), str(out), _reader(model.graph.input[0].name, list(samples)[: s.calib_samples]),
                        quant_format=QuantFormat.QDQ, per_channel=s.per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=method,
                        op_types_to_quantize=list(s.op_types) if s.op_types else None)
    return {"n_nodes": len(names), "n_excluded": len(exclude), "bytes": Path(out_path).stat().st_size}


def _random_samples(shape: Sequence[int], n: int = 8, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, *shape[1:])).astype(np.float32) for _ in range(n)]


def export_quant_subnet(module: Any, input_shape: Sequence[int], bits: Sequence[int], path: Path | str,
                        samples: Sequence[np.ndarray] | None = None, *,
                        settings: QuantSettings | None = None) -> dict[str, Any]:
    """Export a static FP32 module and quantize the groups whose ``bits`` are 8 (all FP32: the plain export).

    ``samples``: calibration inputs (default: random normal ones, enough for timing, not for accuracy)."""
    from supernets.quant_space import INT8

    path = Path(path)
    fp32_groups = [g for g, b in enumerate(bits) if b != INT8]
    if len(fp32_groups) == len(bits):
        export_onnx(module, input_shape, path, check=False)
        return {"n_nodes": None, "n_excluded": None, "bytes": path.stat().st_size}
    with tempfile.TemporaryDirectory(prefix="quant_export_") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(module, input_shape, fp32, check=False)
        return quantize_onnx(fp32, path, samples if samples else _random_samples(input_shape),
                             exclude_groups=fp32_groups, n_groups=len(bits), settings=settings)


def export_layer_onnx(geometry: Any, spec: Any, input_shape: Sequence[int], path: Path | str) -> None:
    """Export one measurable layer for a latency table: FP32 as always; a :class:`~supernets.quant.QuantLayer`
    in INT8 is quantized as a one-group model (calibrated on random inputs: timing does not depend on them)."""
    from supernets.quant import QuantLayer

    module = geometry.build(spec)
    if isinstance(spec, QuantLayer) and spec.int8:
        export_quant_subnet(module, input_shape, (8,), path)
    else:
        export_onnx(module, input_shape, path, check=False)


def export_subnet_onnx(supernet: Any, arch: Any, input_shape: Sequence[int], path: Path | str) -> None:
    """Export a whole subnet for timing: a :class:`~supernets.quant.QuantSupernet` arch with its precisions."""
    supernet.set_active_subnet(arch)
    module = supernet.get_active_subnet().eval()
    bits = getattr(supernet, "precision", None)
    if bits is None:
        export_onnx(module, input_shape, path, check=False)
    else:
        export_quant_subnet(module, input_shape, bits, path)


def ort_top1(path: Path | str, batches: Iterable[tuple[Any, Any]], r: int | None = None) -> float:
    """Top-1 (fraction) of an ONNX classifier with ONNX Runtime (one intra-op thread) on labelled batches; inputs are
    resized to ``r`` (the subnet's resolution) and fed one image at a time (the models are exported for batch 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = total = 0
    for x, y in batches:
        if r is not None:
            x = resize_batch(x, r)
        xs = x.detach().cpu().numpy().astype(np.float32)
        pred = np.array([int(np.argmax(sess.run(None, {name: xs[i: i + 1]})[0])) for i in range(len(xs))])
        correct += int((pred == np.asarray(y)).sum())
        total += len(xs)
    if total == 0:
        raise ValueError(f"no labelled images to evaluate {path} on")
    return correct / total
