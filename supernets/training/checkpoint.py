"""Loading trained supernets from training checkpoints (Lightning ``.ckpt`` files).

A checkpoint written by :class:`~supernets.training.module.SupernetModule` carries, under ``"oncenas"``, the
supernet's registry name and kwargs, its space, the schedule phase reached, the sampler state and the data config;
:func:`load_supernet` rebuilds the supernet from that alone and loads its weights with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from supernets.base import Supernet
from supernets.registry import create_supernet

__all__ = ["CKPT_KEY", "load_checkpoint", "load_supernet", "supernet_state_dict"]

CKPT_KEY = "oncenas"
_PREFIX = "supernet."
_TEACHER_PREFIX = "teacher."


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely; raises if it is not an oncenas training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; pass the .ckpt a training run wrote "
                                f"(<run dir>/checkpoints/last.ckpt or phase_*.ckpt)")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or CKPT_KEY not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not an oncenas training checkpoint (no {CKPT_KEY!r} metadata); "
                         f"train one with `python train.py`")
    return ckpt


def supernet_state_dict(ckpt: dict[str, Any], prefix: str = _PREFIX) -> dict[str, torch.Tensor]:
    """The supernet's (or, with ``prefix="teacher."``, the teacher's) weights from a checkpoint's state dict."""
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def load_supernet(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                  supernet: str | None = None) -> tuple[Supernet, dict[str, Any]]:
    """Rebuild a trained supernet from a training checkpoint.

    Args:
        path: a ``.ckpt`` written by ``train.py``.
        map_location: device for the tensors.
        supernet: if given, the registry name the caller expects; another supernet is a ``ValueError``.

    Returns:
        ``(supernet, meta)``: the supernet with trained weights (eval mode, max subnet active) and the metadata
        ``{"supernet", "supernet_kwargs", "space", "phase", "data", "sampler", ...}``.
    """
    ckpt = load_checkpoint(path, map_location)
    meta = dict(ckpt[CKPT_KEY])
    name = meta.get("supernet")
    if supernet is not None and name != supernet:
        raise ValueError(f"checkpoint {path} holds supernet {name!r}, expected {supernet!r}; "
                         f"pass a checkpoint trained with supernet={supernet}")
    model = create_supernet(name, **dict(meta.get("supernet_kwargs") or {}))
    if meta.get("space") is not None and repr(model.space) != meta["space"]:
        raise ValueError(f"checkpoint {path} was trained on space {meta['space']}, but {name!r} now builds "
                         f"{model.space!r}: the supernet definition changed since training")
    state = supernet_state_dict(ckpt)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not fit supernet {name!r}: missing {list(missing)[:5]}, "
                         f"unexpected {list(unexpected)[:5]} (was it trained with other supernet kwargs?)")
    model.to(map_location).eval()
    model.set_max_net()
    return model, meta
