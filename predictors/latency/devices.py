"""The device registry and :func:`load_latency_model`, the one entry point search and scripts use.

A device is ``configs/device/<name>.yaml``, instantiated by Hydra to a :class:`Device` (``name``, ``table_dir``,
``latency``: how its latency is known, ``description``; an alias is a defaults list naming its target). Search
passes the built Device; a name alone is composed through Hydra (:mod:`supernets.compose`). Its data for a supernet lives in
``latency_tables/<table_dir>/<supernet>/meta.yaml`` whose ``model:`` says what to serve:

* ``table`` — per-layer table sum (``table.csv``); with ``calibration: [a, b, c]`` the calibrated table;
  with ``fallback: layer_cost`` resolutions the table lacks come from the layer-cost model in the same
  meta (``layer_cost:``), in ``latency_tables/<table_dir>/layer_cost.yaml``, or else fitted on the table;
* ``layer_cost`` — the layer-cost model (``layer_cost: {coef, scales, offset}``), e.g. few-shot devices;
* ``learned`` — a ridge model over per-block features trained on whole-network measurements.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from predictors.base import ArchModel
from predictors.latency.layer_cost import LayerCostModel
from predictors.latency.models import DenseLatencyModel, TableLatencyModel
from predictors.latency.table import LatencyTableError, load_meta, load_table
from supernets.compose import compose_file, compose_option, group_options
from supernets.measurable import MeasurableLayers, NotMeasurableError
from supernets.paths import LATENCY_TABLES_DIR

__all__ = ["Device", "UnknownDeviceError", "as_device", "build_command", "device_config", "geometry_for",
           "layer_cost_from", "list_devices", "load_latency_model", "resolve_device", "table_buildable"]


class UnknownDeviceError(ValueError):
    """The device name has no ``configs/device/<name>.yaml``."""


class NoLatencyDataError(LatencyTableError):
    """The device is known but has no latency data for the requested supernet."""


@dataclass(frozen=True)
class Device:
    """A target device and how its latency is known: what ``configs/device/<name>.yaml`` instantiates to.

    Args:
        name: the canonical name (an alias config composes its target's, so both name one device).
        latency: how its latency is known: ``table``, ``few_shot`` or ``learned`` (what ``meta.yaml`` serves).
        table_dir: its folder under ``latency_tables/`` (default: ``name``).
        description: one line for listings.
        measured_here: timed on the machine that serves it (``search.py`` probes such a table first).
    """

    name: str
    latency: str = "table"
    table_dir: str | None = None
    description: str = ""
    measured_here: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise LatencyTableError(f"a device needs a non-empty 'name:', got {self.name!r}")
        if self.table_dir is None:
            object.__setattr__(self, "table_dir", self.name)

    def config(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:  # messages name the device
        return self.name

    def to_yaml(self) -> str:
        """The file that registers this device as ``configs/device/<name>.yaml`` (packaged under ``device.<name>``
        so that ``device=[a,b]`` composes both side by side)."""
        body = {"_target_": f"{__name__}.Device", **{k: v for k, v in asdict(self).items()
                                                      if k == "name" or (v and v != self.name)}}
        return f"# @package device.{self.name}\n" + yaml.safe_dump(body, sort_keys=False)


def list_devices(*, device_dir: Path | None = None) -> list[str]:
    """Names accepted by ``device=...`` (aliases included), sorted."""
    if device_dir is not None:
        return sorted(p.stem for p in Path(device_dir).glob("*.yaml"))
    return group_options("device")


def as_device(cfg: Any) -> Device:
    """A :class:`Device` from a composed device config (``_target_`` instantiated; a flat mapping without one,
    as ``scripts/build_latency_table.py stage=import`` writes, taken as the Device's fields)."""
    if isinstance(cfg, Device):
        return cfg
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("name"), str):
        raise LatencyTableError(f"a device config must be a mapping with at least 'name:', got {cfg!r}")
    if "_target_" in cfg:
        from hydra.utils import instantiate

        dev = instantiate(dict(cfg))
        if not isinstance(dev, Device):
            raise LatencyTableError(f"device config {cfg['name']!r}: _target_ {cfg['_target_']} built a "
                                    f"{type(dev).__name__}, not a predictors.latency.devices.Device")
        return dev
    fields = {k: v for k, v in cfg.items() if k in Device.__dataclass_fields__}
    return Device(**fields)


def resolve_device(device: str | Device | Mapping[str, Any], *, device_dir: Path | None = None) -> Device:
    """A device by name (``configs/device/<name>.yaml`` composed by Hydra, aliases resolved by its defaults
    list), or a built :class:`Device` / composed config as it is."""
    if not isinstance(device, str):
        return as_device(device)
    known = list_devices(device_dir=device_dir)
    if device not in known:
        raise UnknownDeviceError(
            f"unknown device {device!r}; known devices: {', '.join(known)}. "
            f"Add configs/device/<name>.yaml (a table built with scripts/build_latency_table.py, or a few-shot "
            f"or learned model) to register a new one"
        )
    if device_dir is not None:
        cfg = compose_file(device_dir, device)
    else:
        cfg = compose_option("device", device)
    # configs/device/<name>.yaml is packaged under device.<name> (so device=[a,b] composes both side by side)
    for key in ("device", device):
        if isinstance(cfg.get(key), Mapping):
            cfg = cfg[key]
    return as_device(cfg)


def device_config(device: str | Device | Mapping[str, Any], *, device_dir: Path | None = None) -> dict[str, Any]:
    """The device's config with aliases resolved (``name`` is the canonical name, ``table_dir`` set)."""
    return resolve_device(device, device_dir=device_dir).config()


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


def layer_cost_from(meta: dict[str, Any], folder: Path, table: Any = None,
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


def load_latency_model(device: str | Device, supernet: str, *, tables_dir: Path | None = None,
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
    device = device if isinstance(device, str) else cfg["name"]
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
            lc = layer_cost_from(meta, folder, table, g)
            model = model.fill_missing(lc.dense(g, supernet=supernet, device=name))
        _check_positive(model, folder)
        return model
    if kind == "layer_cost":
        return layer_cost_from(meta, folder).dense(g, name=str(meta.get("method", "layer_cost")), supernet=supernet,
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
    if not all(map(math.isfinite, (a, b, c))) or a <= 0:  # b, c may be negative: fitted intercepts
        raise LatencyTableError(f"{folder}/meta.yaml: calibration needs finite a, b, c with a > 0 (latency = a*sum + "
                                f"b*n_blocks + c), got a={a}, b={b}, c={c}; refit it (scripts/build_latency_table.py)")
    return a, b, c


def _check_positive(model: DenseLatencyModel, folder: Path) -> None:
    """The smallest and largest arch at every resolution must get a positive latency: a calibration whose
    intercept overshoots would put negative latencies on a Pareto front."""
    space = model.geometry.space
    r_col = space.group_slices["r"].start
    x = np.concatenate([np.repeat(base[None, :], space.n_choices[r_col], axis=0)
                        for base in (np.zeros(space.n_columns, dtype=np.int64), space.n_choices - 1)])
    x[:, r_col] = np.tile(np.arange(space.n_choices[r_col]), 2)
    lat = np.asarray(model.predict(space.normalize(x)), dtype=float)
    if not (np.isfinite(lat) & (lat > 0)).all():
        raise LatencyTableError(f"{folder}: the model predicts {lat.min():.4g} ms for some smallest/largest arch; "
                                f"latencies must be positive and finite: check meta.yaml's calibration or rebuild")
