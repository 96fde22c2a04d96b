"""``calibration.csv``: whole subnets measured end to end beside a latency table, and the calibration fitted on
them (what ``meta.yaml`` stores). Shared by the local build (:mod:`predictors.latency.build`) and the staged one
(:mod:`predictors.latency.stages`), below both.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from predictors.latency.models import fit_calibration
from predictors.latency.table import LatencyTableError

__all__ = ["CALIBRATION_COLUMNS", "calibration_csv", "calibration_summary", "load_calibration"]

CALIBRATION_COLUMNS = ("arch", "resolution", "measured_ms", "std_ms", "table_sum_ms", "n_blocks", "passes")
#: calibration.csv as written before measurements came in passes (each row then counts as one pass).
_CALIBRATION_COLUMNS_V1 = CALIBRATION_COLUMNS[:-1]
#: Fewer calibration subnets than this get a one-coefficient scale instead of ``a*sum + b*n_blocks + c``.
_MIN_AFFINE = 6


def calibration_csv(rows: list[dict[str, Any]]) -> str:
    """``calibration.csv``'s text for ``rows`` (columns :data:`CALIBRATION_COLUMNS`)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CALIBRATION_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**{k: r[k] for k in _CALIBRATION_COLUMNS_V1}, "passes": r.get("passes", 1)})
    return buf.getvalue()


def load_calibration(folder: Path | str) -> list[dict[str, Any]]:
    """Rows of ``calibration.csv`` (whole subnets measured end to end); [] if absent."""
    path = Path(folder) / "calibration.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or tuple(reader.fieldnames) not in (CALIBRATION_COLUMNS, _CALIBRATION_COLUMNS_V1):
            raise LatencyTableError(f"{path}: header {reader.fieldnames}, expected {list(CALIBRATION_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append({"arch": row["arch"], "resolution": int(row["resolution"]),
                             "measured_ms": float(row["measured_ms"]), "std_ms": float(row["std_ms"]),
                             "table_sum_ms": float(row["table_sum_ms"]), "n_blocks": int(row["n_blocks"]),
                             "passes": int(row.get("passes") or 1)})
            except (TypeError, ValueError) as exc:
                raise LatencyTableError(f"{path} line {line}: malformed row {dict(row)} ({exc})") from None
    return rows


def calibration_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fit the calibrated-table coefficients on ``calibration.csv`` rows; what ``meta.yaml`` stores."""
    y = np.array([r["measured_ms"] for r in rows])
    tsum = np.array([r["table_sum_ms"] for r in rows])
    nb = np.array([r["n_blocks"] for r in rows])
    a, b, c = fit_calibration(tsum, nb, y) if len(rows) >= _MIN_AFFINE else (0.0, 0.0, 0.0)
    if a > 0:
        fit = "latency = a*sum + b*n_blocks + c, relative residuals, soft-L1 loss (robust to contended runs)"
    else:  # too few subnets to pin three coefficients (an exact fit through 3 noisy points can slope down)
        a, b, c = float(np.median(y / tsum)), 0.0, 0.0
        fit = f"latency = a*sum, a the median measured/sum ratio ({len(rows)} subnets: too few for three coefficients)"
    rel = np.abs(a * tsum + b * nb + c - y) / y
    return {"a": a, "b": b, "c": c, "n_subnets": len(rows), "fit": fit,
            "train_mape": float(rel.mean()), "train_median_ape": float(np.median(rel)),
            "table_sum_ratio_range": [float((y / tsum).min()), float((y / tsum).max())],
            "table_sum_ratio_median": float(np.median(y / tsum))}
