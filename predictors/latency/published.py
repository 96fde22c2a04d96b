"""OFA's published MobileNetV3 subnets with their measured device latencies (few-shot training data).

``latency_tables/published/ofa_mbv3_subnets.csv`` is a verbatim copy of the MobileNetV3 rows of OFA's
specialised-subnet summary (``ofa_published/specialized/_summary.csv``; see the README beside it):
``d`` has one depth per stage and ``ks``/``e`` one value per *active* block, dash-joined; stem width 16
means the w1.0 supernet, 24 the w1.2 one.
"""

from __future__ import annotations

import csv
from pathlib import Path

from predictors.latency.geometry import MBv3Geometry
from predictors.latency.layer_cost import MeasuredNet
from predictors.latency.table import LatencyTableError
from supernets.paths import LATENCY_TABLES_DIR

__all__ = ["PUBLISHED_CSV", "STEM_TO_WIDTH", "device_label", "load_published_nets", "published_geometries"]

PUBLISHED_CSV = LATENCY_TABLES_DIR / "published" / "ofa_mbv3_subnets.csv"
STEM_TO_WIDTH = {16: 1.0, 24: 1.2}
#: OFA's device labels -> this project's device names.
_DEVICE_NAMES = {"LG-G8": "lg_g8", "pixel1": "pixel", "pixel2": "pixel2", "note8": "note8", "note10": "note10",
                 "s7edge": "s7edge"}
_COLUMNS = ("name", "device", "latency_ms", "top1", "finetune_epochs", "stem_channels", "image_size", "d", "ks", "e")


def published_geometries() -> dict[float, MBv3Geometry]:
    """OFA-MobileNetV3 w1.0 and w1.2 geometries over a space whose resolutions reach 260 (the published
    subnets use 140..260, beyond the supernets' default 128..224)."""
    from supernets.ofa_mbv3 import MobileNetV3Config
    from supernets.space import MobileNetV3Space

    space = MobileNetV3Space(resolutions=tuple(range(128, 261, 4)))
    return {w: MBv3Geometry.from_config(space, MobileNetV3Config.ofa(w)) for w in STEM_TO_WIDTH.values()}


def device_label(ofa_label: str) -> str:
    return _DEVICE_NAMES.get(ofa_label, ofa_label.lower().replace("-", "_"))


def _ints(text: str, what: str, source: str) -> list[int]:
    try:
        return [int(v) for v in text.split("-")]
    except ValueError:
        raise LatencyTableError(f"{source}: {what} {text!r} is not dash-joined integers") from None


def load_published_nets(device: str, geometries: dict[float, MBv3Geometry],
                        path: Path = PUBLISHED_CSV) -> list[MeasuredNet]:
    """The published subnets of ``device`` (project name, e.g. ``pixel``) as :class:`MeasuredNet` s.

    Args:
        geometries: width multiplier -> geometry whose space has 4 slots a stage (any resolutions).
    """
    if not Path(path).is_file():
        raise LatencyTableError(f"published subnet list {path} is missing (it ships with the repository)")
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not set(_COLUMNS) <= set(reader.fieldnames):
            raise LatencyTableError(f"{path}: header {reader.fieldnames} lacks columns {list(_COLUMNS)}")
        for row in reader:
            if device_label(row["device"]) != device:
                continue
            width = STEM_TO_WIDTH.get(int(row["stem_channels"]))
            if width is None or width not in geometries:
                raise LatencyTableError(f"{path}: subnet {row['name']} has stem {row['stem_channels']}; "
                                        f"known stems {STEM_TO_WIDTH}, geometries for widths {sorted(geometries)}")
            g = geometries[width]
            md = g.space.max_depth
            d = _ints(row["d"], "d", str(path))
            ks_act, e_act = _ints(row["ks"], "ks", str(path)), _ints(row["e"], "e", str(path))
            if len(ks_act) != sum(d) or len(e_act) != sum(d):
                raise LatencyTableError(f"{path}: subnet {row['name']} lists {len(ks_act)} ks / {len(e_act)} e for "
                                        f"{sum(d)} active blocks (d={d})")
            ks: list[int | None] = [None] * (md * len(d))
            e: list[float | None] = [None] * (md * len(d))
            i = 0
            for s, depth in enumerate(d):
                for j in range(depth):
                    ks[s * md + j], e[s * md + j] = ks_act[i], e_act[i]
                    i += 1
            out.append(MeasuredNet(name=row["name"], geometry=g, r=int(row["image_size"]), d=tuple(d), ks=tuple(ks),
                                   e=tuple(e), latency_ms=float(row["latency_ms"])))
    return out
