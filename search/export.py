"""Export chosen front subnets ready to deploy: the static subnet's state dict with its ``Arch`` string
(``.pt``) and an ONNX model checked against PyTorch with ONNX Runtime (``.onnx``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictors.fileio import atomic_path
from supernets.space import Arch
from supernets.utils import resize_batch

__all__ = ["choose_spread", "export_subnets"]

log = logging.getLogger(__name__)

#: max |ORT - torch| on a subnet's logits: float32 reorderings stay near 1e-5; a wrong graph is far above
ONNX_ATOL = 1e-3


def choose_spread(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over a front of ``n`` points sorted by latency (both ends included)."""
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def export_subnets(supernet: Any, archs: Sequence[Arch], out_dir: Path, *, onnx: bool = True,
                   in_chans: int | None = None, weights: str = "untrained",
                   calib: Sequence[Any] | None = None, onnx_atol: float = ONNX_ATOL) -> list[dict[str, Any]]:
    """Export each arch as ``<i>_r<r>.pt`` (+ ``.onnx``) in ``out_dir``; returns one record per arch.

    ``calib``: input batches (e.g. the checkpoint's training data) to recalibrate each static subnet's
    BatchNorm statistics on, at the subnet's resolution, before saving (OFA's step before deploying a
    subnet: the supernet's running statistics belong to no particular subnet).

    An ONNX model whose ONNX Runtime output differs from PyTorch's by more than ``onnx_atol`` (absolute, on
    the logits of a random input), or is not finite, is refused: its files are removed and a ``ValueError``
    names the arch."""
    import torch

    if supernet is None:
        raise ValueError("export needs a supernet: run the search with a registered supernet or ckpt=<checkpoint>")
    out_dir.mkdir(parents=True, exist_ok=True)
    if in_chans is None:
        in_chans = _in_chans(supernet)
    records = []
    was_training = supernet.training
    supernet.eval()
    try:
        for i, arch in enumerate(archs):
            arch = supernet.space.parse(str(arch)) if arch.space != supernet.space else arch
            supernet.set_active_subnet(arch)
            sub = supernet.get_active_subnet().eval()
            if calib:
                from supernets.bn import recalibrate_bn

                recalibrate_bn(sub, list(calib), n_batches=len(calib), transform=lambda x, r=arch.r: resize_batch(x, r))
            stem = f"{i:02d}_r{arch.r}"
            pt = out_dir / f"{stem}.pt"
            payload = {"arch": str(arch), "supernet": getattr(supernet, "name", None), "weights": weights,
                       "bn_recalibrated_batches": len(calib) if calib else 0,
                       "state_dict": {k: v.detach().clone() for k, v in sub.state_dict().items()}}
            with atomic_path(pt) as tmp:
                torch.save(payload, tmp)
            rec: dict[str, Any] = {"arch": str(arch), "pt": str(pt)}
            if onnx:
                from predictors.latency.export import export_onnx

                path = out_dir / f"{stem}.onnx"
                rec["onnx"] = str(path)
                rec["onnx_max_abs_diff"] = diff = float(export_onnx(sub, (1, in_chans, arch.r, arch.r), path))
                if not np.isfinite(diff) or diff > onnx_atol:
                    path.unlink(missing_ok=True)
                    pt.unlink(missing_ok=True)
                    why = ("non-finite outputs: the weights hold NaN/inf (a diverged checkpoint?)"
                           if not np.isfinite(diff) else "ONNX Runtime computes another function than PyTorch")
                    raise ValueError(f"export of subnet {arch} refused: ONNX Runtime and PyTorch outputs differ by "
                                     f"{diff} (max abs), tolerance {onnx_atol:g} ({why})")
            records.append(rec)
    finally:
        supernet.train(was_training)
    return records


def _in_chans(supernet: Any) -> int:
    for attr in ("in_chans",):
        v = getattr(supernet, attr, None) or getattr(getattr(supernet, "config", None), attr, None)
        if v:
            return int(v)
    import torch

    for m in supernet.modules():
        if isinstance(m, torch.nn.Conv2d) or hasattr(m, "in_channels"):
            return int(getattr(m, "in_channels", 3))
    return 3
