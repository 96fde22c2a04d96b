"""Pareto search per device: ``python search.py device=pixel`` (or ``device=[pixel,note10,host_cpu]``).

Thin Hydra wrapper around :func:`search.run`; outputs land in the Hydra run directory, one folder per
device. Resume an interrupted search with ``resume=true hydra.run.dir=<that run's directory>``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import search
from search.runner import from_hydra


@hydra.main(version_base="1.3", config_path="configs", config_name="search")
def main(cfg: DictConfig) -> dict:
    result = search.run(from_hydra(cfg))
    if any(r.get("status") != "ok" for r in result["devices"].values()):
        raise SystemExit(2)
    return {d: {k: v for k, v in r.items() if k != "front"} for d, r in result["devices"].items()}


if __name__ == "__main__":
    main()
