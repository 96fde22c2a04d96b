"""Convert OFA's published Samsung Note10 lookup tables into the project's table format.

Source: ``<shared data>/latency/note10_ofa_mbv3_w12/{160,176,192,208,224}_lookup_table.yaml`` (per-layer
count/mean/std in ms, OFA-MobileNetV3 w1.2, published by the OFA authors in han-cai/files a7c9bcd).
Every layer signature the ``ofa_mbv3_w12`` space can use at those resolutions is looked up under OFA's
key and written under the project's key; ``AvgPool2D + Conv_2 + Logits`` become one ``head`` entry.

Run: ``python -m predictors.latency.convert_note10 [--src DIR] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import yaml

from predictors.latency.table import LatencyTable, LatencyTableError, save_table
from supernets.measurable_mbv3 import LayerSpec, MBv3Geometry
from supernets.paths import LATENCY_TABLES_DIR, SHARED_DATA_DIR

__all__ = ["NOTE10_RESOLUTIONS", "convert_note10", "load_ofa_lookup_yaml", "ofa_keys"]

NOTE10_RESOLUTIONS = (160, 176, 192, 208, 224)
SOURCE_DIR = SHARED_DATA_DIR / "latency" / "note10_ofa_mbv3_w12"
ATTRIBUTION = (
    "Per-layer latencies measured on a Samsung Note10 and published by the Once-for-All authors "
    "(Cai et al., ICLR 2020) as the lookup tables the OFA tutorial downloads (han-cai/files a7c9bcd; "
    "OFA code MIT). Converted to this format by predictors/latency/convert_note10.py; figures unchanged "
    "except that AvgPool2D + Conv_2 + Logits are summed into one 'head' entry (std combined in quadrature)."
)
_OFA_KEY = re.compile(r"^[A-Za-z_0-9]+-input:\d+x\d+x\d+-output:\d+(x\d+x\d+)?")


def load_ofa_lookup_yaml(path: Path) -> dict[str, dict[str, float]]:
    """One OFA ``<r>_lookup_table.yaml``: ``{ofa_key: {"count", "mean", "std"}}``, validated."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LatencyTableError(f"cannot read OFA lookup table {path}: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise LatencyTableError(f"OFA lookup table {path} must be a non-empty mapping of layer keys")
    for key, val in data.items():
        if not _OFA_KEY.match(str(key)) or not isinstance(val, dict) or not {"mean", "std", "count"} <= set(val):
            raise LatencyTableError(f"OFA lookup table {path}: entry {key!r} is not '<layer>-input:..-output:..' "
                                    f"with mean/std/count (got {val!r})")
    return data


def ofa_keys(spec: LayerSpec) -> list[str]:
    """OFA's key(s) for one of our layer specs (several for the head)."""
    hw = lambda h, c: f"{h}x{h}x{c}"  # noqa: E731 - tiny local formatter
    if spec.kind == "stem":
        return [f"Conv-input:{hw(spec.h_in, spec.c_in)}-output:{hw(spec.h_out, spec.c_out)}"]
    if spec.kind in ("ds", "mbconv"):
        mid = spec.mid if spec.kind == "mbconv" else spec.c_in
        hs = int(spec.act in ("h_swish", "hswish"))
        return [f"expanded_conv-input:{hw(spec.h_in, spec.c_in)}-output:{hw(spec.h_out, spec.c_out)}-expand:{mid}"
                f"-kernel:{spec.kernel}-stride:{spec.stride}-idskip:{int(spec.skip)}-se:{int(spec.se)}-hs:{hs}"]
    if spec.kind == "final":
        return [f"Conv_1-input:{hw(spec.h_in, spec.c_in)}-output:{hw(spec.h_out, spec.c_out)}"]
    if spec.kind == "head":
        return [f"AvgPool2D-input:{hw(spec.h_in, spec.c_in)}-output:{hw(1, spec.c_in)}",
                f"Conv_2-input:{hw(1, spec.c_in)}-output:{hw(1, spec.mid)}",
                f"Logits-input:{hw(1, spec.mid)}-output:{spec.classes}"]
    raise ValueError(f"no OFA key for layer kind {spec.kind!r}")


def convert_note10(geometry: MBv3Geometry, src: Path = SOURCE_DIR,
                   resolutions: tuple[int, ...] = NOTE10_RESOLUTIONS) -> LatencyTable:
    """Build the project table for ``geometry`` (w1.2) from OFA's per-resolution YAML files."""
    table = LatencyTable(entries={}, meta={})
    unused: dict[int, set[str]] = {}
    for r in resolutions:
        ofa = load_ofa_lookup_yaml(Path(src) / f"{r}_lookup_table.yaml")
        used: set[str] = set()
        for (_, key), spec in geometry.distinct_layers([r]).items():
            names = ofa_keys(spec)
            missing = [n for n in names if n not in ofa]
            if missing:
                raise LatencyTableError(
                    f"OFA Note10 table {src}/{r}_lookup_table.yaml lacks {missing[0]!r} needed for block {key!r}: "
                    f"is the geometry really OFA-MobileNetV3 w1.2?"
                )
            used.update(names)
            table.entries[(r, key)] = float(sum(ofa[n]["mean"] for n in names))
            table.std[(r, key)] = float(math.sqrt(sum(ofa[n]["std"] ** 2 for n in names)))
            table.count[(r, key)] = int(min(ofa[n]["count"] for n in names))
        unused[r] = set(ofa) - used
    table.meta = _meta(src, resolutions, {r: sorted(u) for r, u in unused.items() if u})
    return table


def _meta(src: Path, resolutions: tuple[int, ...], unused: dict[int, list[str]]) -> dict[str, Any]:
    return {
        "device": "note10",
        "supernet": "ofa_mbv3_w12",
        "source": "converted",
        "description": "Samsung Galaxy Note10 (mobile CPU, TFLite), OFA's published per-layer lookup tables",
        "units": "ms",
        "batch": 1,
        "resolutions": list(resolutions),
        "model": "table",
        "fallback": "layer_cost",
        "date": dt.date.today().isoformat(),
        "converter_command": "python -m predictors.latency.convert_note10",
        "original_files": [f"latency/note10_ofa_mbv3_w12/{r}_lookup_table.yaml" for r in resolutions],
        "original_source": "han-cai/files a7c9bcd",
        "attribution": ATTRIBUTION,
        "licence": "published by the OFA authors; the OFA code is MIT",
        "unused_source_keys": unused,
    }


def main(argv: list[str] | None = None) -> None:
    import supernets

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", type=Path, default=SOURCE_DIR)
    p.add_argument("--out", type=Path, default=LATENCY_TABLES_DIR / "note10" / "ofa_mbv3_w12")
    args = p.parse_args(argv)
    geometry = MBv3Geometry.from_supernet(supernets.create_supernet("ofa_mbv3_w12"))
    table = convert_note10(geometry, args.src)
    save_table(table, args.out)
    print(f"wrote {len(table.entries)} entries for resolutions {table.resolutions} to {args.out}")


if __name__ == "__main__":
    main()
