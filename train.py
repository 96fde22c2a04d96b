"""Train a supernet: ``python train.py`` (tiny MobileNetV3 on bundled MNIST, CPU, minutes) or
``python train.py experiment=ofa_mbv3`` / ``experiment=ofa_resnet`` / ``experiment=bignas_mbv3``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from supernets.training import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    value = metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
