"""The on-disk latency-table format and its safe loader.

A table folder ``latency_tables/<device>/<supernet>/`` holds

* ``table.csv`` — columns ``resolution,key,latency_ms,std_ms,count``: one measured layer signature per
  row (keys: each family's measurable layers, :mod:`supernets.measurable`); the latency of a subnet at resolution ``r`` is the sum
  of its layers' rows at ``r``;
* ``meta.yaml`` — device, source, units, date, the command that produced it, the host fingerprint,
  the latency model to serve (``model:``) and its fitted coefficients, and attribution for converted data;
* optionally ``calibration.csv`` — whole subnets measured end to end (``arch,measured_ms,...``).

Loading uses ``csv`` and ``yaml.safe_load`` with explicit columns; anything malformed is a
:class:`LatencyTableError` naming the file and what was expected.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from predictors.fileio import atomic_write_text  # re-exported: builders and scripts write through it

__all__ = [
    "TABLE_COLUMNS",
    "LatencyTable",
    "LatencyTableError",
    "MissingLatencyKeyError",
    "atomic_write_text",
    "load_meta",
    "load_table",
    "save_table",
]

TABLE_COLUMNS = ("resolution", "key", "latency_ms", "std_ms", "count")


class LatencyTableError(ValueError):
    """A latency table (or its meta.yaml) is missing, malformed or inconsistent."""


class MissingLatencyKeyError(LatencyTableError, KeyError):
    """A layer a subnet needs is not in the table."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass
class LatencyTable:
    """Per-layer latencies of one device for one supernet: ``(resolution, key) -> ms``."""

    entries: dict[tuple[int, str], float]
    meta: dict[str, Any] = field(default_factory=dict)
    std: dict[tuple[int, str], float] = field(default_factory=dict)
    count: dict[tuple[int, str], int] = field(default_factory=dict)
    path: Path | None = None

    @property
    def resolutions(self) -> list[int]:
        return sorted({r for r, _ in self.entries})

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else f"<table {self.meta.get('device', '?')}>"

    def lookup(self, resolution: int, key: str) -> float:
        try:
            return self.entries[(resolution, key)]
        except KeyError:
            raise MissingLatencyKeyError(
                f"latency table {self.name} has no entry for block {key!r} at resolution {resolution} "
                f"(it covers resolutions {self.resolutions}); rebuild or extend the table with "
                f"scripts/build_latency_table.py"
            ) from None

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(TABLE_COLUMNS)
        for (r, key) in sorted(self.entries):
            w.writerow([r, key, repr(float(self.entries[(r, key)])), repr(float(self.std.get((r, key), 0.0))),
                        int(self.count.get((r, key), 1))])
        return buf.getvalue()


def save_table(table: LatencyTable, folder: Path | str) -> Path:
    """Write ``table.csv`` and ``meta.yaml`` atomically into ``folder``."""
    folder = Path(folder)
    atomic_write_text(folder / "table.csv", table.to_csv())
    atomic_write_text(folder / "meta.yaml", yaml.safe_dump(table.meta, sort_keys=False))
    table.path = folder
    return folder


def load_meta(folder: Path | str) -> dict[str, Any]:
    """``meta.yaml`` of a table folder as a dict (safe loader)."""
    path = Path(folder) / "meta.yaml"
    if not path.is_file():
        raise LatencyTableError(f"latency table folder {folder} has no meta.yaml (expected {path})")
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LatencyTableError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise LatencyTableError(f"{path} must hold a mapping (device, source, units, ...), got {type(meta).__name__}")
    return meta


def parse_table_csv(text: str, source: str) -> tuple[dict, dict, dict]:
    """Parse the rows of a ``table.csv`` (see module doc); raise naming ``source`` and the line."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or tuple(reader.fieldnames[: len(TABLE_COLUMNS)]) != TABLE_COLUMNS:
        raise LatencyTableError(
            f"{source}: header is {reader.fieldnames}, expected columns {list(TABLE_COLUMNS)}"
        )
    entries: dict[tuple[int, str], float] = {}
    std: dict[tuple[int, str], float] = {}
    count: dict[tuple[int, str], int] = {}
    for line, row in enumerate(reader, start=2):
        try:
            r = int(row["resolution"])
            key = row["key"]
            ms = float(row["latency_ms"])
            sd = float(row["std_ms"])
            n = int(row["count"])
        except (TypeError, ValueError) as exc:
            raise LatencyTableError(f"{source} line {line}: malformed row {dict(row)} ({exc})") from None
        if not key or not math.isfinite(ms) or ms < 0:
            raise LatencyTableError(
                f"{source} line {line}: key must be non-empty and latency_ms a finite non-negative number, "
                f"got key={key!r}, latency_ms={row['latency_ms']!r}"
            )
        if (r, key) in entries:
            raise LatencyTableError(f"{source} line {line}: duplicate entry for {key!r} at resolution {r}")
        entries[(r, key)] = ms
        std[(r, key)] = sd
        count[(r, key)] = n
    if not entries:
        raise LatencyTableError(f"{source} holds no rows")
    return entries, std, count


def load_table(folder: Path | str) -> LatencyTable:
    """Load ``table.csv`` + ``meta.yaml`` from a table folder."""
    folder = Path(folder)
    meta = load_meta(folder)
    path = folder / "table.csv"
    if not path.is_file():
        raise LatencyTableError(f"latency table folder {folder} has no table.csv (expected {path})")
    entries, std, count = parse_table_csv(path.read_text(encoding="utf-8"), str(path))
    return LatencyTable(entries=entries, meta=meta, std=std, count=count, path=folder)

