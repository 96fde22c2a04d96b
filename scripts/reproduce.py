"""Reproduce the paper tables from configs: ``python scripts/reproduce.py table=<name>`` or ``table=all``.

Thin Hydra wrapper around :func:`paper_tables.reproduce`; tables are ``configs/reproduce/table/<name>.yaml``.
Each writes table.md, table.csv and table.png to the run directory and prints the markdown; ``table=all``
also regenerates RESULTS.md at the repository root.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from paper_tables import reproduce


@hydra.main(version_base="1.3", config_path="../configs/reproduce", config_name="reproduce")
def main(cfg: DictConfig) -> None:
    reproduce(cfg)


if __name__ == "__main__":
    main()
