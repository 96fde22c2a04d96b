"""What ``scripts/build_latency_table.py`` may build into, checked before the first measurement.

A build writes ``latency_tables/<device>/<supernet>/`` and marks it ``status: partial`` until it finishes, so
building into the wrong folder loses data: a device served by published or fitted data (``device=pixel`` is a
few-shot model of OFA's Pixel 1 timings) would stop serving it after a killed build, and ``device=../x`` or an
absolute name writes outside the tables. A resumed build must also measure the way the rows already there were
measured: rows timed with other ``warmup``/``repeats``/``sessions``/``passes`` are not comparable.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from predictors.latency.table import LatencyTableError

__all__ = ["check_build_target"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: device configs whose latency this script produces (``latency: table``, a host measurement)
_MEASURED_KINDS = ("table",)


def check_build_target(supernet: str, device: str, out: Path, settings: Any, *, restart: bool,
                       tables_dir: Path, device_dir: Path, out_given: bool) -> None:
    """Refuse a build that could lose data or mix measurements; every message names what to pass instead."""
    device = str(device)
    if not _NAME.fullmatch(device) or ".." in device:
        raise LatencyTableError(f"device={device!r} is not a device name: use letters, digits, '_', '-' and '.' "
                                f"(no '/', no '..'); the table goes to {tables_dir}/<device>/<supernet>/")
    if not out_given:
        try:
            Path(out).resolve().relative_to(Path(tables_dir).resolve())
        except ValueError:
            raise LatencyTableError(f"device={device!r} would write {out}, outside {tables_dir}") from None
    cfg_path = Path(device_dir) / f"{device}.yaml"
    if cfg_path.is_file():
        from predictors.latency.devices import device_config

        cfg = device_config(device, device_dir=Path(device_dir))
        kind = cfg.get("latency", "table")
        if kind not in _MEASURED_KINDS:
            raise LatencyTableError(
                f"device={device} is served by {kind!r} data ({cfg_path}: {cfg.get('description', '')}), not by a "
                f"table measured on this host: building into latency_tables/{cfg.get('table_dir', device)}/ would "
                f"replace it. Pick a new device name (e.g. device=host_cpu or device=my_{device}) and add "
                f"configs/device/<name>.yaml with latency: table")
    meta_path = Path(out) / "meta.yaml"
    meta = _read_meta(meta_path)
    if meta.get("source", "measured") != "measured":
        raise LatencyTableError(f"{meta_path} holds {meta.get('source')!r} latency data, not a host measurement: "
                                f"building would replace it; pass another device name or out_dir")
    if restart or not (Path(out) / "table.csv").is_file():
        return
    old = meta.get("measurement") or {}
    now = asdict(settings)
    # statistic is settled by the build script (null takes the table's); the host fields by the build itself
    differ = [f"measure.{k}: table {old[k]!r}, now {now[k]!r}" for k in ("warmup", "repeats", "sessions", "passes")
              if k in old and k in now and old[k] != now[k]]
    if differ:
        raise LatencyTableError(f"{out} was measured with other settings ({'; '.join(differ)}): resuming would mix "
                                f"rows timed two ways. Pass the table's settings, or restart=true to measure it again")


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise LatencyTableError(f"{path} is not valid YAML ({e}); restore it or pass restart=true") from None
    return meta if isinstance(meta, dict) else {}
