"""Benchmark: a pretrained timm CNN turned into a supernet and fine-tuned InstaTune-style on CIFAR-10, against
fine-tuning the original alone and the smallest subnet from scratch, one training budget each (CPU time by
default: ``table.clock``).

    python scripts/bench_timm.py data_root=/path/to/cifar10 budget_s=240 [n_test=10000]

The same as ``python scripts/reproduce.py table=timm_cifar10 table.data_root=... table.budget_s=...``
(paper_tables/timm_cifar10.py); prints the table's markdown and writes table.md / table.csv to ``out``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from paper_tables.runner import run_table, table_config


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="bench_timm")
def main(cfg: DictConfig) -> None:
    from supernets.config_checks import check_float, check_int

    overrides = {"data_root": str(cfg.data_root)}
    if cfg.budget_s is not None:
        overrides["budget_s"] = check_float("budget_s", cfg.budget_s, min=0, min_open=True)
    if cfg.n_test is not None:
        overrides["n_test"] = check_int("n_test", cfg.n_test, min=1)
    run_table("timm_cifar10", table_config("timm_cifar10", overrides), Path(cfg.out))


if __name__ == "__main__":
    main()
