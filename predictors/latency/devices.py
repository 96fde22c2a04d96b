"""The device registry and :func:`load_latency_model`, the one entry point search and scripts use.

A device is ``configs/device/<name>.yaml`` (``name``, optional ``alias_of``, ``table_dir``, ``latency``:
how its latency is known, ``description``). Its data for a supernet lives in
``latency_tables/<table_dir>/<supernet>/meta.yaml`` whose ``model:`` says what to serve:

* ``table`` — per-layer table sum (``table.csv``); with ``calibration: [a, b, c]`` the calibrated table;
  with ``fallback: layer_cost`` resolutions the table lacks come from the layer-cost model in the same
  meta (``layer_cost:``), in ``latency_tables/<table_dir>/layer_cost.yaml``, or else fitted on the table;
* ``layer_cost`` — the layer-cost model (``layer_cost: {coef, scales, offset}``), e.g. few-shot devices;
* ``learned`` — a ridge model over per-block features trained on whole-network measurements.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from predictors.base import ArchModel
from predictors.latency.layer_cost import LayerCostModel
from predictors.latency.models import DenseLatencyModel, TableLatencyModel
from predictors.latency.table import LatencyTableError, load_meta, load_table
from supernets.measurable import MeasurableLayers, NotMeasurableError
from supernets.paths import CONFIG_DIR, LATENCY_TABLES_DIR

__all__ = ["DEVICE_DIR", "UnknownDeviceError", "build_command", "device_config", "geometry_for",
           "list_devices", "load_latency_model", "table_buildable"]

DEVICE_DIR = CONFIG_DIR / "device"


class UnknownDeviceError(ValueError):
    """The device name has no ``configs/device/<name>.yaml``."""


class NoLatencyDataError(LatencyTableError):
    """The device is known but has no latency data for the requested supernet."""


def _read_device(path: Path) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LatencyTableError(f"device config {path} is not valid YAML: {exc}") from None
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise LatencyTableError(f"device config {path} must be a mapping with at least 'name:'")
    return cfg


def list_devices(*, device_dir: Path | None = None) -> list[str]:
    """Names accepted by ``device=...`` (aliases included), sorted."""
    d = DEVICE_DIR if device_dir is None else Path(device_dir)
    return sorted(p.stem for p in d.glob("*.yaml"))


def device_config(device: str, *, device_dir: Path | None = None) -> dict[str, Any]:
    """The device's config with aliases resolved (``name`` is the canonical name)."""
    d = DEVICE_DIR if device_dir is None else Path(device_dir)
    if not isinstance(device, str) or not (d / f"{device}.yaml").is_file():
        raise UnknownDeviceError(
            f"unknown device {device!r}; known devices: {', '.join(list_devices(device_dir=d))}. "
            f"Add configs/device/<name>.yaml (a table built with scripts/build_latency_table.py, or a few-shot "
            f"or learned model) to register a new one"
        )
    cfg = _read_device(d / f"{device}.yaml")
    seen = {device}
    while cfg.get("alias_of"):
        target = str(cfg["alias_of"])
        if target in seen or not (d / f"{target}.yaml").is_file():
            raise LatencyTableError(f"device {device!r} is an alias of {target!r}, which is missing or circular")
        seen.add(target)
        cfg = _read_device(d / f"{target}.yaml")
    cfg.setdefault("table_dir", cfg["name"])
    return cfg


def build_command(supernet: str, device: str) -> str:
    return f"python scripts/build_latency_table.py supernet={supernet} device={device}"


@functools.lru_cache(maxsize=16)
def geometry_for(supernet: str) -> MeasurableLayers:
    """The measurable layers of a registered supernet (:mod:`supernets.measurable`; builds it once; cached)."""
    import supernets
    from supernets.measurable import measurable_for

    return measurable_for(supernets.create_supernet(supernet))


def table_buildable(supernet: str) -> bool:
    """Whether ``scripts/build_latency_table.py`` can measure ``supernet`` (its family implements the
    measurable-layer protocol). An unknown name counts as buildable: the build script's own error then lists
    the registered supernets."""
    from supernets.registry import is_supernet

    if not is_supernet(supernet):
        return True
    try:
        geometry_for(supernet)
    except NotMeasurableError:
        return False
    return True


def _layer_cost_from(meta: dict[str, Any], folder: Path, table: Any = None,
                     geometry: MeasurableLayers | None = None) -> LayerCostModel:
    """The layer-cost model a meta names: inline, the device's ``layer_cost.yaml``, or (for a measured
    table without either) fitted on the table itself at load time."""
    if "layer_cost" in meta:
        return LayerCostModel.from_dict(meta["layer_cost"])
    path = folder.parent / "layer_cost.yaml"
    if path.is_file():
        return LayerCostModel.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    if table is not None and geometry is not None:
        return LayerCostModel.fit(table, geometry)
    raise LatencyTableError(f"{folder}/meta.yaml asks for a layer-cost model but has no 'layer_cost:' entry and "
                            f"{path} does not exist")


