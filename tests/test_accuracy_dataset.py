"""Accuracy datasets: DyNAS-T import, validation of bad input, and the resumable, shardable builder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from predictors.accuracy import import_dynast, read_dataset, write_dataset
from predictors.accuracy.builder import build_accuracy_dataset, merge_shards, plan_archs, shard_path
from predictors.accuracy.models import torch_threads
from supernets import create_supernet
from supernets.space import MobileNetV3Space

FIXTURE = Path(__file__).parent / "data" / "accuracy" / "dynast_sample.csv"


def test_dynast_import_dedupes_and_averages_repeats():
    ds = import_dynast([FIXTURE], MobileNetV3Space(), supernet="ofa_mbv3_w10")
    assert len(ds) == 3 and ds.meta["n_raw_rows"] == 5
    # rows 1 and 4 of the fixture are the same arch measured at 75.448 and 75.462 %
    assert ds.top1[0] == pytest.approx((0.75448 + 0.75462) / 2)
    assert ds.archs[0].d == (2, 3, 2, 4, 3) and ds.archs[0].r == 224
    assert ds.macs[0] == 255502624 and ds.params[0] == 5029656


@pytest.mark.parametrize("column, value", [("Top-1 Acc (%)", "n/a"), ("MACs", "many")])
def test_dynast_row_with_a_non_number_raises_naming_file_line_and_column(tmp_path, column, value):
    import csv

    with open(FIXTURE, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[1][column] = value
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError, match=rf"bad\.csv:3: {re.escape(column)} '{value}' is not a number"):
        import_dynast([bad], MobileNetV3Space())


def test_bundled_dynast_dataset_is_distinct_archs_at_224():
    # dedupe=False: a repeated arch raises here instead of being averaged away
    ds = read_dataset("dynast_ofa_mbv3_w10", supernet="ofa_mbv3_w10", dedupe=False)
    assert len(ds) == len(set(ds.archs)) == ds.meta["n"] > 2000
    assert set(ds.resolutions) == {224} and 0.70 < ds.top1.min() < ds.top1.max() < 0.78


def test_dataset_write_read_round_trip(tmp_path):
    ds = import_dynast([FIXTURE], MobileNetV3Space(), supernet="ofa_mbv3_w10")
    again = read_dataset(write_dataset(ds, tmp_path / "d.csv"))
    assert again.archs == ds.archs and again.supernet == "ofa_mbv3_w10"
    np.testing.assert_array_equal(again.top1, ds.top1)


@pytest.mark.parametrize("body, match", [
    ("", "empty"),
    ("arch,top1,macs,params\n", "no rows"),
    ("arch,macs\nr=224,1\n", "lacks"),
    ("arch,top1,macs,params\nr=999_d=2,0.5,,\n", ":2:"),
    ("arch,top1,macs,params\n{arch},75.4,,\n", "divide|fraction"),
    ("arch,top1,macs,params\n{arch},0.75,1,2,3,4\n", "truncated or corrupt"),
    ("arch,top1,macs,params\n{arch},abc,,\n", "not a number"),
])
def test_bad_dataset_files_raise_clear_errors(tmp_path, body, match):
    space = MobileNetV3Space()
    path = tmp_path / "bad.csv"
    path.write_text(body.format(arch=space.max_arch()))
    with pytest.raises(ValueError, match=match):
        read_dataset(path, space=space)


def test_dataset_for_another_space_or_supernet_is_refused(tmp_path):
    ds = import_dynast([FIXTURE], MobileNetV3Space(), supernet="ofa_mbv3_w10")
    path = write_dataset(ds, tmp_path / "d.csv")
    tiny = create_supernet("ofa_mbv3_tiny").space
    with pytest.raises(ValueError, match="is for space"):
        read_dataset(path, space=tiny)
    with pytest.raises(ValueError, match="ofa_mbv3_w10"):
        read_dataset(path, supernet="ofa_mbv3_w12")
    path.with_suffix(".yaml").unlink()
    with pytest.raises(ValueError, match="no sidecar"):
        read_dataset(path)


# ---------------------------------------------------------------------------------------- builder
@pytest.fixture(scope="module")
def tiny():
    """A freshly built tiny supernet (seeded) and 64 synthetic 28x28 images whose class shifts the mean."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_supernet("ofa_mbv3_tiny", num_classes=4, in_chans=1)
        y = torch.arange(32) % 4
        x = torch.randn(32, 1, 28, 28) + y.view(-1, 1, 1, 1).float()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    with torch_threads(1):
        yield net, loader


