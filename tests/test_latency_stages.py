"""export -> measure (the standalone runner, numpy + onnxruntime only) -> import, against a local build."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import yaml

from predictors.latency.build import build_latency_table, load_calibration
from predictors.latency.devices import load_latency_model
from predictors.latency.measure import MeasureSettings
from predictors.latency.models import TableLatencyModel
from predictors.latency.stages import export_bundle, import_timings, read_timings
from predictors.latency.table import LatencyTableError, load_table
from tests.test_latency_build import _micro_supernet

RUNNER_ARGS = ["--warmup", "2", "--repeats", "10", "--sessions", "1", "--statistic", "p10"]
LOCAL = MeasureSettings(warmup=2, repeats=10, sessions=1, statistic="p10")


def _bare_site(tmp_path: Path) -> Path:
    """A folder holding only numpy and onnxruntime (and numpy's bundled libraries), as symlinks."""
    site = tmp_path / "site"
    site.mkdir()
    for mod in (np, onnxruntime):
        pkg = Path(mod.__file__).parent
        for p in pkg.parent.glob(f"{pkg.name}*"):  # numpy, numpy.libs, *.dist-info
            (site / p.name).symlink_to(p)
    return site


def _run_bare(site: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -I -S``: no site-packages, no environment, no cwd on the path; only ``site`` is added."""
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import runpy\n"
            "for banned in ('torch', 'predictors', 'supernets', 'oncenas', 'yaml', 'scipy'):\n"
            "    try:\n        __import__(banned)\n    except ImportError:\n        pass\n"
            "    else:\n        raise SystemExit(f'{banned} is importable in the bare environment')\n"
            "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    return subprocess.run([sys.executable, "-I", "-S", "-c", code, str(site), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_runner_in_a_numpy_onnxruntime_only_environment_imports_into_the_local_builds_keys(tmp_path):
    bundle = export_bundle("micro", tmp_path / "bundle", n_calibration=3, archive=True, progress=False,
                           supernet=_micro_supernet())
    assert bundle.name == "bundle.tar.gz"
    work = tmp_path / "device"  # what the user copies to the device: the archive alone
    work.mkdir()
    (work / bundle.name).write_bytes(bundle.read_bytes())
    import tarfile

    with tarfile.open(bundle) as tar:
        tar.extract("bundle/measure.py", work)
    site = _bare_site(tmp_path)
    first = _run_bare(site, [str(work / "bundle" / "measure.py"), str(work / bundle.name), *RUNNER_ARGS,
                             "--max-new", "4"], work)
    assert first.returncode == 0, first.stderr
    results = work / "bundle" / "results"
    with open(results / "timings.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    with pytest.raises(LatencyTableError, match="have no timing"):
        import_timings(work / "bundle", "my_board", tables_dir=tmp_path / "tables", supernet=_micro_supernet())
    again = _run_bare(site, [str(work / "bundle" / "measure.py"), str(work / "bundle"), *RUNNER_ARGS], work)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].startswith("[5/")  # resumed, nothing timed twice
    with open(results / "timings.csv") as f:
        rows = list(csv.DictReader(f))
    by_id: dict[str, list[float]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(float(row["value_ms"]))
    # three passes over every model (the default), each once; the import keeps each model's fastest pass
    assert sorted(int(r["pass"]) for r in rows) == sorted([1, 2, 3] * len(by_id))
    timings, _ = read_timings(results)
    assert {k: t["value_ms"] for k, t in timings.items()} == {k: min(v) for k, v in by_id.items()}
    assert {t["passes"] for t in timings.values()} == {3}
    other = _run_bare(site, [str(work / "bundle" / "measure.py"), str(work / "bundle"), "--threads", "2"], work)
    assert other.returncode != 0 and "another machine/setting" in other.stderr

    folder = import_timings(work / "bundle", "my_board", tables_dir=tmp_path / "tables",
                            device_config=tmp_path / "devices", supernet=_micro_supernet())
    local = build_latency_table("micro", tmp_path / "local", settings=LOCAL, n_calibration=3, progress=False,
                                supernet=_micro_supernet())
    remote_t, local_t = load_table(folder), load_table(local)
    assert set(remote_t.entries) == set(local_t.entries)
    assert [r["arch"] for r in load_calibration(folder)] == [r["arch"] for r in load_calibration(local)]
    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    assert meta["fingerprint"]["runner"] == "ort_runner" and meta["measurement"]["statistic"] == "p10"
    assert yaml.safe_load((tmp_path / "devices" / "my_board.yaml").read_text())["name"] == "my_board"
    # the imported device serves through the normal loader; its predictions agree with the local build's
    geo = _micro_supernet().latency_layers()
    remote = load_latency_model("my_board", "micro", tables_dir=tmp_path / "tables", device_dir=tmp_path / "devices",
                                geometry=geo)
    assert remote.name == "calibrated"
    x = geo.space.sample_encoded(np.random.default_rng(0), 32)
    # table sums (the calibration's 3 points on a busy 2-core host add their own noise)
    ratio = TableLatencyModel(geo, remote_t).predict(x) / TableLatencyModel(geo, local_t).predict(x)
    print(f"remote/local table-sum ratio: median {np.median(ratio):.3f}, range {ratio.min():.3f}..{ratio.max():.3f}")
    assert 0.5 < np.median(ratio) < 2  # same host, contended: see the README for the measured noise (a unit slip is 1000x)
