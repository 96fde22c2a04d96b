"""Resumable search state, saved atomically (``.npz`` written to a temporary file, then ``os.replace``).

One file per run directory holds every evaluated arch (the evaluator's store), and per device: the
algorithm's loop state (population, generation, generator state), its history rows and whether it is
done. Loading uses ``allow_pickle=False``; metadata is JSON.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from predictors.fileio import atomic_path

__all__ = ["LOCK_FILE", "STATE_FILE", "exclusive_run_dir", "load_state", "save_state"]

STATE_FILE = "search_state.npz"
LOCK_FILE = ".search.lock"


@contextmanager
def exclusive_run_dir(out: str | os.PathLike, *, keep_state: bool) -> Iterator[Path]:
    """Hold ``<out>/.search.lock`` for the whole search: a second search into the same folder would overwrite
    this one's state and outputs, so it is refused at once. Also refuses, without ``resume``, a folder that
    already holds a state (a finished or interrupted search that would be silently replaced), and a folder
    that cannot be written (found now, not after an hour of search).

    The lock is an OS file lock (``filelock``): a killed run releases it, no stale lock file to delete.
    """
    from filelock import FileLock, Timeout

    from supernets.config_checks import check_writable_dir

    out = check_writable_dir("out_dir", out)
    lock = FileLock(out / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RuntimeError(f"another search is running into out_dir={out} (it holds {out / LOCK_FILE}); wait for it "
                           f"to finish or pick another out_dir") from None
    try:
        if not keep_state and (out / STATE_FILE).exists():
            raise ValueError(f"out_dir={out} already holds a search state ({STATE_FILE}); pass resume=true to "
                             f"continue that search, overwrite=true to start over, or another out_dir")
        yield out
    finally:
        lock.release()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def save_state(path: str | os.PathLike, *, evaluator: dict[str, np.ndarray], meta: dict[str, Any],
               arrays: dict[str, dict[str, np.ndarray]]) -> None:
    """Write the whole state atomically. ``arrays[device]`` holds the algorithm's array state."""
    path = Path(path)
    payload: dict[str, np.ndarray] = {f"ev__{k}": np.asarray(v) for k, v in evaluator.items()}
    for dev, arrs in arrays.items():
        for k, v in arrs.items():
            payload[f"dev__{dev}__{k}"] = np.asarray(v)
    payload["meta"] = np.array(json.dumps(meta, default=_json_default))
    with atomic_path(path, suffix=".tmp.npz") as tmp:  # np.savez appends .npz to any other name
        np.savez(tmp, **payload)


def load_state(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """(evaluator state, meta, per-device arrays) from :func:`save_state`'s file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:  # a truncated .npz gives the last three
        raise ValueError(f"cannot read search state {path} ({e}); delete it or run without resume=true") from None
    if "meta" not in data:
        raise ValueError(f"{path} is not a search state file (no 'meta'); delete it or run without resume=true")
    meta = json.loads(str(data.pop("meta")))
    ev = {k[4:]: v for k, v in data.items() if k.startswith("ev__")}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for k, v in data.items():
        if k.startswith("dev__"):
            _, dev, name = k.split("__", 2)
            arrays.setdefault(dev, {})[name] = v
    return ev, meta, arrays
