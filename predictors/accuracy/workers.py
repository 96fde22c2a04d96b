"""Worker processes that cannot outlive their parent, and one writer per output file.

``build_accuracy_dataset.py jobs=N`` evaluates shards in spawned processes. When the parent is killed
(SIGKILL, an OOM kill, a closed terminal), orphaned workers used to keep appending to their shards while the
documented rerun started new workers on the same files: duplicate and interleaved rows, and merges that failed
for good. Workers now die with their parent, and each CSV is written under an OS file lock (released by the
kernel when its holder dies, so a killed run never leaves a stale lock behind).

Only the standard library is imported here (``filelock`` lazily), so a worker arms itself before heavy imports.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

__all__ = ["die_with_parent", "exclusive_writer"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Make this process exit when ``parent_pid`` dies: at once on Linux (``PR_SET_PDEATHSIG``: the kernel sends
    SIGKILL), and elsewhere, or if the spawning thread was not the parent's main one, within ``poll_s`` through
    a watchdog thread that notices the re-parenting. Use as a process pool's ``initializer``."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (another libc): the watchdog below still works
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(70)  # the parent is gone: stop writing now, its rerun repairs a torn last row
            time.sleep(poll_s)

    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(70)
    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def exclusive_writer(path: str | os.PathLike, what: str = "file"):
    """An acquired lock on ``path`` (as ``.<name>.lock`` beside it); a second writer gets a ``RuntimeError``
    naming the file. Call ``.release()`` when done (or use it as a context manager)."""
    from filelock import FileLock, Timeout

    path = Path(path)
    lock = FileLock(path.with_name(f".{path.name}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RuntimeError(f"{path} is being written by another process (it holds {lock.lock_file}); wait for that "
                           f"{what} to finish or stop it, then rerun (a killed build's workers die with it)") from None
    return lock
