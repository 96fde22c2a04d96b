"""Convert DyNAS-T's measured OFA-MobileNetV3 w1.0 results into an accuracy dataset of this project.

    python -m predictors.accuracy.import_dynast tests/data/dynast_ofa_mbv3_w10/*.csv \
        --out predictors/artefacts/datasets/dynast_ofa_mbv3_w10.csv

Rows of the same arch (repeats across search runs, and OFA dicts that differ only in unused slots) are merged
and their top-1 averaged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from predictors.accuracy.dataset import import_dynast, write_dataset
from supernets.space import MobileNetV3Space

ATTRIBUTION = {
    "source": "IntelLabs/DyNAS-T notebooks/data (commit 251cb5e): measured ImageNet top-1 of OFA-MobileNetV3 w1.0 "
              "subnets at r=224 from DyNAS-T search runs",
    "licence": "Apache-2.0",
    "converted_by": "python -m predictors.accuracy.import_dynast",
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--supernet", default="ofa_mbv3_w10")
    args = ap.parse_args(argv)
    ds = import_dynast(sorted(args.files), MobileNetV3Space(), supernet=args.supernet)
    meta = {**ATTRIBUTION, "source_files": [f.name for f in sorted(args.files)], **ds.meta,
            "top1": "fraction (DyNAS-T's percent / 100), mean over repeated measurements"}
    write_dataset(ds, args.out, meta=meta)
    print(f"wrote {args.out}: {len(ds)} archs from {ds.meta['n_raw_rows']} rows")


if __name__ == "__main__":
    main()
