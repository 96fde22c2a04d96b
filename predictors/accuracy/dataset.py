"""Accuracy datasets: measured top-1 of subnets, one CSV row per arch, with a YAML sidecar.

Format (``<stem>.csv``): header ``arch,top1,macs,params``; ``arch`` is the canonical arch string (the key),
``top1`` a fraction in [0, 1], ``macs``/``params`` numbers or empty when unknown. The sidecar ``<stem>.yaml``
names the space (``space_to_dict``), the supernet, and where the numbers come from.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from predictors.accuracy.base import atomic_write_bytes
from predictors.accuracy.spaces import space_from_dict, space_to_dict
from supernets.space import Arch, SearchSpace

__all__ = [
    "COLUMNS",
    "DATASETS_DIR",
    "AccuracyDataset",
    "file_sha256",
    "format_row",
    "import_dynast",
    "meta_path",
    "read_dataset",
    "resolve_dataset",
    "write_dataset",
]

COLUMNS = ("arch", "top1", "macs", "params")
#: Bundled datasets (``dataset=<name>`` resolves to ``<name>.csv`` here).
DATASETS_DIR = Path(__file__).resolve().parents[1] / "artefacts" / "datasets"


@dataclass
class AccuracyDataset:
    """Measured top-1 (fractions) of distinct archs of one space."""

    space: SearchSpace
    archs: list[Arch]
    top1: np.ndarray
    macs: np.ndarray
    params: np.ndarray
    supernet: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        n = len(self.archs)
        self.top1 = np.asarray(self.top1, dtype=np.float64).reshape(-1)
        self.macs = np.asarray(self.macs, dtype=np.float64).reshape(-1)
        self.params = np.asarray(self.params, dtype=np.float64).reshape(-1)
        if not (len(self.top1) == len(self.macs) == len(self.params) == n):
            raise ValueError(f"dataset columns differ in length: {n} archs, {len(self.top1)} top1, "
                             f"{len(self.macs)} macs, {len(self.params)} params")

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def encoded(self) -> np.ndarray:
        return self.space.encode(self.archs)

    @property
    def resolutions(self) -> np.ndarray:
        return np.array([a.r for a in self.archs])

    def subset(self, idx: Sequence[int] | np.ndarray) -> AccuracyDataset:
        idx = np.asarray(idx)
        return AccuracyDataset(self.space, [self.archs[i] for i in idx], self.top1[idx], self.macs[idx],
                               self.params[idx], self.supernet, dict(self.meta), self.path)


def meta_path(csv_path: str | os.PathLike) -> Path:
    p = Path(csv_path)
    return p.with_suffix(".yaml")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_dataset(name_or_path: str | os.PathLike) -> Path:
    """A CSV path, or the name of a bundled dataset (``predictors/artefacts/datasets/<name>.csv``)."""
    p = Path(name_or_path)
    if p.suffix == ".csv" or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"accuracy dataset {p} not found")
        return p
    bundled = DATASETS_DIR / f"{name_or_path}.csv"
    if bundled.is_file():
        return bundled
    names = sorted(q.stem for q in DATASETS_DIR.glob("*.csv"))
    raise FileNotFoundError(f"no accuracy dataset {str(name_or_path)!r}: not a file, and bundled datasets are {names}")


def _number(text: str, what: str, where: str, *, optional: bool) -> float:
    text = (text or "").strip()
    if text == "" and optional:
        return float("nan")
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{where}: {what} {text!r} is not a number") from None
    if not np.isfinite(v) and not optional:
        raise ValueError(f"{where}: {what} {text!r} is not finite")
    return v


def read_dataset(path: str | os.PathLike, *, space: SearchSpace | None = None, supernet: str | None = None,
                 dedupe: bool = True) -> AccuracyDataset:
    """Read and validate a dataset CSV (+ sidecar).

    Args:
        path: the CSV (or a bundled dataset's name).
        space: the space the caller works in; must equal the sidecar's, and is required without a sidecar.
        supernet: if given, the sidecar's supernet must match.
        dedupe: average the top-1 of repeated archs (else a repeated arch is an error).

    Raises:
        FileNotFoundError, or ValueError naming the file, the line and what was expected.
    """
    p = resolve_dataset(path)
    meta: dict[str, Any] = {}
    mp = meta_path(p)
    if mp.is_file():
        try:
            meta = yaml.safe_load(mp.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"dataset sidecar {mp} is not valid YAML: {err}") from None
        if not isinstance(meta, dict):
            raise ValueError(f"dataset sidecar {mp} must be a mapping, got {type(meta).__name__}")
    file_space = space_from_dict(meta["space"]) if "space" in meta else None
    if file_space is None and space is None:
        raise ValueError(f"dataset {p} has no sidecar {mp.name} naming its space; pass space=... explicitly")
    if space is not None and file_space is not None and space != file_space:
        raise ValueError(
            f"dataset {p} is for space {file_space!r}, not the requested {space!r}; "
            f"use a dataset built from a supernet of that space"
        )
    if supernet is not None and meta.get("supernet") not in (None, supernet):
        raise ValueError(f"dataset {p} was measured on supernet {meta.get('supernet')!r}, not {supernet!r}")
    sp = space if space is not None else file_space
    assert sp is not None
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:  # a binary file or a cut multi-byte character
        raise ValueError(f"dataset {p} is not UTF-8 text ({err}); expected a CSV with header {','.join(COLUMNS)}") from None
    if not text.strip():
        raise ValueError(f"dataset {p} is empty; expected a header {','.join(COLUMNS)} and one row per arch")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("arch", "top1") if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"dataset {p}: header {reader.fieldnames} lacks {missing}; expected {','.join(COLUMNS)}")
    rows: dict[Arch, list[tuple[float, float, float]]] = {}
    for line, row in enumerate(reader, start=2):
        where = f"{p}:{line}"
        if None in row or any(v is None for v in row.values()):
            # DictReader fills a short row's missing keys with None and files a long row's extras under None
            n_fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
            raise ValueError(f"{where}: row has {n_fields} fields, expected {len(reader.fieldnames or [])} "
                             f"(a truncated or corrupt line)")
        try:
            arch = sp.parse(row["arch"])
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        top1 = _number(row["top1"], "top1", where, optional=False)
        if not 0.0 <= top1 <= 1.0:
            raise ValueError(f"{where}: top1 {top1} is not a fraction in [0, 1] (percentages must be divided by 100)")
        macs = _number(row.get("macs", ""), "macs", where, optional=True)
        params = _number(row.get("params", ""), "params", where, optional=True)
        if arch in rows and not dedupe:
            raise ValueError(f"{where}: arch {arch} appears twice")
        rows.setdefault(arch, []).append((top1, macs, params))
    if not rows:
        raise ValueError(f"dataset {p} has a header but no rows")
    archs = list(rows)
    vals = np.array([np.mean(rows[a], axis=0) for a in archs])
    return AccuracyDataset(sp, archs, vals[:, 0], vals[:, 1], vals[:, 2], meta.get("supernet", supernet), meta, p)


def format_row(arch: Arch, top1: float, macs: float, params: float) -> list[str]:
    """A dataset CSV row (:data:`COLUMNS`): numbers as short exact text, NaN as an empty field."""
    def num(v: float) -> str:
        return "" if not np.isfinite(v) else (str(int(v)) if float(v).is_integer() else repr(float(v)))

    return [str(arch), repr(float(top1)), num(macs), num(params)]


def write_dataset(ds: AccuracyDataset, path: str | os.PathLike, *, meta: dict[str, Any] | None = None) -> Path:
    """Write ``<stem>.csv`` + ``<stem>.yaml`` atomically."""
    p = Path(path)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for a, t, m, q in zip(ds.archs, ds.top1, ds.macs, ds.params):
        w.writerow(format_row(a, t, m, q))
    sidecar = {"format": "oncenas-accuracy-dataset/1", "supernet": ds.supernet, "space": space_to_dict(ds.space),
               "n": len(ds), **(meta if meta is not None else {k: v for k, v in ds.meta.items()
                                                               if k not in ("format", "supernet", "space", "n")})}
    atomic_write_bytes(p, buf.getvalue().encode())
    atomic_write_bytes(meta_path(p), yaml.safe_dump(sidecar, sort_keys=False).encode())
    return p


def import_dynast(files: Iterable[str | os.PathLike], space: SearchSpace, *, supernet: str | None = None) -> AccuracyDataset:
    """DyNAS-T result CSVs (``Sub-network`` a Python-literal OFA dict, ``Top-1 Acc (%)``, ``MACs``,
    ``Model Parameters``) -> one row per distinct arch, top-1 averaged over repeats, as a fraction.

    The dict is read with ``ast.literal_eval`` (literals only; nothing is executed).
    """
    rows: dict[Arch, list[tuple[float, float, float]]] = {}
    for f in files:
        with open(f, newline="") as fh:
            reader = csv.DictReader(fh)
            need = ["Sub-network", "Top-1 Acc (%)"]
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{f}: not a DyNAS-T results CSV (lacks {missing}; header {reader.fieldnames})")
            for line, row in enumerate(reader, start=2):
                try:
                    cfg = ast.literal_eval(row["Sub-network"])
                    arch = space.from_ofa_dict(cfg)
                except (ValueError, SyntaxError) as err:
                    raise ValueError(f"{f}:{line}: bad Sub-network {row['Sub-network']!r}: {err}") from None
                where = f"{f}:{line}"
                top1 = _number(row["Top-1 Acc (%)"], "Top-1 Acc (%)", where, optional=False) / 100.0
                macs = _number(row.get("MACs") or "", "MACs", where, optional=True)
                params = _number(row.get("Model Parameters") or "", "Model Parameters", where, optional=True)
                rows.setdefault(arch, []).append((top1, macs, params))
    if not rows:
        raise ValueError("no rows in the given DyNAS-T files")
    archs = list(rows)
    vals = np.array([np.mean(rows[a], axis=0) for a in archs])
    n_raw = sum(len(v) for v in rows.values())
    meta = {"n_raw_rows": n_raw, "n_archs": len(archs)}
    return AccuracyDataset(space, archs, vals[:, 0], vals[:, 1], vals[:, 2], supernet, meta)
