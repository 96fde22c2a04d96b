"""Table building in three stages that can run on different machines: export -> measure -> import.

* :func:`export_bundle` (needs torch + oncenas): every distinct layer signature of a supernet's space (its
  measurable layers, :mod:`supernets.measurable`) and ``K`` whole calibration subnets as ONNX files, a
  ``manifest.json`` and the runner (``measure.py``), into a folder or one ``.tar.gz``.
* ``measure.py`` (:mod:`predictors.latency.ort_runner`, Python + numpy + onnxruntime only) times them on
  the target device: ``results/timings.csv`` + ``results/fingerprint.json``.
* :func:`import_timings` (needs oncenas): timings -> ``table.csv`` + ``calibration.csv`` + ``meta.yaml``
  under ``<tables_dir>/<device>/<supernet>/`` and, where the caller says, ``<device>.yaml`` (a device config).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictors.latency.measure import best_of_passes
from predictors.latency.table import LatencyTable, LatencyTableError, atomic_write_text, save_table

__all__ = ["RUNNER", "export_bundle", "import_timings", "read_timings"]

#: The self-contained runner copied into every bundle as ``measure.py``.
RUNNER = Path(__file__).with_name("ort_runner.py")
MANIFEST_VERSION = 1


def export_bundle(supernet_name: str, out: Path | str, *, resolutions: Sequence[int] | None = None,
                  n_calibration: int = 30, seed: int = 0, archive: bool = False, supernet: Any | None = None,
                  progress: bool = True) -> Path:
    """Write the bundle for ``supernet_name`` into folder ``out`` (and ``out.tar.gz`` with ``archive``).

    Re-running skips ONNX files already written (the export of ResNet50's ~160 layers a resolution takes
    minutes). Returns the folder (or the archive).
    """
    from tqdm.auto import tqdm

    import supernets
    from predictors.latency.export import export_onnx
    from supernets.measurable import measurable_for

    out = Path(out)
    net = (supernets.create_supernet(supernet_name) if supernet is None else supernet).eval()
    m = measurable_for(net)
    sp = m.space
    res = list(sp.resolutions) if resolutions is None else [int(r) for r in resolutions]
    bad = [r for r in res if r not in sp.resolutions]
    if bad:
        raise ValueError(f"resolutions {bad} are not in supernet {supernet_name!r}'s space {list(sp.resolutions)}")
    (out / "layers").mkdir(parents=True, exist_ok=True)
    (out / "subnets").mkdir(parents=True, exist_ok=True)
    layers = []
    for i, ((r, key), layer) in enumerate(tqdm(m.distinct_layers(res).items(), desc="export layers",
                                                disable=not progress)):
        rel = f"layers/{i:05d}.onnx"
        if not (out / rel).is_file():
            export_onnx(m.build(layer), layer.input_shape, out / rel, check=False)
        layers.append({"id": f"L{i:05d}", "resolution": r, "key": key, "file": rel,
                       "input_shape": list(layer.input_shape)})
    archs = calibration_archs(sp, res, n_calibration, seed)
    subnets = []
    for i, arch in enumerate(tqdm(archs, desc="export subnets", disable=not progress)):
        rel = f"subnets/{i:05d}.onnx"
        if not (out / rel).is_file():
            net.set_active_subnet(arch)
            export_onnx(net.get_active_subnet().eval(), m.input_shape(arch.r), out / rel, check=False)
        subnets.append({"id": f"S{i:05d}", "arch": str(arch), "resolution": int(arch.r), "file": rel,
                        "input_shape": list(m.input_shape(arch.r))})
    manifest = {"version": MANIFEST_VERSION, "supernet": supernet_name, "space": sp.name, "resolutions": res,
                "geometry": m.description, "layers": layers, "subnets": subnets, "calibration_seed": seed,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    shutil.copyfile(RUNNER, out / "measure.py")
    if not archive:
        return out
    tar_path = out.parent / f"{out.name}.tar.gz"
    tmp = tar_path.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(out, arcname=out.name, filter=lambda ti: None if "/results" in ti.name else ti)
    tmp.replace(tar_path)
    return tar_path


def calibration_archs(space: Any, resolutions: Sequence[int], n: int, seed: int) -> list[Any]:
    """The ``n`` seeded random subnets measured end to end, at ``resolutions`` (as the local build draws them).

    A mixed-precision space gets one subnet in three all-FP32, one all-INT8 and one of random precisions
    (:meth:`supernets.quant_space.QuantSpace.with_pure_policies`): those are the policies INT8-only and FP32-only
    searches export.
    """
    rng = np.random.default_rng(seed)
    enc = space.sample_encoded(rng, n)
    enc[:, 0] = rng.choice([space.resolutions.index(r) for r in resolutions], size=n)
    if hasattr(space, "with_pure_policies"):
        enc = space.with_pure_policies(enc)
    return space.decode(enc)


def read_timings(results: Path | str) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """``results/timings.csv`` as ``{id: row}`` (a model timed in several passes: its fastest pass, ``n`` summed
    over passes) and ``results/fingerprint.json``."""
    results = Path(results)
    t_path, fp_path = results / "timings.csv", results / "fingerprint.json"
    if not t_path.is_file() or not fp_path.is_file():
        raise LatencyTableError(f"{results} needs timings.csv and fingerprint.json (written by measure.py)")
    passes: dict[str, list[dict[str, float]]] = {}
    with open(t_path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                t = {k: float(row[k]) for k in ("value_ms", "median_ms", "p10_ms", "iqr_ms", "n")}
            except (KeyError, TypeError, ValueError) as exc:
                raise LatencyTableError(f"{t_path} line {line}: malformed row {dict(row)} ({exc})") from None
            passes.setdefault(row["id"], []).append(t)
    out = {k: {**best_of_passes(v), "passes": len(v)} for k, v in passes.items()}
    return out, json.loads(fp_path.read_text(encoding="utf-8"))


def import_timings(bundle: Path | str, device: str, *, tables_dir: Path | str, results: Path | str | None = None,
                   device_config: Path | str | None = None, description: str | None = None,
                   supernet: Any | None = None) -> Path:
    """Turn a bundle's timings into the table folder ``<tables_dir>/<device>/<supernet>`` (and a device config
    at ``device_config``, a ``.yaml`` path or a folder, when given). Returns the table folder.

    Every layer must have been timed; calibration subnets not timed are left out (at least 3 are needed
    for the calibrated model, else the plain table sum is served).
    """
    import supernets
    from predictors.latency.calibration import calibration_csv, calibration_summary
    from predictors.latency.models import TableLatencyModel
    from supernets.measurable import measurable_for

    bundle = Path(bundle)
    if not bundle.is_dir():
        from predictors.latency.ort_runner import open_bundle

        bundle = open_bundle(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    timings, fp = read_timings(Path(results) if results is not None else bundle / "results")
    missing = [m["id"] for m in manifest["layers"] if m["id"] not in timings]
    if missing:
        raise LatencyTableError(f"{len(missing)} of {len(manifest['layers'])} layers of {bundle} have no timing "
                                f"(e.g. {missing[:3]}); finish measure.py (it resumes) before importing")
    name = manifest["supernet"]
    entries, std, count = {}, {}, {}
    for m in manifest["layers"]:
        t = timings[m["id"]]
        k = (int(m["resolution"]), m["key"])
        entries[k], std[k], count[k] = t["value_ms"], t["iqr_ms"] / 1.349, int(t["n"])
    net = supernets.create_supernet(name) if supernet is None else supernet
    geo = measurable_for(net)
    table = LatencyTable(entries, std=std, count=count)
    model = TableLatencyModel(geo, table, resolutions=manifest["resolutions"])
    rows = []
    for m in manifest["subnets"]:
        if m["id"] not in timings:
            continue
        arch = geo.space.parse(m["arch"])
        total, nb = model.block_sums(geo.space.encode([arch]))
        t = timings[m["id"]]
        rows.append({"arch": m["arch"], "resolution": arch.r, "measured_ms": t["value_ms"],
                     "std_ms": t["iqr_ms"] / 1.349, "table_sum_ms": float(total[0]), "n_blocks": int(nb[0]),
                     "passes": int(t["passes"])})
    folder = Path(tables_dir) / device / name
    table.meta = {
        "device": device, "supernet": name, "source": "measured", "units": "ms", "model": "table",
        "fallback": "layer_cost", "status": "complete", "runtime": "onnxruntime", "fingerprint": fp,
        "measurement": {k: fp.get(k) for k in ("provider", "threads", "graph_opt", "warmup", "repeats", "sessions",
                                               "passes", "batch", "statistic")},
        "resolutions": sorted(manifest["resolutions"]), "n_entries": len(entries),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": f"measure.py on {fp.get('host', '?')}, imported from {bundle.name}", "geometry": geo.description,
    }
    if len(rows) >= 3:
        table.meta["calibration"] = calibration_summary(rows)
    folder.mkdir(parents=True, exist_ok=True)
    save_table(table, folder)
    if rows:
        atomic_write_text(folder / "calibration.csv", calibration_csv(rows))
    if device_config is not None:
        path = Path(device_config)
        path = path / f"{device}.yaml" if path.is_dir() or not path.suffix else path
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"name": device, "latency": "table",
               "description": description or f"{fp.get('cpu', '?')}, onnxruntime {fp.get('onnxruntime')} "
                                             f"{fp.get('provider')}, {fp.get('threads')} thread(s)"}
        from predictors.latency.devices import Device  # the config format lives with the class it instantiates

        atomic_write_text(path, Device(**doc).to_yaml())
    return folder
