"""Benchmark quantization inside the search (issue 30): FP32-only vs INT8-only vs mixed-precision fronts of a trained
tiny supernet at equal search evaluations, every exported subnet a real ONNX Runtime model re-measured here
(hypervolume, speed-up, size ratio, accuracy drop, predicted vs measured latency and top-1).

    python scripts/bench_quant.py ckpt=<train.py checkpoint> [n_base=8 search.n_gen=10 export_k=4 ...]

Any key of configs/reproduce/table/quantization.yaml can be overridden; the same table as
``python scripts/reproduce.py table=quantization``, written to Hydra's run directory (``outputs/bench_quant/...``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="../configs/reproduce/table", config_name="quantization")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from search.tables.runner import run_table

    run_table("quantization", OmegaConf.to_container(cfg, resolve=True), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