def _rows(path: Path) -> list[str]:
    return [line.split(",")[0] for line in path.read_text().splitlines()[1:]]


def test_plan_includes_max_min_and_is_deterministic(tiny):
    net, _ = tiny
    macs = lambda e: net.macs_params(e)[0]  # noqa: E731
    plan = plan_archs(net.space, 12, seed=3, macs_fn=macs)
    assert plan[:2] == [net.space.max_arch(), net.space.min_arch()]
    assert len(set(plan)) == 12 and plan == plan_archs(net.space, 12, seed=3, macs_fn=macs)
    # stratification reaches the top of the MACs range, which uniform gene sampling (almost) never does
    lo, hi = macs(net.space.encode([net.space.min_arch(), net.space.max_arch()]))
    top = {}
    for strat in (macs, None):
        m = macs(net.space.encode(plan_archs(net.space, 40, seed=0, macs_fn=strat)[2:]))
        top[strat is None] = int((m > lo + 0.6 * (hi - lo)).sum())
    assert top[False] >= 4 and top[False] > top[True]


def test_plan_larger_than_the_space_is_refused_instead_of_sampling_forever():
    import signal

    space = MobileNetV3Space(name="micro", kernel_sizes=(3,), expand_ratios=(3,), depths=(1, 2), n_stages=2,
                             resolutions=(16, 24))
    assert space.count_with_resolutions() == 8

    def hung(*_: object) -> None:
        raise TimeoutError("plan_archs did not return within 10 s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        assert len(set(plan_archs(space, 8, seed=0))) == 8  # the whole space is fine
        with pytest.raises(ValueError, match=r"n=9 .* only 8 distinct archs"):
            plan_archs(space, 9, seed=0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_resumed_build_has_no_duplicate_and_no_missing_row(tiny, tmp_path):
    net, loader = tiny
    out = tmp_path / "acc.csv"
    kw = dict(n=6, seed=0, calib_batches=1, progress=False)
    build_accuracy_dataset(net, loader, loader, out, limit=2, **kw)  # "killed" after two rows
    assert len(_rows(out)) == 2
    with open(out, "a") as f:  # and killed in the middle of writing the third
        f.write(str(net.space.min_arch())[:20])
    build_accuracy_dataset(net, loader, loader, out, **kw)
    rows = _rows(out)
    plan = [str(a) for a in plan_archs(net.space, 6, 0, macs_fn=lambda e: net.macs_params(e)[0])]
    assert len(rows) == len(set(rows)) == 6 and set(rows) == set(plan)
    ds = read_dataset(out, supernet=None)
    assert ds.space == net.space and np.all((ds.top1 >= 0) & (ds.top1 <= 1)) and np.all(ds.macs > 0)
    before = out.read_bytes()
    build_accuracy_dataset(net, loader, loader, out, **kw)  # complete: nothing to do
    assert out.read_bytes() == before


def test_build_refuses_a_different_plan_on_an_existing_dataset(tiny, tmp_path):
    net, loader = tiny
    out = tmp_path / "acc.csv"
    build_accuracy_dataset(net, loader, loader, out, n=4, calib_batches=1, progress=False, limit=1)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="another plan"):
        build_accuracy_dataset(net, loader, loader, out, n=5, calib_batches=1, progress=False)
    assert out.read_bytes() == before


def test_shards_merge_into_the_full_plan(tiny, tmp_path):
    net, loader = tiny
    out = tmp_path / "acc.csv"
    for i in range(2):
        build_accuracy_dataset(net, loader, loader, out, n=5, shard=f"{i}/2", calib_batches=1, progress=False)
    assert shard_path(out, (1, 2)).name == "acc.shard1of2.csv"
    merged = read_dataset(merge_shards(out))
    plan = plan_archs(net.space, 5, 0, macs_fn=lambda e: net.macs_params(e)[0])
    assert sorted(map(str, merged.archs)) == sorted(map(str, plan)) and merged.meta["complete"]
    with pytest.raises(FileExistsError):
        merge_shards(out)


def test_shards_measured_with_other_data_settings_are_not_merged(tiny, tmp_path):
    net, loader = tiny
    out = tmp_path / "acc.csv"
    for i, batch in enumerate((8, 16)):  # e.g. two machines given different batch_size overrides
        build_accuracy_dataset(net, loader, loader, out, n=4, shard=f"{i}/2", calib_batches=1, progress=False,
                               source={"ckpt_sha256": "abc", "data": {"name": "digits", "batch_size": batch}})
    with pytest.raises(ValueError, match="different source data"):
        merge_shards(out)
    assert not out.exists()


def test_script_jobs_builds_shards_in_parallel_processes_and_merges_them_like_one_process(compose_config, tmp_path):
    import subprocess
    import sys

    from supernets.paths import REPO_ROOT
    from supernets.training import train
    from tests.training_utils import tiny_overrides

    overrides = [o for o in tiny_overrides(tmp_path / "run") if o != "callbacks=none"]
    train(compose_config("train", [*overrides, "callbacks=default", "callbacks.progress_bar=null",
                                   "schedule.end_phase=teacher"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    common = [sys.executable, "scripts/build_accuracy_dataset.py", f"ckpt={ckpt}", "n=6", "calib_batches=1",
              f"hydra.run.dir={tmp_path / 'h'}"]
    for jobs, out in ((2, tmp_path / "par.csv"), (1, tmp_path / "one.csv")):
        subprocess.run([*common, f"jobs={jobs}", f"out={out}"], cwd=REPO_ROOT, check=True, capture_output=True)
    par, one = read_dataset(tmp_path / "par.csv"), read_dataset(tmp_path / "one.csv")
    assert len(par) == 6 and sorted(map(str, par.archs)) == sorted(map(str, one.archs))
    assert dict(zip(map(str, par.archs), par.top1)) == dict(zip(map(str, one.archs), one.top1))
    assert par.meta["complete"] and sorted(par.meta["merged_from"]) == ["par.shard0of2.csv", "par.shard1of2.csv"]
    rerun = subprocess.run([*common, "jobs=2", f"out={tmp_path / 'par.csv'}"], cwd=REPO_ROOT, check=True,
                           capture_output=True, text=True)
    assert "nothing to do" in rerun.stdout
    # a build begun in one process is continued, not mistaken for a merged one
    subprocess.run([*common, "jobs=1", "limit=2", f"out={tmp_path / 'half.csv'}"], cwd=REPO_ROOT, check=True,
                   capture_output=True)
    cont = subprocess.run([*common, "jobs=2", f"out={tmp_path / 'half.csv'}"], cwd=REPO_ROOT, check=True,
                          capture_output=True, text=True)
    assert "continuing it in this process" in cont.stdout
    assert read_dataset(tmp_path / "half.csv").top1.tolist() == read_dataset(tmp_path / "one.csv").top1.tolist()


def test_resume_from_checkpoint_with_another_batch_size_is_refused_and_the_sidecar_records_the_one_used(
        compose_config, tmp_path):
    import yaml

    from predictors.accuracy.builder import build_from_checkpoint
    from supernets.training import train
    from tests.training_utils import tiny_overrides

    overrides = [o for o in tiny_overrides(tmp_path / "run") if o != "callbacks=none"]
    train(compose_config("train", [*overrides, "callbacks=default", "callbacks.progress_bar=null",
                                   "schedule.end_phase=teacher"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    kw = dict(n=4, calib_batches=1, progress=False, limit=1, threads=1)
    out = build_from_checkpoint(ckpt, tmp_path / "acc.csv", batch_size=4, **kw)
    data = yaml.safe_load(out.with_suffix(".yaml").read_text())["source"]["data"]
    assert data["batch_size"] == data["val_batch_size"] == 4  # the one used, not the checkpoint's 8
    before = out.read_bytes(), out.with_suffix(".yaml").read_bytes()
    with pytest.raises(ValueError, match=r"batch_size=4 there, 8 now.*same batch_size"):
        build_from_checkpoint(ckpt, out, **kw)  # the checkpoint's batch size (8) this time
    assert (out.read_bytes(), out.with_suffix(".yaml").read_bytes()) == before
    build_from_checkpoint(ckpt, out, batch_size=4, **kw)  # the same settings resume
    assert len(_rows(out)) == 2


def test_space_spec_that_is_not_a_mapping_is_a_clear_error():
    from predictors.accuracy.spaces import space_from_dict

    with pytest.raises(ValueError, match=r"must be a mapping with 'family'.*got str 'ofa_mbv3'"):
        space_from_dict("ofa_mbv3")
