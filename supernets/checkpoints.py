"""Loading trained supernets from training checkpoints (Lightning ``.ckpt`` files).

Below the training code (which writes and resumes them) so that search and predictors load checkpoints without
importing it.

A checkpoint written by :class:`~supernets.training.module.SupernetModule` carries, under ``"oncenas"``, the
supernet's registry name and kwargs, its space, the schedule phase reached, the sampler state and the data config;
:func:`load_supernet` rebuilds the supernet from that alone and loads its weights with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from supernets.base import Supernet
from supernets.registry import create_supernet

__all__ = ["CKPT_KEY", "load_checkpoint", "load_supernet", "mid_epoch_batches", "resume_differences",
           "save_supernet", "supernet_state_dict"]

CKPT_KEY = "oncenas"
_PREFIX = "supernet."
_TEACHER_PREFIX = "teacher."


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely; raises if it is not an oncenas training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; pass the .ckpt a training run wrote "
                                f"(<run dir>/checkpoints/last.ckpt or phase_*.ckpt)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        # a copy cut short or a disk that filled up: torch says "PytorchStreamReader failed reading zip archive"
        raise ValueError(f"checkpoint {path} cannot be read ({str(e).splitlines()[0][:160]}): it is truncated or "
                         f"not a torch checkpoint; use an earlier checkpoint of the run (checkpoints/epoch*.ckpt) "
                         f"or train again") from None
    if not isinstance(ckpt, dict) or CKPT_KEY not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not an oncenas training checkpoint (no {CKPT_KEY!r} metadata); "
                         f"train one with `python train.py`")
    return ckpt


#: data keys that do not change what is trained: where the files are and how many processes load them
_DATA_KEYS_FREE = frozenset({"num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "root",
                             "data_dir", "path"})
#: schedule keys a resumed run may change: which phases this invocation runs
_SCHEDULE_KEYS_FREE = frozenset({"start_phase", "end_phase"})


def resume_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between the run that wrote a checkpoint (its ``"oncenas"`` metadata) and the run resuming
    it, among what changes the result: the supernet's kwargs (e.g. ``resolutions``), the data settings, the
    schedule and the seed. Each entry names the key, the checkpoint's value and this run's."""
    out: list[str] = []

    def cmp(prefix: str, a: Any, b: Any, free: frozenset[str] = frozenset()) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in dict.fromkeys([*a, *b]):
                if k not in free:
                    cmp(f"{prefix}.{k}", a.get(k), b.get(k))
        elif a != b:
            out.append(f"{prefix}: checkpoint {a!r}, now {b!r}")

    for key, free in (("supernet_kwargs", frozenset()), ("data", _DATA_KEYS_FREE),
                      ("schedule", _SCHEDULE_KEYS_FREE), ("seed", frozenset())):
        if key in saved and key in now:  # a checkpoint written before a key was recorded is checked on the rest
            cmp("supernet" if key == "supernet_kwargs" else key, saved[key], now[key], free)
    return out


def mid_epoch_batches(checkpoint: dict[str, Any]) -> int:
    """Batches of an unfinished epoch a checkpoint was written after (0 at an epoch's end or start): Lightning's own
    loop state says whether the epoch finished, the oncenas metadata how many batches it had trained on."""
    loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    epochs = (loop.get("epoch_progress") or {}).get("current") or {}
    started, processed = int(epochs.get("started", 0)), int(epochs.get("processed", 0))
    if started <= processed:  # the epoch of this checkpoint was completed (or not begun)
        return 0
    return int((checkpoint.get(CKPT_KEY) or {}).get("batches_in_epoch", 0))


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


def save_supernet(net: torch.nn.Module, path: str | os.PathLike, *, name: str, kwargs: dict[str, Any] | None = None,
                  data: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    """Write ``net`` (a supernet built anywhere but ``train.py``: converted, fine-tuned) as the checkpoint ``train.py``
    writes, so :func:`load_supernet`, ``search.py ckpt=`` and the accuracy builder read it: its weights, and under
    ``"oncenas"`` its registry ``name`` and ``kwargs``, its space, ``data`` (the data config its BatchNorm is
    recalibrated on and its accuracy measured with; None: consumers ask for ``data.root``) and ``meta``. Written
    atomically. Returns the metadata."""
    from predictors.fileio import atomic_path

    info = {"supernet": name, "supernet_kwargs": dict(kwargs or {}), "space": repr(net.space),
            "data": dict(data) if data else None, **meta}
    # contiguous: a sliced or sorted weight saved as a view would carry its whole storage
    state = {f"{_PREFIX}{k}": v.contiguous() for k, v in net.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(path)) as tmp:
        torch.save({CKPT_KEY: info, "state_dict": state}, tmp)
    return info