def load_latency_model(device: str, supernet: str, *, tables_dir: Path | None = None,
                       device_dir: Path | None = None, geometry: MeasurableLayers | None = None,
                       space: Any | None = None) -> ArchModel:
    """The latency model (ms, vectorised ``predict``) of ``device`` for ``supernet``.

    Args:
        space: the search space archs will come from when it differs from the registered supernet's
            default (e.g. ``create_supernet(name, resolutions=...)``); same network shape, other choices.

    Raises:
        UnknownDeviceError: no such device (the message lists the known ones).
        NoLatencyDataError: the device has no data for ``supernet`` (names the command that builds it).
        LatencyTableError: the files are malformed or a needed block is missing (names file and block).
    """
    cfg = device_config(device, device_dir=device_dir)
    root = LATENCY_TABLES_DIR if tables_dir is None else Path(tables_dir)
    folder = root / cfg["table_dir"] / supernet
    if not (folder / "meta.yaml").is_file():
        have = sorted(p.parent.name for p in (root / cfg["table_dir"]).glob("*/meta.yaml"))
        if not table_buildable(supernet):  # suggesting a build that fails would only send the user in circles
            covered: dict[str, list[str]] = {}
            for m in sorted(root.glob("*/*/meta.yaml")):
                covered.setdefault(m.parent.name, []).append(m.parent.parent.name)
            raise NoLatencyDataError(
                f"device {device!r} has no latency data for supernet {supernet!r} (looked for {folder}/meta.yaml), "
                f"and its family does not implement the measurable-layer protocol (supernets/measurable.py) that "
                f"tables (scripts/build_latency_table.py), few-shot and learned models need. Latency data exists for "
                + "; ".join(f"{sn} on {', '.join(devs)}" for sn, devs in covered.items())
                + f". For a latency-aware search use one of those supernets (a supernet whose family implements "
                  f"the protocol gets a table with {build_command('<name>', cfg['name'])})"
            )
        raise NoLatencyDataError(
            f"device {device!r} has no latency data for supernet {supernet!r} (looked for {folder}/meta.yaml; "
            f"it has data for {have or 'no supernet'}). "
            + (f"Build the table on the device with: {build_command(supernet, cfg['name'])}"
               if cfg.get("latency") == "table" else
               f"Its latency is known as '{cfg.get('latency', '?')}' data for those supernets only; measure "
               f"{supernet} on the device, e.g. with {build_command(supernet, cfg['name'])} run there")
        )
    meta = load_meta(folder)
    if meta.get("supernet", supernet) != supernet:
        raise LatencyTableError(f"{folder}/meta.yaml is for supernet {meta.get('supernet')!r}, not {supernet!r}")
    g = geometry if geometry is not None else geometry_for(supernet)
    if space is not None and space != g.space:
        g = g.with_space(space)
    kind = meta.get("model")
    name = cfg["name"]
    if kind == "table":
        table = load_table(folder)
        calib = meta.get("calibration")
        coeffs = (1.0, 0.0, 0.0) if calib is None else _calibration(calib, folder)
        model: DenseLatencyModel = TableLatencyModel(g, table, calibration=coeffs,
                                                     name="calibrated" if calib is not None else "table",
                                                     supernet=supernet, device=name)
        if meta.get("fallback") == "layer_cost" and not model.covered.all():
            lc = _layer_cost_from(meta, folder, table, g)
            model = model.fill_missing(lc.dense(g, supernet=supernet, device=name))
        return model
    if kind == "layer_cost":
        return _layer_cost_from(meta, folder).dense(g, name=str(meta.get("method", "layer_cost")), supernet=supernet,
                                                    device=name)
    if kind == "learned":
        from predictors.latency.learned import LearnedLatencyModel

        return LearnedLatencyModel.load(folder, g, device=name)
    raise LatencyTableError(f"{folder}/meta.yaml has model {kind!r}; expected one of 'table', 'layer_cost', 'learned'")


def _calibration(calib: Any, folder: Path) -> tuple[float, float, float]:
    try:
        a, b, c = (float(v) for v in (calib["a"], calib["b"], calib["c"]))
    except (KeyError, TypeError, ValueError):
        raise LatencyTableError(f"{folder}/meta.yaml: calibration must be a mapping with numbers a, b, c "
                                f"(latency = a*sum + b*n_blocks + c), got {calib!r}") from None
    return a, b, c
