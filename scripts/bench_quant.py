"""Benchmark quantization inside the search (issue 30): FP32-only vs INT8-only vs mixed-precision fronts of a trained
tiny supernet at equal search evaluations, every exported subnet a real ONNX Runtime model re-measured here
(hypervolume, speed-up, size ratio, accuracy drop, predicted vs measured latency and top-1).

    python scripts/bench_quant.py ckpt=<train.py checkpoint> [n_base=8 search.n_gen=10 export_k=4 ...]
    python scripts/bench_quant.py bench.part=ratio [bench.supernet=ofa_mbv3_w10 bench.resolution=224]

``bench.part=ratio`` times FP32, INT8 and mixed versions of a registered supernet's largest and smallest subnets
together (passes, one thread) and prints speed-up and size ratio: whether INT8 pays on this host beyond the tiny net.

Any key of configs/reproduce/table/quantization.yaml can be overridden; the same table as
``python scripts/reproduce.py table=quantization``, written to Hydra's run directory (``outputs/bench_quant/...``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="../configs/reproduce/table", config_name="quantization")
def main(cfg: DictConfig) -> None:
    import os

    from hydra.core.hydra_config import HydraConfig

    from paper_tables.quantization import whole_net_ratios
    from paper_tables.runner import run_table
    from predictors.latency.measure import MeasureSettings

    bench = cfg.get("bench") or {}
    if bench.get("part", "table") == "ratio":
        print(f"load average {os.getloadavg()}")
        for r in whole_net_ratios(str(bench["supernet"]), int(bench["resolution"]), MeasureSettings(**cfg.measure)):
            print(f"{bench['supernet']} r={bench['resolution']} {r['subnet']:8s} {r['policy']:5s} {r['ms']:8.3f} ms "
                  f"{r['bytes']:>10d} B  speed-up vs FP32 {r['speedup_vs_fp32']:.2f}x  size ratio {r['size_ratio']:.2f}x")
        print(f"load average {os.getloadavg()}")
        return
    run_table("quantization", OmegaConf.to_container(cfg, resolve=True), Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
