"""Per-device outputs of a search: ``pareto.csv``, ``pareto.json``, ``pareto.png``, ``history.csv``,
and the summary table printed at the end. Every file is written atomically."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictors.base import ArchModel
from predictors.fileio import atomic_path, atomic_write_text
from search.evaluator import ArchEvaluator
from search.objectives import DeviceObjectives, latency_values
from supernets.utils import to_plain

__all__ = ["front_table", "published_reference", "summary_table", "write_atomic", "write_device_outputs"]

PARETO_COLUMNS = ["arch", "top1", "latency_ms", "macs", "params"]


def write_atomic(path: Path, text: str) -> None:
    """Write a text file atomically (a temporary file beside it, then ``os.replace``)."""
    atomic_write_text(path, text)


def front_table(ev: ArchEvaluator, obj: DeviceObjectives, ids: np.ndarray) -> pd.DataFrame:
    """One row per front arch (sorted by latency): the contract columns, then other devices' latencies."""
    ids = np.asarray(ids, dtype=np.int64)
    archs = ev.space.decode(ev.encoded(ids)) if len(ids) else []
    df = pd.DataFrame({
        "arch": [str(a) for a in archs],
        "top1": ev.top1[ids],
        "latency_ms": latency_values(ev, ids, obj.device),
        "macs": ev.macs[ids],
        "params": ev.params[ids],
    })
    if getattr(ev, "model_size", None) is not None:  # only a search that predicts sizes has the column
        df["size_mb"] = ev.size_mb(ids)
    for k, d in enumerate(ev.devices):
        if d != obj.device:
            df[f"latency_ms_{d}"] = ev.lat[ids, k]
    for c in ("macs", "params"):
        if df[c].notna().all():
            df[c] = df[c].round().astype("int64")
    return df.sort_values(["latency_ms", "top1"], ascending=[True, False], kind="stable").reset_index(drop=True)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES = {"pixel": "pixel1"}


def _width_of(supernet: str) -> float | None:
    m = re.fullmatch(r"ofa_mbv3_w(\d)(\d)", supernet)
    return float(f"{m.group(1)}.{m.group(2)}") if m else None


def published_reference(device: str, accuracy: ArchModel, space, supernet: str) -> list[dict[str, Any]]:
    """OFA's published subnets for ``device`` (where they exist), with top-1 from ``accuracy`` for those
    the searched supernet contains (same width multiplier, resolution inside the space); the others keep
    ``top1_predicted = None``. Empty for devices or supernets OFA published nothing for."""
    width = _width_of(supernet)
    if width is None:
        return []
    try:
        from supernets.published import published_mbv3_subnets
    except ImportError:
        return []
    try:
        rows = published_mbv3_subnets(None)
    except (ValueError, OSError):
        return []
    want = _norm(_ALIASES.get(device, device))
    out = []
    for r in rows:
        if _norm(str(r["device"])) != want or r.get("latency_ms") is None:
            continue
        pred, arch = None, None
        if r.get("width_mult") == width:
            try:
                arch = space.from_ofa_dict(r["arch"].to_ofa_dict())
                pred = float(accuracy.predict([arch])[0])
            except (ValueError, KeyError, AttributeError, NotImplementedError):
                arch = None  # e.g. r=240 outside the searched resolutions
        out.append({"name": r["name"], "latency_ms": float(r["latency_ms"]), "top1_published": float(r["top1"]) / 100,
                    "top1_predicted": pred, "width_mult": r.get("width_mult"), "resolution": r.get("resolution"),
                    "arch": str(arch) if arch is not None else str(r["arch"])})
    return out


def _plot(path: Path, df: pd.DataFrame, obj: DeviceObjectives, sample: tuple[np.ndarray, np.ndarray],
          refs: Sequence[dict[str, Any]], title: str) -> None:
    from matplotlib.figure import Figure  # the object API: no pyplot state, no global backend switch

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    lat, top1 = sample
    if len(lat):
        ax.scatter(lat, 100 * top1, s=3, c="0.8", label="evaluated (sample)", rasterized=True)
    if len(df):
        ax.step(df["latency_ms"], 100 * df["top1"], where="post", c="C0", lw=1)
        ax.scatter(df["latency_ms"], 100 * df["top1"], s=12, c="C0", label=f"Pareto front ({len(df)})", zorder=3)
    shown = [r for r in refs if r["top1_predicted"] is not None]
    if shown:
        ax.scatter([r["latency_ms"] for r in shown], [100 * r["top1_predicted"] for r in shown], marker="*", s=120,
                   c="C3", zorder=4, label="OFA published subnets (published latency, predicted top-1)")
    if "latency_ms" in obj.constraints:
        ax.axvline(obj.constraints["latency_ms"], c="C2", ls="--", lw=1, label="latency limit")
    ax.set_xlabel(f"latency on {obj.device} (ms, predicted)")
    ax.set_ylabel("top-1 (%, predicted)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=120)


def write_device_outputs(out: Path, ev: ArchEvaluator, obj: DeviceObjectives, front_ids: np.ndarray,
                         history: list[dict[str, Any]], meta: dict[str, Any], *, refs: Sequence[dict[str, Any]] = (),
                         plot: bool = True, rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Write one device's pareto.csv/json/png and history.csv into ``out``; returns the front table."""
    out.mkdir(parents=True, exist_ok=True)
    df = front_table(ev, obj, front_ids)
    write_atomic(out / "pareto.csv", df.to_csv(index=False, float_format="%.6g"))
    doc = {**meta, "device": obj.device, "objectives": list(obj.names), "constraints": dict(obj.constraints),
           "front": df.to_dict(orient="records"), "published_reference": list(refs)}
    write_atomic(out / "pareto.json", json.dumps(doc, indent=1, default=_json_default))
    write_atomic(out / "history.csv", pd.DataFrame(history).to_csv(index=False, float_format="%.8g"))
    if plot and ev.devices:  # the plot is top-1 vs latency
        n = ev.n
        pick = np.arange(n) if n <= 5000 else (rng or np.random.default_rng(0)).choice(n, 5000, replace=False)
        sample = (ev.lat[pick, ev.device_index(obj.device)], ev.top1[pick])
        _plot(out / "pareto.png", df, obj, sample, refs, meta.get("title", obj.device))
    return df


def _json_default(o: Any) -> Any:
    """What ``json`` cannot write itself: numpy values as plain numbers/lists, anything else as its string."""
    plain = to_plain(o)
    return str(o) if plain is o else plain


def summary_table(df: pd.DataFrame, k: int = 8) -> str:
    """Up to ``k`` front points spread over the latency range, as text."""
    if len(df) == 0:
        return "(empty front)"
    idx = np.unique(np.linspace(0, len(df) - 1, min(k, len(df))).round().astype(int))
    sub = df.iloc[idx].copy()
    sub["top1"] = (100 * sub["top1"]).map("{:.2f}".format)
    sub["latency_ms"] = sub["latency_ms"].map("{:.2f}".format)
    for c in ("macs", "params"):
        sub[c] = (sub[c] / 1e6).map(lambda v: "-" if np.isnan(v) else f"{v:.1f}M")
    cols = ["latency_ms", "top1", "macs", "params", "arch"] if df["latency_ms"].notna().any() else \
        ["top1", "macs", "params", "arch"]  # a search without latency objectives loads no latency model
    if "size_mb" in sub:
        sub["size_mb"] = sub["size_mb"].map("{:.3f}".format)
        cols.insert(cols.index("arch"), "size_mb")
    sub = sub[cols].rename(columns={"top1": "top1_%"})
    return sub.to_string(index=False)
