"""Atomic file writes for the predictors package: a temporary file in the same folder, fsync, then ``os.replace``,
so readers see the old file or the new one, never half of one. The new file gets the permissions ``open()``
would give it (``0o666 & ~umask``): ``mkstemp`` creates 0600, which would hide shared tables and datasets
from other users.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "default_file_mode", "publish"]


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux >= 4.7 reports it in /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # no /proc: os.umask can only be read by setting it, so set and restore at once (a tiny race with threads)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` gives a new file."""
    return 0o666 & ~_umask()


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give the finished temporary file ``tmp`` the usual permissions and move it onto ``path`` atomically."""
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary path beside ``path`` for a writer that takes a file name (``savefig``, ``torch.save``,
    ``np.savez``: give ``suffix`` the extension it insists on); when the block ends without an error the file is
    fsynced, given the usual permissions and moved onto ``path``; it is removed in any case."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        publish(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, then ``os.replace``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8 (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))
