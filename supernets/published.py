"""The OFA model zoo's specialised MobileNetV3 subnets as :class:`~supernets.space.Arch` values.

OFA published 50 subnets specialised for devices (Cai et al., *Once-for-All*, ICLR 2020, Table "specialised
for each device"); 34 of them are OFA-MobileNetV3 (stem 16 = w1.0, stem 24 = w1.2) at image sizes up to
260 px, so their archs live in a space whose resolutions are :data:`PUBLISHED_RESOLUTIONS`
(``create_supernet("ofa_mbv3_w12", resolutions=PUBLISHED_RESOLUTIONS)`` runs them). The bundled table
lists ``d`` / ``ks`` / ``e`` per *active* block; they are placed into the space's 4-slot-per-stage layout.
"""

from __future__ import annotations

import csv
from importlib import resources
from typing import Any

from supernets.space import MobileNetV3Space

__all__ = ["PUBLISHED_RESOLUTIONS", "published_mbv3_subnets", "published_space"]

#: Resolutions that cover every published OFA-MobileNetV3 subnet (128..260, step 4).
PUBLISHED_RESOLUTIONS: tuple[int, ...] = tuple(range(128, 261, 4))
_STEM_TO_WIDTH = {16: 1.0, 24: 1.2}
_TABLE = "ofa_specialized_summary.csv"


def published_space() -> MobileNetV3Space:
    """OFA's MobileNetV3 space with resolutions extended to :data:`PUBLISHED_RESOLUTIONS`."""
    return MobileNetV3Space(resolutions=PUBLISHED_RESOLUTIONS)


def _dashed(text: str) -> list[int]:
    return [int(v) for v in text.split("-")]


def _to_slots(space: MobileNetV3Space, d: list[int], per_block: list[int], gene: str, name: str) -> list[int | None]:
    if len(per_block) != sum(d):
        raise ValueError(f"{name}: gene {gene!r} lists {len(per_block)} blocks but d={d} has {sum(d)} active blocks")
    out: list[int | None] = []
    pos = 0
    for depth in d:
        out += per_block[pos : pos + depth] + [None] * (space.max_depth - depth)
        pos += depth
    return out


def published_mbv3_subnets(device: str | None = None) -> list[dict[str, Any]]:
    """The published OFA-MobileNetV3 subnets, optionally of one device (``"note10"``, ``"pixel1"``, ...).

    Returns:
        One dict per subnet with keys ``name``, ``device``, ``latency_ms`` (``None`` for the FLOPs-budget
        rows), ``mflops`` (``None`` unless a FLOPs budget), ``top1`` (%), ``finetune_epochs``,
        ``width_mult`` (1.0 or 1.2, from the stem width), ``resolution`` and ``arch`` (an Arch of
        :func:`published_space`), in the table's order.
    """
    space = published_space()
    text = resources.files("supernets.data").joinpath(_TABLE).read_text(encoding="utf-8")
    rows = [r for r in csv.DictReader(text.splitlines()) if r["net"] == "MobileNetV3"]
    devices = sorted({r["device"] for r in rows})
    if device is not None and device not in devices:
        raise ValueError(f"no published OFA-MobileNetV3 subnet for device {device!r}; devices are {devices}")
    out = []
    for r in rows:
        if device is not None and r["device"] != device:
            continue
        stem = int(r["stem_channels"])
        if stem not in _STEM_TO_WIDTH:
            raise ValueError(f"{r['name']}: stem width {stem} is neither 16 (w1.0) nor 24 (w1.2)")
        d = _dashed(r["d"])
        arch = space.arch(r=int(r["image_size"]), d=d, ks=_to_slots(space, d, _dashed(r["ks"]), "ks", r["name"]),
                          e=_to_slots(space, d, _dashed(r["e"]), "e", r["name"]))
        out.append({
            "name": r["name"],
            "device": r["device"],
            "latency_ms": float(r["latency_ms"]) if r["latency_ms"] else None,
            "mflops": float(r["mflops"]) if r["mflops"] else None,
            "top1": float(r["top1"]),
            "finetune_epochs": int(r["finetune_epochs"]),
            "width_mult": _STEM_TO_WIDTH[stem],
            "resolution": arch.r,
            "arch": arch,
        })
    return out
