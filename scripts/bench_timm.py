"""Benchmark: a pretrained timm CNN turned into a supernet and fine-tuned InstaTune-style on CIFAR-10, against
fine-tuning the original alone and the smallest subnet from scratch, one wall-clock budget each.

    python scripts/bench_timm.py --data-root /path/to/cifar10 --budget-s 240 [--n-test 10000]

The same as ``python scripts/reproduce.py table=timm_cifar10 table.data_root=... table.budget_s=...``
(paper_tables/timm_cifar10.py); prints the table's markdown and writes table.md / table.csv to --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paper_tables.runner import run_table, table_config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", required=True, help="CIFAR-10 folder (cifar10_train.tar.gz + cifar10_test.tar.gz "
                                                      "or cifar-10-batches-py/)")
    p.add_argument("--budget-s", type=float, default=None, help="training wall clock per method (default: config)")
    p.add_argument("--n-test", type=int, default=None, help="test images evaluated (default: all 10,000)")
    p.add_argument("--out", default="outputs/bench_timm", help="output folder")
    args = p.parse_args(argv)
    overrides = {"data_root": args.data_root}
    if args.budget_s is not None:
        overrides["budget_s"] = args.budget_s
    if args.n_test is not None:
        overrides["n_test"] = args.n_test
    run_table("timm_cifar10", table_config("timm_cifar10", overrides), Path(args.out))


if __name__ == "__main__":
    main()
