"""Search behaviour on the tiny OFA-MobileNetV3 space with the fixture tables (tests/data/search)."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest

import search
import supernets
from search.evaluator import ArchEvaluator
from search.objectives import DeviceObjectives
from search.pareto import non_dominated
from search.state import STATE_FILE, load_state, save_state
from tests.data.search.models import LinearAccuracy, TableLatency


class CountingAccuracy(LinearAccuracy):
    """Counts the rows it is asked to predict; can fail on a given call to simulate a killed run."""

    def __init__(self, space, *, fail_on_call: int | None = None) -> None:
        super().__init__(space)
        self.rows = 0
        self.calls = 0
        self.fail_on_call = fail_on_call

    def _predict(self, x):
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise KeyboardInterrupt("simulated kill")
        self.rows += len(x)
        return super()._predict(x)


@pytest.fixture(scope="module")
def tiny():
    return supernets.create_supernet("ofa_mbv3_tiny")


def models(tiny, devices=("dev_a",), **kw):
    return {"accuracy": CountingAccuracy(tiny.space, **kw),
            "latency": {d: TableLatency(tiny.space, d) for d in devices}, "supernet": tiny}


def cfg(tmp_path, **over):
    c = {"device": "dev_a", "supernet": "ofa_mbv3_tiny", "progress": False, "plot": False, "probe": 64,
         "out_dir": str(tmp_path), "seed": 3, "checkpoint_every": 1,
         "algorithm": {"name": "nsga2", "pop_size": 24, "n_gen": 3}}
    c.update(over)
    return c


def dominated_rows(F_front: np.ndarray, F_all: np.ndarray, rtol: float = 1e-5) -> np.ndarray:
    """Whether some row of ``F_all`` dominates each row of ``F_front`` by more than ``rtol`` (relative:
    pareto.csv holds 6 significant digits, so an absolute tolerance is too tight for latencies >= 10 ms)."""
    tol = rtol * np.abs(F_front)[:, None, :] + 1e-12
    return ((F_all[None, :, :] <= F_front[:, None, :] + tol).all(-1)
            & (F_all[None, :, :] < F_front[:, None, :] - tol).any(-1)).any(1)


def test_seeded_three_generation_search_gives_the_same_front_twice(tiny, tmp_path):
    a = search.run(cfg(tmp_path / "a"), **models(tiny))
    b = search.run(cfg(tmp_path / "b"), **models(tiny))
    fa = pd.read_csv(tmp_path / "a" / "dev_a" / "pareto.csv")
    fb = pd.read_csv(tmp_path / "b" / "dev_a" / "pareto.csv")
    assert len(fa) >= 3
    pd.testing.assert_frame_equal(fa, fb)
    assert a["n_evaluated"] == b["n_evaluated"]
    c = search.run(cfg(tmp_path / "c", seed=4), **models(tiny))
    assert not pd.read_csv(tmp_path / "c" / "dev_a" / "pareto.csv").equals(fa) or c["n_evaluated"] != a["n_evaluated"]


def test_every_pareto_row_is_non_dominated_among_all_evaluated_archs(tiny, tmp_path):
    search.run(cfg(tmp_path, algorithm={"name": "nsga2", "pop_size": 30, "n_gen": 5}), **models(tiny))
    front = pd.read_csv(tmp_path / "dev_a" / "pareto.csv")
    assert list(front.columns[:5]) == ["arch", "top1", "latency_ms", "macs", "params"]
    ev_state, _, _ = load_state(tmp_path / STATE_FILE)
    F_all = np.stack([1 - ev_state["top1"], ev_state["lat"][:, 0]], axis=1)
    F_front = np.stack([1 - front["top1"].to_numpy(), front["latency_ms"].to_numpy()], axis=1)
    # no evaluated arch dominates a front row ...
    assert not dominated_rows(F_front, F_all).any()
    # ... and every non-dominated evaluated arch is in the front (the archive keeps what the population drops)
    assert len(non_dominated(F_all)) == len(front)
    # the reported MACs/params are the supernet's analytic counts of those archs
    archs = [tiny.space.parse(a) for a in front["arch"]]
    macs, params = tiny.macs_params(tiny.space.encode(archs))
    np.testing.assert_array_equal(front["macs"].to_numpy(), macs)
    np.testing.assert_array_equal(front["params"].to_numpy(), params)


def test_history_records_a_non_decreasing_hypervolume_per_generation(tiny, tmp_path):
    search.run(cfg(tmp_path, algorithm={"name": "nsga2", "pop_size": 24, "n_gen": 4}), **models(tiny))
    h = pd.read_csv(tmp_path / "dev_a" / "history.csv")
    assert list(h["gen"]) == [0, 1, 2, 3, 4]
    assert (np.diff(h["hypervolume"]) >= -1e-12).all() and h["hypervolume"].iloc[-1] > 0


def test_unmeetable_constraint_returns_promptly_with_a_clear_message_and_the_closest_arch(tiny, tmp_path):
    t = time.perf_counter()
    res = search.run(cfg(tmp_path, constraints={"latency_ms": 0.01},
                         algorithm={"name": "nsga2", "pop_size": 24, "n_gen": 10_000}), **models(tiny))
    assert time.perf_counter() - t < 20
    r = res["devices"]["dev_a"]
    assert r["status"] == "infeasible"
    assert "latency_ms <= 0.01 cannot be met" in r["message"] and "closest arch" in r["message"]
    closest = tiny.space.parse(r["closest"]["arch"])
    lat = TableLatency(tiny.space, "dev_a")
    assert r["closest"]["latency_ms"] == pytest.approx(lat.predict([closest])[0])
    # the closest arch is the fastest of the probe, which includes the smallest arch at the smallest resolution
    assert r["closest"]["latency_ms"] == pytest.approx(lat.predict([tiny.space.min_arch(24)])[0])
    assert (tmp_path / "dev_a" / "infeasible.json").is_file()


def test_constraint_keeps_every_front_arch_within_the_limit(tiny, tmp_path):
    res = search.run(cfg(tmp_path, constraints={"latency_ms": 3.0}), **models(tiny))
    front = res["devices"]["dev_a"]["front"]
    assert len(front) > 0 and (front["latency_ms"] <= 3.0).all()


def test_multi_device_run_writes_a_front_per_device_and_predicts_each_arch_once(tiny, tmp_path):
    m = models(tiny, devices=("dev_a", "dev_b"))
    res = search.run(cfg(tmp_path, device=["dev_a", "dev_b"]), **m)
    for d in ("dev_a", "dev_b"):
        assert res["devices"][d]["status"] == "ok"
        for f in ("pareto.csv", "pareto.json", "history.csv"):
            assert (tmp_path / d / f).is_file()
    a = pd.read_csv(tmp_path / "dev_a" / "pareto.csv")
    b = pd.read_csv(tmp_path / "dev_b" / "pareto.csv")
    assert "latency_ms_dev_b" in a.columns and "latency_ms_dev_a" in b.columns
    assert set(a["arch"]) != set(b["arch"])  # the devices trade accuracy for different blocks
    # each device's front is read from every arch the run evaluated (both devices' searches, the probes)
    ev_state, _, _ = load_state(tmp_path / STATE_FILE)
    for k, front in enumerate((a, b)):
        F_all = np.stack([1 - ev_state["top1"], ev_state["lat"][:, k]], axis=1)
        F_front = np.stack([1 - front["top1"].to_numpy(), front["latency_ms"].to_numpy()], axis=1)
        assert not dominated_rows(F_front, F_all).any(), ("dev_a", "dev_b")[k]
        assert len(front) == len(non_dominated(F_all))
    # accuracy: one prediction per distinct arch, shared by both devices
    assert m["accuracy"].rows == res["n_evaluated"]


def test_killed_search_resumes_from_its_last_generation_without_losing_evaluated_archs(tiny, tmp_path):
    algo = {"name": "nsga2", "pop_size": 24, "n_gen": 6}
    full = search.run(cfg(tmp_path / "full", algorithm=algo), **models(tiny))
    m = models(tiny, fail_on_call=5)  # probe, initial population, gens 1-2, killed in gen 3
    with pytest.raises(KeyboardInterrupt):
        search.run(cfg(tmp_path / "run", algorithm=algo), **m)
    _, meta, _ = load_state(tmp_path / "run" / STATE_FILE)
    saved_gen = meta["devices"]["dev_a"]["gen"]
    assert saved_gen == 2
    m2 = models(tiny)
    res = search.run(cfg(tmp_path / "run", algorithm=algo, resume=True), **m2)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "dev_a" / "pareto.csv"),
                                  pd.read_csv(tmp_path / "run" / "dev_a" / "pareto.csv"))
    assert res["n_evaluated"] == full["n_evaluated"]
    assert m2["accuracy"].rows < full["n_evaluated"]  # archs evaluated before the kill were not recomputed
    h = pd.read_csv(tmp_path / "run" / "dev_a" / "history.csv")
    assert list(h["gen"]) == list(range(7))


def test_resume_refuses_a_state_of_another_search(tiny, tmp_path):
    search.run(cfg(tmp_path), **models(tiny))
    with pytest.raises(ValueError, match="belongs to another search"):
        search.run(cfg(tmp_path, seed=99, resume=True), **models(tiny))


def test_resume_from_a_truncated_state_file_says_to_delete_it(tiny, tmp_path):
    search.run(cfg(tmp_path, algorithm={"name": "nsga2", "pop_size": 20, "n_gen": 1}), **models(tiny))
    data = (tmp_path / STATE_FILE).read_bytes()
    for keep in (0, 10, len(data) // 2, len(data) - 10):  # e.g. a full disk or a copy cut short
        (tmp_path / STATE_FILE).write_bytes(data[:keep])
        with pytest.raises(ValueError, match=r"cannot read search state .* delete it or run without resume=true"):
            search.run(cfg(tmp_path, resume=True), **models(tiny))


def test_resume_refuses_a_state_searched_over_other_resolutions(tiny, tmp_path):
    m = models(tiny)
    del m["supernet"]  # built from the config, with the resolutions asked for; the models cover all of them
    search.run(cfg(tmp_path, supernet={"name": "ofa_mbv3_tiny", "resolutions": [24, 28]}), **m)
    with pytest.raises(ValueError, match=r"belongs to another search \(choices of r: saved \[24, 28\], now \[28, 32\]"):
        search.run(cfg(tmp_path, supernet={"name": "ofa_mbv3_tiny", "resolutions": [28, 32]}, resume=True), **m)


def test_resume_refuses_a_state_of_another_predictor_artefact_of_the_same_kind(tiny, tmp_path):
    from predictors.accuracy.models import build_predictor

    X = tiny.space.sample_encoded(np.random.default_rng(0), 200)
    y = LinearAccuracy(tiny.space).predict(X)
    paths = [build_predictor({"kind": "ridge", "alpha": a}, tiny.space, supernet="ofa_mbv3_tiny").fit(X, y)
             .save(tmp_path / f"ridge_{a}") for a in (1.0, 2.0)]
    m = models(tiny)
    del m["accuracy"]  # loaded from the configured artefact
    search.run(cfg(tmp_path / "run", predictor=str(paths[0])), **m)
    search.run(cfg(tmp_path / "run", predictor=str(paths[0]), resume=True), **m)  # the same artefact resumes
    with pytest.raises(ValueError, match=r"belongs to another search \(predictor: saved .*ridge_1"):
        search.run(cfg(tmp_path / "run", predictor=str(paths[1]), resume=True), **m)


def test_a_state_saved_with_the_older_fingerprint_still_resumes_and_is_still_checked(tiny, tmp_path):
    algo = {"name": "nsga2", "pop_size": 20, "n_gen": 2}
    search.run(cfg(tmp_path, algorithm=algo), **models(tiny))
    ev, meta, arrays = load_state(tmp_path / STATE_FILE)
    fp = meta["fingerprint"]
    # the fingerprint as oncenas wrote it before it held the space's choices and the models' identities
    older = {k: v for k, v in fp.items() if k not in ("choices", "latency")}
    older["predictor"] = fp["predictor"].split()[0]
    save_state(tmp_path / STATE_FILE, evaluator=ev, meta={**meta, "fingerprint": older}, arrays=arrays)
    with pytest.raises(ValueError, match="belongs to another search"):  # what the older fingerprint holds counts
        search.run(cfg(tmp_path, algorithm=algo, seed=99, resume=True), **models(tiny))
    res = search.run(cfg(tmp_path, algorithm={**algo, "n_gen": 3}, resume=True), **models(tiny))
    assert res["devices"]["dev_a"]["resume"] == "continued"
    assert load_state(tmp_path / STATE_FILE)[1]["fingerprint"] == fp  # saved again with today's fingerprint


def test_resume_refuses_a_state_of_another_latency_model(tiny, tmp_path):
    search.run(cfg(tmp_path), **models(tiny))
    m = models(tiny)
    m["latency"] = {"dev_a": TableLatency(tiny.space, "dev_b")}  # another device's table serving dev_a
    with pytest.raises(ValueError, match=r"belongs to another search \(latency: saved .*device=dev_a"):
        search.run(cfg(tmp_path, resume=True), **m)


@pytest.mark.parametrize("short,long", [
    ({"name": "nsga2", "pop_size": 20, "n_gen": 2}, {"n_gen": 4}),
    # screening: the resumed surrogate is refitted from the saved store and must pick the same children
    ({"name": "nsga2", "pop_size": 20, "n_gen": 2, "screen": 4, "mating_window": 3, "init": "ladder",
      "screen_memory": 50}, {"n_gen": 4}),
    ({"name": "smsemoa", "pop_size": 20, "n_gen": 2}, {"n_gen": 4}),
    ({"name": "pymoo_nsga2", "pop_size": 20, "n_gen": 2}, {"n_gen": 4}),
    ({"name": "optuna", "n_trials": 40, "batch_size": 10, "pop_size": 10}, {"n_trials": 80}),
])
def test_resume_with_a_bigger_budget_runs_the_longer_search(tiny, tmp_path, short, long):
    long = {**short, **long}
    fresh = search.run(cfg(tmp_path / "fresh", algorithm=long), **models(tiny))
    first = search.run(cfg(tmp_path / "run", algorithm=short), **models(tiny))
    m = models(tiny)
    res = search.run(cfg(tmp_path / "run", algorithm=long, resume=True), **m)
    n_rows = len(pd.read_csv(tmp_path / "fresh" / "dev_a" / "history.csv"))
    assert n_rows > len(pd.read_csv(tmp_path / "fresh" / "dev_a" / "history.csv").query("gen <= 2"))
    assert list(pd.read_csv(tmp_path / "run" / "dev_a" / "history.csv")["gen"]) == list(range(n_rows))
    # the same search as a fresh long one, and only the archs the first run never saw are predicted again
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fresh" / "dev_a" / "pareto.csv"),
                                  pd.read_csv(tmp_path / "run" / "dev_a" / "pareto.csv"))
    assert res["n_evaluated"] == fresh["n_evaluated"] > first["n_evaluated"]
    assert m["accuracy"].rows == res["n_evaluated"] - first["n_evaluated"]
    assert res["devices"]["dev_a"]["resume"] == ("continued" if short["name"] == "nsga2" else "rerun")
    # asking again for the same budget changes nothing
    again = search.run(cfg(tmp_path / "run", algorithm=long, resume=True), **models(tiny))
    assert again["devices"]["dev_a"]["resume"] == "complete" and again["n_evaluated"] == res["n_evaluated"]


@pytest.mark.parametrize("algorithm", [
    {"name": "random", "batch_size": 30, "n_gen": 2},
    {"name": "nsga3", "pop_size": 30, "n_gen": 2},
    {"name": "pymoo_nsga2", "pop_size": 30, "n_gen": 2},
    {"name": "smsemoa", "pop_size": 20, "n_gen": 2},
])
def test_other_algorithms_write_a_non_dominated_front(tiny, tmp_path, algorithm):
    res = search.run(cfg(tmp_path, algorithm=algorithm), **models(tiny))
    front = res["devices"]["dev_a"]["front"]
    assert len(front) >= 2
    F = np.stack([1 - front["top1"].to_numpy(), front["latency_ms"].to_numpy()], axis=1)
    assert not dominated_rows(F, F).any()  # checked apart from search.pareto, which built the front
    assert len(pd.read_csv(tmp_path / "dev_a" / "history.csv")) == algorithm["n_gen"] + 1


def test_random_search_max_evals_spends_exactly_that_many_evaluations(tiny, tmp_path):
    # another search's budget is rarely a multiple of the batch: the last batch is smaller, later ones are dropped
    res = search.run(cfg(tmp_path, algorithm={"name": "random", "batch_size": 30, "n_gen": 10, "max_evals": 70}),
                     **models(tiny))
    assert res["devices"]["dev_a"]["n_evals"] == 70
    assert list(pd.read_csv(tmp_path / "dev_a" / "history.csv")["n_evals"]) == [30, 60, 70]


def test_three_objectives_with_macs(tiny, tmp_path):
    res = search.run(cfg(tmp_path, objectives={"names": ["top1", "latency_ms", "macs"]},
                         algorithm={"name": "nsga3", "pop_size": 40, "n_gen": 2}), **models(tiny))
    front = res["devices"]["dev_a"]["front"]
    F = np.stack([1 - front["top1"], front["latency_ms"], front["macs"]], axis=1).astype(float)
    assert not dominated_rows(F, F).any() and front["macs"].notna().all()


def test_ofa_evolution_maximises_top1_under_the_latency_limit(tiny, tmp_path):
    res = search.run(cfg(tmp_path, constraints={"latency_ms": 3.0},
                         algorithm={"name": "ofa_evolution", "pop_size": 40, "n_gen": 5}), **models(tiny))
    best = res["devices"]["dev_a"]["best"]
    assert best["latency_ms"] <= 3.0
    # better than the best of the random probe alone
    rng = np.random.default_rng(0)
    X = tiny.space.sample_encoded(rng, 400)
    lat = TableLatency(tiny.space, "dev_a").predict(X)
    acc = LinearAccuracy(tiny.space).predict(X)
    assert best["top1"] >= acc[lat <= 3.0].max()


def test_ofa_evolution_without_a_constraint_says_what_to_set(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"constraints\.latency_ms"):
        search.run(cfg(tmp_path, algorithm={"name": "ofa_evolution", "pop_size": 20, "n_gen": 2}), **models(tiny))


def test_evaluator_shares_accuracy_across_devices_and_caches_on_the_normalised_arch(tiny):
    sp = tiny.space
    acc = CountingAccuracy(sp)
    ev = ArchEvaluator(sp, acc, {"dev_a": TableLatency(sp, "dev_a"), "dev_b": TableLatency(sp, "dev_b")})
    X = sp.sample_encoded(np.random.default_rng(0), 50)
    hidden = np.where(X < 0, 1, X)  # the same archs with values in their unused slots
    ids = ev.evaluate(X)
    assert (ev.evaluate(hidden) == ids).all() and ev.n == len(np.unique(ids)) and acc.rows == ev.n
    np.testing.assert_allclose(ev.lat[ids, 1], TableLatency(sp, "dev_b").predict(X))
    obj = DeviceObjectives("dev_b")
    np.testing.assert_allclose(obj.F(ev, ids)[:, 0], 1 - LinearAccuracy(sp).predict(X))


def test_evaluator_stores_a_batch_with_repeats_once_each_in_order_of_first_occurrence(tiny):
    sp = tiny.space
    acc = CountingAccuracy(sp)
    ev = ArchEvaluator(sp, acc, {"dev_a": TableLatency(sp, "dev_a")})
    X = sp.normalize(sp.sample_encoded(np.random.default_rng(1), 6))
    assert len(np.unique(X, axis=0)) == 6
    assert ev.evaluate(X[:2]).tolist() == [0, 1]
    ids = ev.evaluate(X[[3, 0, 3, 4, 2, 4, 1, 5]])  # repeats within the batch and of stored archs
    assert ids.tolist() == [2, 0, 2, 3, 4, 3, 1, 5]
    assert ev.n == 6 and acc.rows == 6  # each arch predicted once
    np.testing.assert_array_equal(ev.X[:6], X[[0, 1, 3, 4, 2, 5]])
    np.testing.assert_allclose(ev.top1[:6], LinearAccuracy(sp).predict(X[[0, 1, 3, 4, 2, 5]]))


class HoleyLatency(TableLatency):
    """A table missing one resolution: NaN there (as a latency table with a hole gives)."""

    def _predict(self, x):
        y = super()._predict(x)
        y[x[:, 0] == 1] = np.nan
        return y


def test_non_finite_latency_or_macs_is_refused_naming_the_model_and_an_arch(tiny, tmp_path):
    sp = tiny.space
    X = np.stack([sp.encode(sp.min_arch(24))[0], sp.encode(sp.min_arch(28))[0]])
    ev = ArchEvaluator(sp, LinearAccuracy(sp), {"dev_a": TableLatency(sp, "dev_a"), "dev_b": HoleyLatency(sp, "dev_b")})
    with pytest.raises(ValueError, match=r"latency model HoleyLatency of device 'dev_b' returned latency_ms nan "
                                         r"for arch r=28_d=1-1-1_\S+ \(1 of 2 archs"):
        ev.evaluate(X)
    assert ev.n == 0  # nothing half-stored

    def nan_macs(x):
        macs, params = tiny.macs_params(x)
        return np.where(x[:, 0] == 1, np.nan, macs), params

    ev = ArchEvaluator(sp, LinearAccuracy(sp), {"dev_a": TableLatency(sp, "dev_a")}, macs_params=nan_macs)
    with pytest.raises(ValueError, match=r"macs_params returned macs nan for arch r=28_"):
        ev.evaluate(X)
    # the search stops with that message instead of writing a front of NaN rows
    with pytest.raises(ValueError, match="HoleyLatency of device 'dev_a'"):
        search.run(cfg(tmp_path), accuracy=LinearAccuracy(sp), latency={"dev_a": HoleyLatency(sp, "dev_a")}, supernet=tiny)


def test_bad_inputs_fail_with_clear_errors(tiny, tmp_path):
    with pytest.raises(ValueError, match="unknown supernet 'nope'"):
        search.run(cfg(tmp_path, supernet="nope"))
    with pytest.raises(ValueError, match="unknown algorithm"):
        search.run(cfg(tmp_path, algorithm={"name": "hill_climb"}), **models(tiny))
    with pytest.raises(ValueError, match="unknown objective"):
        search.run(cfg(tmp_path, objectives={"names": ["top1", "energy"]}), **models(tiny))
    with pytest.raises(ValueError, match="unknown constraint"):
        search.run(cfg(tmp_path, constraints={"watts": 3}), **models(tiny))
    w12 = supernets.create_supernet("ofa_mbv3_w12")
    with pytest.raises(ValueError, match=r"is for space 'ofa_mbv3_tiny'.*search space 'ofa_mbv3' has other genes"):  # predictor for another space
        search.run(cfg(tmp_path, supernet="ofa_mbv3_w12"), supernet=w12, accuracy=LinearAccuracy(tiny.space),
                   latency={"dev_a": TableLatency(tiny.space, "dev_a")})


def test_models_of_the_full_space_serve_a_supernet_with_fewer_resolutions(tiny):
    from search.subspace import adapt

    small = supernets.create_supernet("ofa_mbv3_tiny", resolutions=[28, 32]).space
    lat, acc = TableLatency(tiny.space, "dev_b"), LinearAccuracy(tiny.space)
    archs = small.sample(np.random.default_rng(1), 30)
    same = [tiny.space.parse(str(a)) for a in archs]
    np.testing.assert_allclose(adapt(lat, small).predict(archs), lat.predict(same))
    np.testing.assert_allclose(adapt(acc, small).predict(archs), acc.predict(same))
    wide = supernets.create_supernet("ofa_mbv3_tiny", resolutions=[24, 36]).space
    with pytest.raises(ValueError, match="does not cover gene r=36"):
        adapt(lat, wide)


def test_export_writes_the_front_subnets_with_checkpoint_weights_and_checked_onnx(tmp_path):
    import onnxruntime as ort
    import torch

    from predictors.fileio import default_file_mode
    from supernets.checkpoints import save_supernet

    trained = supernets.create_supernet("ofa_mbv3_tiny")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # stand-in for trained weights: anything but the initialisation
        for p in trained.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    ckpt = tmp_path / "tiny.ckpt"
    data = {"name": "mnist10k", "batch_size": 64, "val_batch_size": 500, "num_workers": 0, "seed": 0, "split_seed": 0,
            "n_val": 2000}
    save_supernet(trained, ckpt, name="ofa_mbv3_tiny", data=data)
    sp = trained.space
    res = search.run(cfg(tmp_path / "out", ckpt=str(ckpt), export={"top_k": 2, "onnx": True, "calib_batches": 2}),
                     accuracy=LinearAccuracy(sp), latency={"dev_a": TableLatency(sp, "dev_a")})
    recs = res["devices"]["dev_a"]["exported"]
    front = res["devices"]["dev_a"]["front"]
    assert [r["arch"] for r in recs] == [front["arch"].iloc[0], front["arch"].iloc[-1]]  # both ends of the front
    trained.eval()
    for rec in recs:
        for f in (rec["pt"], rec["onnx"]):  # written atomically, with the permissions open() would give
            assert oct(os.stat(f).st_mode & 0o777) == oct(default_file_mode())
        saved = torch.load(rec["pt"], weights_only=True)
        arch = sp.parse(saved["arch"])
        trained.set_active_subnet(arch)
        ref = trained.get_active_subnet().eval()
        # the checkpoint's weights; BN statistics re-estimated for this subnet on 2 training batches
        assert saved["bn_recalibrated_batches"] == 2
        for k, v in ref.state_dict().items():
            if "running_" in k:
                assert not torch.allclose(saved["state_dict"][k], v)
            elif "num_batches" not in k:
                torch.testing.assert_close(saved["state_dict"][k], v)
        ref.load_state_dict(saved["state_dict"])
        assert rec["onnx_max_abs_diff"] < 1e-3
        x = torch.randn(1, 1, arch.r, arch.r, generator=g)
        sess = ort.InferenceSession(rec["onnx"], providers=["CPUExecutionProvider"])
        out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(out, ref(x).numpy(), atol=1e-3)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_get_the_permissions_of_the_umask_not_mkstemps_0600(tiny, tmp_path, umask):
    from paper_tables.common import new_figure, save_figure, write_atomic

    old = os.umask(umask)
    try:
        search.run(cfg(tmp_path, plot=True, algorithm={"name": "nsga2", "pop_size": 20, "n_gen": 1}), **models(tiny))
        write_atomic(tmp_path / "table.md", "| a |\n")
        save_figure(new_figure(figsize=(2, 2))[0], tmp_path / "table.png")
    finally:
        os.umask(old)
    files = [tmp_path / STATE_FILE, tmp_path / "table.md", tmp_path / "table.png",
             *(tmp_path / "dev_a" / f for f in ("pareto.csv", "pareto.json", "pareto.png", "history.csv"))]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(0o666 & ~umask) for f in files}
