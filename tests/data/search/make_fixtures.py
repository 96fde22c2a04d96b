"""Writes the search tests' fixture tables for the ``ofa_mbv3_tiny`` space (run once; outputs committed).

``tiny_latency.csv``: per device, resolution, stage, slot, kernel and expand ratio the milliseconds a block
adds (plus a ``stage=-1`` row per resolution for stem and head). Two made-up devices: ``dev_a`` (cost grows
with MACs, CPU-like) and ``dev_b`` (large kernels and depth cost more, accelerator-like), so their fronts differ.
``tiny_accuracy.csv``: weights of a linear top-1 model over the space's one-hot columns (bigger kernels,
expand ratios, resolutions and every active block raise top-1, with diminishing returns by stage).
These are test inputs, not measurements.
"""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).parent
RES = (24, 28, 32)
KS = (3, 5, 7)
E = (3, 4, 6)
WIDTHS = (24, 40, 64)  # stage output channels of ofa_mbv3_tiny
N_STAGES, MAX_DEPTH = 3, 3


def main() -> None:
    with open(HERE / "tiny_latency.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "resolution", "stage", "slot", "ks", "e", "ms"])
        for dev in ("dev_a", "dev_b"):
            for r in RES:
                px = (r / 32) ** 2
                w.writerow([dev, r, -1, -1, "", "", round((0.40 if dev == "dev_a" else 0.25) + 0.30 * px, 5)])
                for s in range(N_STAGES):
                    hw = px / 4**s
                    for slot in range(MAX_DEPTH):
                        for k in KS:
                            for e in E:
                                mid = WIDTHS[s] * e
                                if dev == "dev_a":
                                    ms = 1e-3 * hw * mid * (k * k + 2 * WIDTHS[s]) / 8
                                else:
                                    ms = 0.02 + 4e-4 * hw * mid * k**3 / 9 + 0.015 * slot
                                w.writerow([dev, r, s, slot, k, e, round(ms, 5)])
    with open(HERE / "tiny_accuracy.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["column", "choice", "weight"])
        w.writerow(["intercept", "", 0.60])
        for i, r in enumerate(RES):
            w.writerow(["r", r, 0.025 * i])
        for s in range(N_STAGES):
            for slot in range(MAX_DEPTH):
                i = s * MAX_DEPTH + slot
                decay = 1.0 / (1 + slot) / (1 + 0.3 * s)
                for j, k in enumerate(KS):
                    w.writerow([f"ks[{i}]", k, round(0.012 * decay + 0.006 * j * decay, 5)])
                for j, e in enumerate(E):
                    w.writerow([f"e[{i}]", e, round(0.010 * decay + 0.007 * j * decay, 5)])


if __name__ == "__main__":
    main()
