"""Benchmark quantization inside the search (issue 30): FP32-only vs INT8-only vs mixed-precision fronts of a trained
supernet (OFA-MobileNetV3 w1.0 at 32 px on CIFAR-10, the table's default) at equal search evaluations, every
exported subnet a real ONNX Runtime model re-measured here (hypervolume, speed-up, size ratio, accuracy drop,
predicted vs measured latency and top-1).

    python scripts/bench_quant.py [ckpt=<train.py checkpoint>] [n_base=8 n_gen=10 export_k=4]
    python scripts/bench_quant.py part=ratio [supernet=ofa_mbv3_w10 resolution=224 num_classes=10]

``part=ratio`` times FP32, INT8 and mixed versions of a registered supernet's largest and smallest subnets
together (passes, one thread) and prints speed-up and size ratio: whether INT8 pays on this host beyond the tiny net.
Otherwise the same table as ``python scripts/reproduce.py table=quantization`` (options:
``configs/scripts/bench_quant.yaml``; the rest of the table's keys in ``configs/reproduce/table/quantization.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="bench_quant")
def main(cfg: DictConfig) -> None:
    import os

    from paper_tables.quantization import whole_net_ratios
    from paper_tables.runner import run_table, table_config
    from predictors.latency.measure import MeasureSettings

    if cfg.part not in ("table", "ratio"):
        raise ValueError(f"part={cfg.part!r}; expected table (the quantization table) or ratio (whole-net timings)")
    if cfg.part == "ratio":
        print(f"load average {os.getloadavg()}")
        settings = MeasureSettings(**OmegaConf.to_container(cfg.measure))
        for r in whole_net_ratios(str(cfg.supernet), int(cfg.resolution), settings, cfg.get("num_classes")):
            print(f"{cfg.supernet} r={cfg.resolution} {r['subnet']:8s} {r['policy']:5s} {r['ms']:8.3f} ms "
                  f"{r['bytes']:>10d} B  speed-up vs FP32 {r['speedup_vs_fp32']:.2f}x  size ratio {r['size_ratio']:.2f}x")
        print(f"load average {os.getloadavg()}")
        return
    overrides = {k: cfg[k] for k in ("ckpt", "n_base", "export_k") if cfg[k] is not None}
    if cfg.n_gen is not None:
        overrides["search"] = {"n_gen": int(cfg.n_gen)}
    run_table("quantization", table_config("quantization", overrides), Path(cfg.out))


if __name__ == "__main__":
    main()
