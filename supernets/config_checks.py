"""Checks of user-given option values, shared by every entry point (search.py, train.py, the scripts).

Each check names the key, what was given and what is allowed, and returns the value converted (a command
line gives strings: ``pop_size=abc`` reaches the code as ``'abc'``). Entry points call them once, at their
config boundary, so that a bad value fails before minutes of loading or training, not deep inside a library.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "check_float", "check_int", "check_writable_dir", "reject_comma"]


class ConfigError(ValueError):
    """A bad option value (a ``ValueError``, so callers that catch those keep working)."""


def check_int(key: str, value: Any, *, min: int | None = None, max: int | None = None,
              allow_none: bool = False) -> int | None:
    """``value`` as an int within [min, max]; ``True``/``False`` and ``2.5`` are refused (not silently cast)."""
    if value is None:
        if allow_none:
            return None
        raise ConfigError(f"{key} must be an integer{_range(min, max)}, got null")
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer{_range(min, max)}, got {value!r}")
    try:
        out = int(value) if not isinstance(value, float) or value.is_integer() else None
        if isinstance(value, str):
            # int() accepts '١٢' (Arabic-Indic digits) and ' 3 ': a command line only ever means ASCII digits
            if not value.strip().lstrip("+-").isascii():
                out = None
    except (TypeError, ValueError):
        out = None
    if out is None:
        raise ConfigError(f"{key} must be an integer{_range(min, max)}, got {value!r}")
    if (min is not None and out < min) or (max is not None and out > max):
        raise ConfigError(f"{key} must be an integer{_range(min, max)}, got {out}")
    return out


def check_float(key: str, value: Any, *, min: float | None = None, max: float | None = None,
                allow_none: bool = False, min_open: bool = False) -> float | None:
    """``value`` as a finite float within [min, max] (``min_open``: strictly above ``min``); NaN/inf refused."""
    if value is None:
        if allow_none:
            return None
        raise ConfigError(f"{key} must be a number{_range(min, max, min_open)}, got null")
    try:
        out = None if isinstance(value, bool) else float(value)
        if isinstance(value, str) and not value.strip().isascii():
            out = None
    except (TypeError, ValueError):
        out = None
    if out is None or not math.isfinite(out):
        raise ConfigError(f"{key} must be a finite number{_range(min, max, min_open)}, got {value!r}")
    low_bad = min is not None and (out <= min if min_open else out < min)
    if low_bad or (max is not None and out > max):
        raise ConfigError(f"{key} must be a number{_range(min, max, min_open)}, got {out:g}")
    return out


def _range(min: float | None, max: float | None, min_open: bool = False) -> str:
    if min is not None and max is not None:
        return f" in {'(' if min_open else '['}{min:g}, {max:g}]"
    if min is not None:
        return f" {'>' if min_open else '>='} {min:g}"
    if max is not None:
        return f" <= {max:g}"
    return ""


def reject_comma(key: str, path: Any) -> None:
    """Hydra reads ``a,b`` on a command line as a list (a sweep): a path with a comma cannot be passed on to the
    next step's command line, so it is refused where it is given."""
    if "," in str(path):
        raise ConfigError(f"{key}={path!s} contains a comma, which Hydra command lines read as a list of values; "
                          f"pick a path without commas")


def check_writable_dir(key: str, path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove it writable now (a read-only folder must fail before the work, not
    after it). Returns the path."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{key}={path} is not a writable folder ({e.strerror or e}); pick another {key}") from None
    return path
