"""Build a latency table on this host: ``python scripts/build_latency_table.py supernet=ofa_mbv3_tiny device=host_cpu``.

Times every distinct block of the supernet's space at each resolution with ONNX Runtime, then K whole
subnets end to end for the calibrated model; writes ``latency_tables/<device>/<supernet>/`` (table.csv,
calibration.csv, meta.yaml). Resumable: rerun the same command after an interruption. Options: see
``configs/scripts/build_latency_table.yaml`` (``measure.threads=2``, ``resolutions=[24,32]``, ``restart=true`` ...).

For another machine (a phone, a board, a GPU server), in three stages (:mod:`predictors.latency.stages`)::

    python scripts/build_latency_table.py stage=export supernet=ofa_resnet50 resolutions=[224] bundle=r50 archive=true
    # copy r50.tar.gz to the device, then there (Python + numpy + onnxruntime only):
    python measure.py r50.tar.gz --threads 4            # r50/results/timings.csv + fingerprint.json
    # copy r50/results back, then:
    python scripts/build_latency_table.py stage=import bundle=r50 device=my_board device_config=configs/device
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from predictors.latency.build import build_latency_table
from predictors.latency.build_guard import check_build_target
from predictors.latency.devices import Device
from predictors.latency.measure import MeasureSettings
from predictors.latency.stages import export_bundle, import_timings
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


def table_supernet(cfg: DictConfig, resolutions: list[int] | None):
    """The supernet whose layers are timed: ``supernet_kwargs`` shape it like the one trained (``in_chans: 3`` for
    CIFAR-10: the table's keys carry the input shape); ``quant=true`` adds precision genes (every layer timed in FP32
    and as ONNX Runtime's static QDQ INT8, calibrated on whole mixed-precision subnets: the table ``search.py
    quant=... device=<device>`` serves). None: the registry's default supernet, as the builder makes it."""
    kwargs = OmegaConf.to_container(cfg.supernet_kwargs, resolve=True) if cfg.get("supernet_kwargs") else {}
    if not cfg.get("quant") and not kwargs:
        return None
    import supernets

    net = supernets.create_supernet(cfg.supernet, **kwargs)
    if not cfg.get("quant"):
        return net
    if cfg.device == "host_cpu":  # a quantized table's keys and calibration differ from the FP32 one's
        raise ValueError("quant=true builds a table of FP32 and INT8 layers: give it a device of its own, "
                         "e.g. device=host_cpu_quant (configs/device/host_cpu_quant.yaml), not device=host_cpu")
    from supernets.quant import quant_supernet

    return quant_supernet(net, "mixed", resolutions=resolutions)


def build(cfg: DictConfig) -> Path:
    """Importable entry point (tests call it without Hydra)."""
    stage = cfg.get("stage", "all")
    if stage == "export":
        return export(cfg)
    if stage == "import":
        return import_(cfg)
    if stage != "all":
        raise ValueError(f"stage={stage!r}; expected all (measure here), export or import")
    out = Path(cfg.out_dir) if cfg.get("out_dir") else LATENCY_TABLES_DIR / cfg.device / cfg.supernet
    settings = measure_settings(cfg, out)
    check_build_target(cfg.supernet, cfg.device, out, settings, restart=bool(cfg.restart), tables_dir=LATENCY_TABLES_DIR,
                       device_dir=CONFIG_DIR / "device", out_given=bool(cfg.get("out_dir")))
    res = list(cfg.resolutions) if cfg.get("resolutions") is not None else None
    folder = build_latency_table(
        cfg.supernet, out, device=cfg.device, settings=settings, resolutions=res,
        n_calibration=int(cfg.calibration.n_subnets), seed=int(cfg.calibration.seed), restart=bool(cfg.restart),
        progress=bool(cfg.progress), command=shlex.join(["python", "scripts/build_latency_table.py", *sys.argv[1:]]),
        supernet=table_supernet(cfg, res),
    )
    print(f"latency table for {cfg.supernet} on {cfg.device}: {folder}")
    if not (CONFIG_DIR / "device" / f"{cfg.device}.yaml").is_file():
        print(f"note: to use device={cfg.device}, add configs/device/{cfg.device}.yaml:\n"
              + Device(name=cfg.device, latency="table", table_dir=cfg.device).to_yaml())
    return folder


def export(cfg: DictConfig) -> Path:
    if not cfg.get("bundle"):
        raise ValueError("stage=export needs bundle=<folder> (written there; archive=true adds <folder>.tar.gz)")
    res = list(cfg.resolutions) if cfg.get("resolutions") is not None else None
    path = export_bundle(cfg.supernet, Path(cfg.bundle), resolutions=res, n_calibration=int(cfg.calibration.n_subnets),
                         seed=int(cfg.calibration.seed), archive=bool(cfg.get("archive")), progress=bool(cfg.progress))
    print(f"bundle for {cfg.supernet}: {path}\non the device: python measure.py {path.name} [--threads N] "
          f"[--provider ...]; then bring back its results/ and run stage=import bundle={cfg.bundle} device=<name>")
    return path


def import_(cfg: DictConfig) -> Path:
    if not cfg.get("bundle"):
        raise ValueError("stage=import needs bundle=<folder or .tar.gz> (the exported bundle holding results/)")
    tables = Path(cfg.out_dir) if cfg.get("out_dir") else LATENCY_TABLES_DIR
    folder = import_timings(Path(cfg.bundle), cfg.device, tables_dir=tables, results=cfg.get("results"),
                            device_config=cfg.get("device_config"))
    print(f"latency table of {cfg.device}: {folder}")
    if cfg.get("device_config"):
        print(f"device config written under {cfg.device_config}")
    else:
        print(f"note: pass device_config=<folder> (configs/device to register it here) to write {cfg.device}.yaml")
    return folder


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="build_latency_table")
def main(cfg: DictConfig) -> None:
    build(cfg)


if __name__ == "__main__":
    main()
