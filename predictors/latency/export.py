"""Export a static subnet or a single block to ONNX and check it against PyTorch with ONNX Runtime.

Export the *extracted* subnet (``supernet.get_active_subnet()``), never the sliced supernet: the exporter
would keep the full elastic weights and the slicing ops, so both the file and the timing would be wrong.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from predictors.fileio import atomic_path

__all__ = ["DEFAULT_OPSET", "export_onnx", "onnx_max_abs_diff"]

DEFAULT_OPSET = 17


def onnx_max_abs_diff(path: Path | str, module: nn.Module, x: torch.Tensor) -> float:
    """Max absolute difference between ``module(x)`` (eval, no grad) and ONNX Runtime's output on CPU."""
    import onnxruntime as ort

    with torch.no_grad():
        ref = module(x).detach().cpu().numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.detach().cpu().numpy()})[0]
    if out.shape != ref.shape:
        raise RuntimeError(f"ONNX output shape {out.shape} differs from PyTorch's {ref.shape} for {path}")
    return float(np.max(np.abs(out - ref))) if ref.size else 0.0


def export_onnx(module: nn.Module, input_shape: Sequence[int], path: Path | str, *, opset: int = DEFAULT_OPSET,
                check: bool = True, seed: int = 0) -> float:
    """Export ``module`` (put in eval mode) for a fixed ``input_shape`` (NCHW) to ``path``.

    The file is written atomically (temporary name, then ``os.replace``). Uses the TorchScript-based
    exporter (``dynamo=False``): it is deterministic and handles timm's static blocks.

    Returns:
        The max absolute difference between PyTorch and ONNX Runtime on a random input (0.0 if
        ``check=False``).
    """
    if opset < 17:
        raise ValueError(f"opset {opset} is too old; use >= 17 (LayerNorm/hardswish are native from there)")
    path = Path(path)
    module = module.eval()
    gen = torch.Generator().manual_seed(seed)
    p = next(iter(module.parameters()), None)
    dtype = p.dtype if p is not None else torch.float32
    x = torch.randn(*input_shape, generator=gen, dtype=dtype)
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript tracer warnings about python control flow
        torch.onnx.export(module, (x,), tmp, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["output"], do_constant_folding=True)
    return onnx_max_abs_diff(path, module, x) if check else 0.0
