"""Cross-validate and fit an accuracy predictor; save it as an artefact.

    python scripts/train_predictor.py dataset=dynast_ofa_mbv3_w10 predictor=mlp
    python scripts/train_predictor.py dataset=outputs/acc/dataset.csv predictor=ensemble out=my_predictor.pth

Prints Kendall tau, Spearman and RMSE (points) per fold, their mean, pooled out-of-fold and per resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from predictors.accuracy.train import train_predictor


@hydra.main(version_base="1.3", config_path="../configs", config_name="train_predictor")
def main(cfg: DictConfig) -> dict[str, Any]:
    return run(cfg, cfg.out or Path(HydraConfig.get().runtime.output_dir) / "predictor.pth")


def run(cfg: DictConfig, out: str | Path) -> dict[str, Any]:
    """The script without Hydra's run directory (tests compose the config and call this)."""
    from supernets.config_checks import check_int, reject_comma

    check_int("folds", cfg.folds, min=2)  # one fold has nothing to validate on
    check_int("seed", cfg.seed, min=0)
    reject_comma("out", out)
    spec = OmegaConf.to_container(cfg.predictor, resolve=True)
    assert isinstance(spec, dict)
    supernet = cfg.get("supernet")
    if isinstance(supernet, DictConfig):  # supernet=<name> selected configs/supernet/<name>.yaml
        supernet = supernet.name
    return train_predictor(cfg.dataset, spec, out, folds=cfg.folds, seed=cfg.seed, supernet=supernet,
                           overwrite=cfg.overwrite)


if __name__ == "__main__":
    main()
