"""Build a latency table on this host: ``python scripts/build_latency_table.py supernet=ofa_mbv3_tiny device=host_cpu``.

Times every distinct block of the supernet's space at each resolution with ONNX Runtime, then K whole
subnets end to end for the calibrated model; writes ``latency_tables/<device>/<supernet>/`` (table.csv,
calibration.csv, meta.yaml). Resumable: rerun the same command after an interruption. Options: see
``configs/latency/build.yaml`` (``measure.threads=2``, ``resolutions=[24,32]``, ``restart=true`` ...).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from predictors.latency.build import build_latency_table
from predictors.latency.build_guard import check_build_target
from predictors.latency.measure import MeasureSettings
from predictors.latency.table import load_meta
from supernets.paths import CONFIG_DIR, LATENCY_TABLES_DIR


def measure_settings(cfg: DictConfig, out: Path) -> MeasureSettings:
    """``cfg.measure``; ``statistic: null`` takes the statistic the table in ``out`` was built with (resuming or
    extending it must not mix two), else the median."""
    m = OmegaConf.to_container(cfg.measure, resolve=True)
    if m.get("statistic") is None:
        built = None
        if not cfg.get("restart") and (out / "meta.yaml").is_file():
            built = (load_meta(out).get("measurement") or {}).get("statistic")
        m["statistic"] = built or "median"
    return MeasureSettings(**m)


def build(cfg: DictConfig) -> Path:
    """Importable entry point (tests call it without Hydra)."""
    out = Path(cfg.out_dir) if cfg.get("out_dir") else LATENCY_TABLES_DIR / cfg.device / cfg.supernet
    settings = measure_settings(cfg, out)
    check_build_target(cfg.supernet, cfg.device, out, settings, restart=bool(cfg.restart), tables_dir=LATENCY_TABLES_DIR,
                       device_dir=CONFIG_DIR / "device", out_given=bool(cfg.get("out_dir")))
    res = list(cfg.resolutions) if cfg.get("resolutions") is not None else None
    folder = build_latency_table(
        cfg.supernet, out, device=cfg.device, settings=settings, resolutions=res,
        n_calibration=int(cfg.calibration.n_subnets), seed=int(cfg.calibration.seed), restart=bool(cfg.restart),
        progress=bool(cfg.progress), command=shlex.join(["python", "scripts/build_latency_table.py", *sys.argv[1:]]),
    )
    print(f"latency table for {cfg.supernet} on {cfg.device}: {folder}")
    if not (CONFIG_DIR / "device" / f"{cfg.device}.yaml").is_file():
        print(f"note: add configs/device/{cfg.device}.yaml (name: {cfg.device}, latency: table) to use device={cfg.device}")
    return folder


@hydra.main(version_base="1.3", config_path="../configs/latency", config_name="build")
def main(cfg: DictConfig) -> None:
    build(cfg)


if __name__ == "__main__":
    main()
