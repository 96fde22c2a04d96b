"""What every reproduced table shares: the result value, markdown/CSV rendering, atomic writes, the plot
file, and the provenance (command, date, machine, software, commit) printed above each table in RESULTS.md."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from predictors.fileio import atomic_path, atomic_write_bytes
from supernets.paths import REPO_ROOT

__all__ = [
    "Column",
    "TableResult",
    "fmt",
    "machine",
    "markdown",
    "new_figure",
    "provenance",
    "quiet_search",
    "run_train",
    "save_figure",
    "table_command",
    "write_atomic",
    "write_table",
]


@dataclass(frozen=True)
class Column:
    """A table column: row key, header, and a format spec for markdown (``".2f"``, ``"pct1"`` = fraction as
    percent with 1 decimal, ``""`` = str). The CSV keeps the raw values."""

    key: str
    header: str
    spec: str = ""


@dataclass
class TableResult:
    """One reproduced table: rows of raw values, how to show them, notes, and a plot drawer."""

    name: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    plot: Callable[[Path], None] | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([{c.key: r.get(c.key) for c in self.columns} for r in self.rows],
                            columns=[c.key for c in self.columns])


def fmt(value: Any, spec: str = "") -> str:
    """A cell as text: ``None``/NaN as ``n/a``; ``pct<k>`` shows a fraction as a percentage."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec.startswith("pct"):
        return f"{100 * float(value):.{int(spec[3:] or 1)}f}"
    if spec and isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: TableResult) -> str:
    """The table as GitHub markdown: title, the table, then its notes."""
    head = "| " + " | ".join(_cell(c.header) for c in result.columns) + " |"
    sep = "|" + "|".join("---" for _ in result.columns) + "|"
    body = ["| " + " | ".join(_cell(fmt(r.get(c.key), c.spec)) for c in result.columns) + " |" for r in result.rows]
    lines = [f"### {result.title}", "", head, sep, *body]
    if result.notes:
        lines.append("")
        lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file atomically (a temporary file beside it, then ``os.replace``), text as UTF-8."""
    atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)


def new_figure(*, figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **subplots_kw: Any) -> tuple[Any, Any]:
    """``(figure, axes)`` as ``plt.subplots`` gives them, from matplotlib's object API: no pyplot state and no
    global backend switch (``savefig`` renders through Agg whatever backend the caller's process uses)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplots_kw)


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure atomically (png)."""
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110)


def write_table(result: TableResult, out_dir: Path) -> dict[str, Path]:
    """``table.md``, ``table.csv`` and ``table.png`` (when the table has a plot) in ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {"md": out_dir / "table.md", "csv": out_dir / "table.csv"}
    write_atomic(paths["md"], markdown(result))
    write_atomic(paths["csv"], result.frame().to_csv(index=False, float_format="%.6g"))
    if result.plot is not None:
        paths["png"] = out_dir / "table.png"
        result.plot(paths["png"])
    return paths


def machine() -> str:
    """CPU model and logical core count of this host."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"


def git_commit() -> str:
    """The repository's HEAD commit (``+dirty`` when tracked files differ), or ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=20, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def software() -> str:
    """Python and the versions of the libraries a table's numbers go through, with numpy's BLAS and the kernel set it
    chose for this CPU (kernels sum in different orders; see ``predictors.accuracy.numpy_mlp``)."""
    from importlib.metadata import PackageNotFoundError, version

    import threadpoolctl

    parts = [f"Python {platform.python_version()}"]
    for dist in ("numpy", "torch", "pymoo", "onnxruntime", "scikit-learn"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} not installed")
    blas = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    if blas:  # numpy's own (scipy and torch may load others)
        b = next((i for i in blas if "numpy" in str(i.get("filepath", ""))), blas[0])
        parts.append(f"BLAS {b.get('internal_api')} {b.get('version')} ({b.get('architecture') or 'kernels n/a'})")
    return ", ".join(parts)


def provenance(command: str, seconds: float | None = None) -> list[str]:
    """The lines printed above a table: command, date, machine, software, commit (and the wall time)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"- command: `{command}`", f"- date: {now}", f"- machine: {machine()}", f"- software: {software()}",
             f"- commit: {git_commit()}"]
    if seconds is not None:
        lines.append(f"- wall time: {seconds:.1f} s")
    return lines


def quiet_search(cfg: dict[str, Any], log: Path, **models: Any) -> dict[str, Any]:
    """``search.run(cfg, **models)`` with its printed summary sent to ``log`` (the table is what is printed)."""
    import contextlib

    import search

    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        return search.run(cfg, **models)


def table_command(name: str, overrides: Sequence[str] = ()) -> str:
    return " ".join(["python scripts/reproduce.py", f"table={name}", *overrides])


def run_train(overrides: list[str], run_dir: Path, log: Path) -> float:
    """``python train.py <overrides>`` into ``run_dir`` (a subprocess: the tables train as a user would), its
    output in ``log``; returns the wall seconds. A failed run raises with the log's tail."""
    cmd = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"training failed ({' '.join(cmd)}), exit {proc.returncode}; log {log}:\n{tail}")
    return time.perf_counter() - t0
