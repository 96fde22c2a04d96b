"""Build a device latency table by timing every distinct block of a supernet's space with ONNX Runtime.

For each resolution of the space, every layer signature any arch can use (stem, first block, each
``(stage, slot, kernel, expand)`` block, final expand, head) is cut out of a static subnet extracted with
``get_active_subnet()``, exported to ONNX with its input shape, and timed. Then ``K`` random whole subnets
are measured end to end (``calibration.csv``) and ``latency ≈ a·sum + b·n_blocks + c`` is fitted. Both are
timed in ``settings.passes`` passes over the whole list, each keeping its fastest pass (see
:class:`~predictors.latency.measure.MeasureSettings`).

Resumable: after every measurement ``table.csv`` (or ``calibration.csv``) is rewritten atomically, so a
killed build restarts where it stopped and loses nothing (a row's ``count`` of timed runs, or a calibration
row's ``passes``, says how many passes it has had); ``meta.yaml`` says ``status: partial`` until the
build completes. A build refuses to mix measurements from another host fingerprint unless told to restart.

A restart of a complete table measures into ``<table>/.rebuild/`` and swaps the finished files in at the end, so
the old table is served whole until then, also when the rebuild is killed; rerunning the same command resumes the
staged rebuild.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from predictors.latency.calibration import CALIBRATION_COLUMNS, calibration_csv, calibration_summary, load_calibration
from predictors.latency.measure import MeasureSettings, environment_fingerprint, measure_onnx, measure_onnx_passes
from predictors.latency.models import TableLatencyModel
from predictors.latency.quant import export_layer_onnx, export_subnet_onnx
from predictors.latency.stages import calibration_archs
from predictors.latency.table import (
    LatencyTable,
    LatencyTableError,
    atomic_write_text,
    load_meta,
    parse_table_csv,
)
from supernets.measurable import MeasurableLayers, measurable_for

__all__ = ["CALIBRATION_COLUMNS", "build_latency_table", "calibration_csv", "calibration_summary", "export_subnets",
           "load_calibration", "measure_subnets", "recalibrate"]

#: Fingerprint fields that must agree for measurements to share one table.
_HOST_FIELDS = ("cpu", "onnxruntime", "provider", "threads", "graph_opt", "batch", "statistic")
#: where a restart of a complete table measures (see the module docstring)
STAGING = ".rebuild"


def _work_list(geometry: MeasurableLayers, resolutions: Sequence[int]) -> list[tuple[int, str, Any]]:
    """Distinct ``(resolution, key, layer)`` in build order."""
    return [(r, key, layer) for (r, key), layer in geometry.distinct_layers(resolutions).items()]


class _OnnxFiles:
    """ONNX files exported once per build and kept in its temporary folder for the later passes, up to
    ``keep_bytes`` (ResNet50's layers at every resolution would fill gigabytes: beyond that, re-export)."""

    def __init__(self, folder: Path, prefix: str, keep_bytes: int = 4 << 30):
        self.folder, self.prefix, self.keep_bytes = folder, prefix, keep_bytes
        self.files: dict[Any, Path] = {}
        self.kept_paths: set[Path] = set()
        self.kept = 0
        self.n = 0

    def get(self, key: Any, export: Callable[[Path], None]) -> Path:
        if key in self.files:
            return self.files[key]
        path = self.folder / f"{self.prefix}{self.n:05d}.onnx"
        self.n += 1
        export(path)
        size = path.stat().st_size
        if self.kept + size <= self.keep_bytes:
            self.files[key], self.kept = path, self.kept + size
            self.kept_paths.add(path)
        return path

    def done(self, path: Path) -> None:
        """Forget a file that was not kept."""
        if path not in self.kept_paths:
            path.unlink(missing_ok=True)


def _check_host(meta: dict[str, Any], env: dict[str, Any], folder: Path) -> None:
    old = meta.get("fingerprint") or {}
    diff = {k: (old.get(k), env.get(k)) for k in _HOST_FIELDS if old.get(k) != env.get(k)}
    if diff:
        raise LatencyTableError(
            f"{folder} holds measurements from another host/setting ({diff}, old vs now); measurements from "
            f"different hosts must not be mixed. Pass restart=true (restart=True) to discard them, or build into "
            f"another folder/device name"
        )


def measure_subnets(supernet: Any, archs: Sequence[Any], settings: MeasureSettings, workdir: Path,
                    progress: bool = True) -> list[dict[str, Any]]:
    """Export each arch's static subnet into ``workdir`` and time them all together end to end, in
    ``settings.passes`` passes (:func:`~predictors.latency.measure.measure_onnx_passes`)."""
    paths = export_subnets(supernet, archs, settings, workdir, progress=progress)
    return measure_onnx_passes(paths, settings, progress=progress, desc="whole subnets")


def export_subnets(supernet: Any, archs: Sequence[Any], settings: MeasureSettings, workdir: Path,
                   progress: bool = False) -> list[Path]:
    """Each arch's static subnet as ``workdir/subnetNNNN.onnx``, at the batch size of ``settings``."""
    from tqdm.auto import tqdm

    input_shape = measurable_for(supernet).input_shape
    paths = []
    for i, arch in enumerate(tqdm(archs, desc="export subnets", disable=not progress)):
        path = Path(workdir) / f"subnet{i:04d}.onnx"
        export_subnet_onnx(supernet, arch, (settings.batch, *input_shape(arch.r)[1:]), path)
        paths.append(path)
    return paths


def build_latency_table(supernet_name: str, out_dir: Path | str, *, device: str = "host_cpu",
                        settings: MeasureSettings | None = None, resolutions: Sequence[int] | None = None,
                        n_calibration: int = 30, seed: int = 0, restart: bool = False, progress: bool = True,
                        stop_after: int | None = None, command: str | None = None,
                        supernet: Any | None = None) -> Path:
    """Measure (or finish measuring) the table of ``supernet_name`` into ``out_dir``.

    Args:
        resolutions: subset of the space's resolutions (default: all).
        n_calibration: whole subnets measured end to end for the calibrated model (0 to skip).
        restart: discard existing measurements instead of resuming.
        stop_after: stop after this many new measurements (tests use it to simulate a kill).
        supernet: an already-built supernet to use instead of ``create_supernet(supernet_name)``.

    Returns:
        ``out_dir``; ``meta.yaml`` has ``status: complete`` when everything was measured.
    """
    from tqdm.auto import tqdm

    import supernets

    s = settings or MeasureSettings()
    folder = Path(out_dir)
    if restart and _status(folder) == "complete":
        staging = folder / STAGING
        if _status(staging) and not _same_setup(load_meta(staging), supernet_name, s):
            shutil.rmtree(staging)  # a staged rebuild measured some other way: this restart starts over
        if _status(staging) != "complete":
            build_latency_table(supernet_name, staging, device=device, settings=s, resolutions=resolutions,
                                n_calibration=n_calibration, seed=seed, progress=progress, stop_after=stop_after,
                                command=command, supernet=supernet)
        if _status(staging) == "complete":
            _swap_in(staging, folder)
        return folder
    supernet = (supernets.create_supernet(supernet_name) if supernet is None else supernet).eval()
    geometry = measurable_for(supernet)
    sp = geometry.space
    res = list(sp.resolutions) if resolutions is None else [int(r) for r in resolutions]
    bad = [r for r in res if r not in sp.resolutions]
    if bad:
        raise ValueError(f"resolutions {bad} are not in supernet {supernet_name!r}'s space {list(sp.resolutions)}")
    env = environment_fingerprint(s)

    table_path, calib_path = folder / "table.csv", folder / "calibration.csv"
    entries: dict[tuple[int, str], float] = {}
    std: dict[tuple[int, str], float] = {}
    count: dict[tuple[int, str], int] = {}
    calib_rows: list[dict[str, Any]] = []
    if restart:
        for p in (table_path, calib_path):
            p.unlink(missing_ok=True)
    elif table_path.is_file():
        old_meta = load_meta(folder) if (folder / "meta.yaml").is_file() else {}
        _check_host(old_meta, env, folder)
        if old_meta.get("supernet", supernet_name) != supernet_name:
            raise LatencyTableError(f"{folder} holds a table for {old_meta.get('supernet')!r}, not {supernet_name!r}")
        entries, std, count = parse_table_csv(table_path.read_text(encoding="utf-8"), str(table_path))
        calib_rows = load_calibration(folder)

    def write_meta(status: str, extra: dict[str, Any] | None = None) -> None:
        meta = {
            "device": device, "supernet": supernet_name, "source": "measured", "units": "ms",
            "model": "table", "fallback": "layer_cost", "status": status, "runtime": "onnxruntime",
            "fingerprint": env,
            # what the table holds: a run extending a table adds to the resolutions already measured
            "measurement": asdict(s), "resolutions": sorted({r for r, _ in entries} | set(res)),
            "n_entries": len(entries),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "geometry": geometry.description,
        }
        meta.update(extra or {})
        atomic_write_text(folder / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))

    work = _work_list(geometry, res)
    per_pass = s.sessions * s.repeats  # runs one pass adds to a row's count: how a resumed build knows its passes
    todo = [(p, w) for p in range(1, s.passes + 1) for w in work if count.get((w[0], w[1]), 0) // per_pass < p]
    folder.mkdir(parents=True, exist_ok=True)
    write_meta("partial")
    done_now = 0
    with tempfile.TemporaryDirectory(prefix="latency_build_") as tmp:
        layer_files = _OnnxFiles(Path(tmp), "layer")
        bar = tqdm(total=len(work) * s.passes, initial=len(work) * s.passes - len(todo),
                   desc=f"{supernet_name} blocks", disable=not progress)
        for _, (r, key, spec) in todo:
            if stop_after is not None and done_now >= stop_after:
                bar.close()
                return folder
            path = layer_files.get((r, key), lambda p, spec=spec: export_layer_onnx(
                geometry, spec, (s.batch, *spec.input_shape[1:]), p))  # INT8 layers quantized (quant.py)
            m = measure_onnx(path, s)
            layer_files.done(path)
            k = (r, key)
            if k not in entries or m["value_ms"] < entries[k]:
                entries[k], std[k] = m["value_ms"], m["iqr_ms"] / 1.349  # the fastest pass so far
            count[k] = count.get(k, 0) + m["n"]
            # Rewrite the whole file atomically: a kill leaves the previous complete file, never half a row.
            atomic_write_text(table_path, LatencyTable(entries, std=std, count=count).to_csv())
            done_now += 1
            bar.update(1)
        bar.close()

        table = LatencyTable(entries, std=std, count=count, path=folder)
        model = TableLatencyModel(geometry, table, resolutions=res)
        archs = calibration_archs(sp, res, n_calibration, seed)  # the archs stage=export bundles
        rows = {row["arch"]: row for row in calib_rows}
        # table sums from the finished table (also refreshing rows a resumed build measured against fewer layers)
        total, nb = model.block_sums(sp.encode(archs))
        sums = {str(a): {"table_sum_ms": float(t), "n_blocks": int(n)} for a, t, n in zip(archs, total, nb)}

        def calibration_rows() -> list[dict[str, Any]]:
            return [{**rows[str(a)], **sums[str(a)]} for a in archs if str(a) in rows]

        subnet_files = _OnnxFiles(Path(tmp), "subnet")

        def export_subnet(path: Path, arch: Any) -> None:  # mixed-precision archs quantized (quant.py)
            export_subnet_onnx(supernet, arch, (s.batch, *geometry.input_shape(arch.r)[1:]), path)

        for p in range(1, s.passes + 1):
            for arch in archs:
                row = rows.get(str(arch))
                if row is not None and row["passes"] >= p:
                    continue
                if stop_after is not None and done_now >= stop_after:
                    return folder
                path = subnet_files.get(str(arch), lambda f, arch=arch: export_subnet(f, arch))
                m = measure_onnx(path, s)
                subnet_files.done(path)
                if row is None:
                    rows[str(arch)] = row = {"arch": str(arch), "resolution": arch.r, "measured_ms": m["value_ms"],
                                             "std_ms": m["iqr_ms"] / 1.349, "passes": 0}
                elif m["value_ms"] < row["measured_ms"]:
                    row.update(measured_ms=m["value_ms"], std_ms=m["iqr_ms"] / 1.349)
                row["passes"] += 1
                atomic_write_text(calib_path, calibration_csv(calibration_rows()))
                done_now += 1
        calib_rows = calibration_rows()
        if calib_rows:
            atomic_write_text(calib_path, calibration_csv(calib_rows))

    write_meta("complete", {"calibration": calibration_summary(calib_rows)} if len(calib_rows) >= 3 else {})
    return folder


def _status(folder: Path) -> str | None:
    """``meta.yaml``'s status (``partial``/``complete``), None where there is no table."""
    try:
        return load_meta(folder).get("status") if (folder / "meta.yaml").is_file() else None
    except LatencyTableError:
        return None


def _same_setup(meta: dict[str, Any], supernet_name: str, settings: MeasureSettings) -> bool:
    """Whether a staged rebuild was measured as this run would measure (same supernet, host and settings)."""
    env, fp = environment_fingerprint(settings), meta.get("fingerprint") or {}
    return (meta.get("supernet") == supernet_name and meta.get("measurement") == asdict(settings)
            and all(fp.get(f) == env.get(f) for f in _HOST_FIELDS))


def _swap_in(staging: Path, folder: Path) -> None:
    """Move a complete staged rebuild over the table; ``meta.yaml`` last and the staging folder removed after it,
    so a kill part-way leaves a staging folder that a rerun finishes moving (files already moved are skipped)."""
    meta = load_meta(staging)
    if (staging / "table.csv").is_file():
        os.replace(staging / "table.csv", folder / "table.csv")
    if (staging / "calibration.csv").is_file():
        os.replace(staging / "calibration.csv", folder / "calibration.csv")
    elif "calibration" not in meta:  # rebuilt without calibration subnets: the old ones describe the old table
        (folder / "calibration.csv").unlink(missing_ok=True)
    os.replace(staging / "meta.yaml", folder / "meta.yaml")
    shutil.rmtree(staging)


def recalibrate(folder: Path | str) -> dict[str, Any]:
    """Refit the calibration of a finished table from its ``calibration.csv`` and update ``meta.yaml``."""
    folder = Path(folder)
    meta = load_meta(folder)
    rows = load_calibration(folder)
    if len(rows) < 3:
        raise LatencyTableError(f"{folder}/calibration.csv has {len(rows)} measured subnets; need at least 3")
    meta["calibration"] = calibration_summary(rows)
    atomic_write_text(folder / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))
    return meta["calibration"]
