"""The accuracy-dataset builder loses nothing and never hangs on orphans (issue #27 item 3b): workers die with
their parent, a shard has one writer at a time, and a rerun repairs duplicated or torn rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from predictors.accuracy.builder import build_accuracy_dataset, plan_archs
from predictors.accuracy.workers import exclusive_writer
from tests.test_accuracy_dataset import _rows, tiny  # noqa: F401 - tiny is a fixture

WORKERS = Path(__file__).resolve().parents[1] / "predictors" / "accuracy" / "workers.py"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its reaping is left


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc (Linux)")
def test_a_worker_dies_when_its_parent_is_killed():
    # the parent (what build_accuracy_dataset.py jobs=2 is) starts a worker armed like the pool's workers, then
    # is SIGKILLed: nothing runs its cleanup, so only the worker's own arming can end it
    child = (f"import importlib.util, os, time; spec = importlib.util.spec_from_file_location('w', {str(WORKERS)!r}); "
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); m.die_with_parent(os.getppid()); "
             "print('armed', flush=True); time.sleep(60)")
    parent = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', sys.argv[1]]); "
              "print(c.pid, flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", parent, child], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(p.stdout.readline())
        assert p.stdout.readline().strip() == "armed"
        assert _alive(worker)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the worker outlived its killed parent"
    finally:
        p.kill()
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_shard_has_one_writer_at_a_time(tiny, tmp_path):  # noqa: F811
    net, loader = tiny
    out = tmp_path / "acc.csv"
    lock = exclusive_writer(out)  # what a still-running (e.g. orphaned) writer of this shard holds
    try:
        with pytest.raises(RuntimeError, match=r"acc.csv is being written by another process"):
            build_accuracy_dataset(net, loader, loader, out, n=4, seed=0, calib_batches=1, progress=False)
    finally:
        lock.release()
    build_accuracy_dataset(net, loader, loader, out, n=4, seed=0, calib_batches=1, progress=False)
    assert len(_rows(out)) == 4


def test_a_rerun_repairs_duplicated_and_torn_rows_left_by_two_writers(tiny, tmp_path):  # noqa: F811
    net, loader = tiny
    out = tmp_path / "acc.csv"
    kw = dict(n=6, seed=0, calib_batches=1, progress=False)
    build_accuracy_dataset(net, loader, loader, out, limit=3, **kw)
    header, *rows = out.read_text().splitlines()
    # what two interleaved writers left: a row twice, one cut by the other's write, and a torn last line
    out.write_text("\n".join([header, rows[0], rows[1], rows[0], rows[2][:25] + rows[1], rows[2], rows[1][:30]]))
    build_accuracy_dataset(net, loader, loader, out, **kw)
    got = _rows(out)
    plan = [str(a) for a in plan_archs(net.space, 6, 0, macs_fn=lambda e: net.macs_params(e)[0])]
    assert len(got) == len(set(got)) == 6 and set(got) == set(plan)
