"""Small real ``ArchModel`` subclasses over the fixture tables (tiny_latency.csv, tiny_accuracy.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from predictors.base import ArchModel
from supernets.space import MobileNetV3Space

HERE = Path(__file__).parent


class TableLatency(ArchModel):
    """Latency as a gather over ``[resolution, stage, slot, kernel, expand]`` plus a per-resolution base."""

    target = "latency_ms"

    def __init__(self, space: MobileNetV3Space, device: str, *, path: Path = HERE / "tiny_latency.csv") -> None:
        super().__init__(space)
        self.device = device
        res = {r: i for i, r in enumerate(space.resolutions)}
        ks = {k: i for i, k in enumerate(space.kernel_sizes)}
        ex = {e: i for i, e in enumerate(space.expand_ratios)}
        self.base = np.full(len(res), np.nan)
        self.block = np.full((len(res), space.n_slots, len(ks), len(ex)), np.nan)
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["device"] == device]
        if not rows:
            raise ValueError(f"no fixture latency rows for device {device!r} in {path}")
        for r in rows:
            ri = res.get(int(r["resolution"]))
            if ri is None:
                continue
            if int(r["stage"]) < 0:
                self.base[ri] = float(r["ms"])
            else:
                slot = int(r["stage"]) * space.max_depth + int(r["slot"])
                self.block[ri, slot, ks[int(r["ks"])], ex[int(r["e"])]] = float(r["ms"])
        if np.isnan(self.base).any() or np.isnan(self.block).any():
            raise ValueError(f"fixture table {path} does not cover space {space.name!r} for device {device!r}")

    def _predict(self, x: np.ndarray) -> np.ndarray:
        sp = self.space
        r = x[:, 0]
        ks = x[:, sp.group_slices["ks"]]
        e = x[:, sp.group_slices["e"]]
        used = ks >= 0
        slots = np.arange(sp.n_slots)[None, :]
        ms = self.block[r[:, None], slots, np.where(used, ks, 0), np.where(used, e, 0)]
        return self.base[r] + np.where(used, ms, 0.0).sum(axis=1)


class LinearAccuracy(ArchModel):
    """Top-1 as an intercept plus one weight per used (column, choice)."""

    target = "top1"

    def __init__(self, space: MobileNetV3Space, *, path: Path = HERE / "tiny_accuracy.csv") -> None:
        super().__init__(space)
        labels = {c.label: i for i, c in enumerate(space.columns)}
        self.w = np.zeros(space.one_hot_size, dtype=np.float64)
        self.b = 0.0
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["column"] == "intercept":
                    self.b = float(row["weight"])
                    continue
                c = labels[row["column"]]
                choice = space.columns[c].choices.index(int(row["choice"]))
                self.w[space.one_hot_offsets[c] + choice] = float(row["weight"])

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self.b + self.space.one_hot(x).astype(np.float64) @ self.w
