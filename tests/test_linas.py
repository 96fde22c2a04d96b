"""LINAS (real evaluations in the loop), the measured-accuracy model, the GBM predictor and resolution-free features."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

import search
import supernets
from predictors.accuracy.features import resolution_free_features
from predictors.accuracy.models import GBMPredictor, build_predictor
from search.algorithms.linas import spread_pick
from search.components import build_algorithm
from search.evaluator import ArchEvaluator
from search.measured import MeasuredAccuracy
from search.state import STATE_FILE, load_state
from tests.data.search.models import LinearAccuracy, TableLatency


class CountingTruth(LinearAccuracy):
    """The 'real' accuracy of the tests: counts the archs it is asked about (each one a real evaluation)."""

    def __init__(self, space) -> None:
        super().__init__(space)
        self.rows = 0

    def _predict(self, x):
        self.rows += len(x)
        return super()._predict(x)


@pytest.fixture(scope="module")
def tiny():
    return supernets.create_supernet("ofa_mbv3_tiny")


LINAS = {"_target_": "search.algorithms.linas.LINAS", "name": "linas", "n_evals": 30, "batch_size": 6, "n_init": 6,
         "inner": {"pop_size": 24, "n_gen": 4}}


def _cfg(tmp_path, **over):
    return {"device": "dev_a", "supernet": "ofa_mbv3_tiny", "progress": False, "plot": False, "out_dir": str(tmp_path),
            "seed": 1, "checkpoint_every": 1, "algorithm": LINAS, **over}


def test_linas_spends_exactly_its_budget_and_reports_measured_top1_with_the_predicted_beside(tiny, tmp_path):
    truth = CountingTruth(tiny.space)
    res = search.run(_cfg(tmp_path), accuracy=truth, latency={"dev_a": TableLatency(tiny.space, "dev_a")},
                     supernet=tiny)
    assert res["n_evaluated"] == 30 and truth.rows == 30  # the reference extremes count: no probe of 512 archs
    front = pd.read_csv(tmp_path / "dev_a" / "pareto.csv")
    archs = [tiny.space.parse(a) for a in front["arch"]]
    np.testing.assert_allclose(front["top1"], truth.predict(archs), rtol=1e-5)  # measured, not predicted
    assert "top1_predicted" in front and front["top1_predicted"].notna().any()


def test_linas_proposes_better_fronts_than_its_initial_sample(tiny, tmp_path):
    truth = CountingTruth(tiny.space)
    search.run(_cfg(tmp_path), accuracy=truth, latency={"dev_a": TableLatency(tiny.space, "dev_a")}, supernet=tiny)
    hist = pd.read_csv(tmp_path / "dev_a" / "history.csv")
    assert hist["hypervolume"].iloc[-1] > hist["hypervolume"].iloc[0]


def test_resumed_linas_measures_nothing_again(tiny, tmp_path):
    lat = {"dev_a": TableLatency(tiny.space, "dev_a")}
    first = search.run(_cfg(tmp_path), accuracy=CountingTruth(tiny.space), latency=lat, supernet=tiny)
    truth = CountingTruth(tiny.space)
    again = search.run(_cfg(tmp_path, resume=True), accuracy=truth, latency=lat, supernet=tiny)
    assert truth.rows == 0
    assert again["devices"]["dev_a"]["hypervolume"] == first["devices"]["dev_a"]["hypervolume"]
    ev, _, _ = load_state(tmp_path / STATE_FILE)
    assert len(ev["X"]) == 30


def test_linas_config_builds_through_hydra_target_and_bad_options_name_the_algorithm():
    algo = build_algorithm(LINAS)
    assert algo.name == "linas" and algo.n_gen == 4  # (30 - 6) / 6 iterations after the initial batch
    with pytest.raises(ValueError, match="linas"):
        build_algorithm({**LINAS, "n_init": 50})
    with pytest.raises(ValueError, match="ckpt"):
        algo.real_accuracy(None, None)


def test_spread_pick_takes_whole_fronts_first_then_spreads_along_the_cost():
    F = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [0.0, 4.0], [0.0, 5.0], [1.0, 1.0]])
    rank = np.array([0, 0, 0, 0, 0, 1])
    assert spread_pick(F, rank, 3).tolist() == [0, 2, 4]
    assert sorted(spread_pick(F, rank, 6).tolist()) == list(range(6))


def test_measured_accuracy_evaluates_each_arch_once_and_resumes_from_its_csv(tmp_path):
    torch.manual_seed(0)
    net = supernets.create_supernet("ofa_mbv3_tiny", num_classes=10, in_chans=1)
    batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
    m = MeasuredAccuracy(net, batches, batches, cache=tmp_path / "m.csv")
    archs = [net.space.min_arch(), net.space.max_arch()]
    first = m.predict(archs + archs)
    assert m.n_measured == 2 and first[0] == first[2]
    m.close()
    again = MeasuredAccuracy(net, batches, batches, cache=tmp_path / "m.csv")
    np.testing.assert_array_equal(again.predict(archs), first[:2])
    assert again.n_measured == 0


def test_gbm_walks_the_fitted_trees_exactly_as_sklearn_and_round_trips(tiny, tmp_path):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    X = tiny.space.sample_encoded(rng, 200)
    y = LinearAccuracy(tiny.space).predict(X) + rng.normal(0, 0.01, 200)
    g = build_predictor({"kind": "gbm", "max_iter": 50}, tiny.space).fit(X, y)
    f = g.featurize(tiny.space.normalize(X)).astype(np.float64)
    with threadpool_limits(limits=1, user_api="openmp"):
        ref = HistGradientBoostingRegressor(max_iter=50, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=5,
                                            early_stopping=False, random_state=0).fit(f, y)
    np.testing.assert_allclose(g.predict(X), ref.predict(f), atol=1e-12)
    path = g.save(tmp_path / "gbm.pth")
    np.testing.assert_allclose(GBMPredictor.load(path).predict(X), g.predict(X), atol=0)


def test_resolution_free_features_hold_the_resolution_as_numbers_not_a_one_hot_slot(tiny):
    space = tiny.space
    X = space.normalize(space.sample_encoded(np.random.default_rng(0), 20))
    X24, X28 = X.copy(), X.copy()
    X24[:, 0], X28[:, 0] = 0, 1  # the same archs at r=24 and r=28
    f24, f28 = resolution_free_features(space, X24), resolution_free_features(space, X28)
    differ = np.flatnonzero((f24 != f28).any(axis=0))
    assert len(differ) == 5 and (differ >= f24.shape[1] - 5).all()  # r, r^2, log r, depth*r^2, expand*r^2
    np.testing.assert_allclose(f28[:, -5], 28 / 224, rtol=1e-6)


def test_evaluator_keys_are_the_rows_bytes(tiny):
    X = tiny.space.normalize(tiny.space.sample_encoded(np.random.default_rng(0), 50))
    assert ArchEvaluator.keys(X) == [r.tobytes() for r in np.ascontiguousarray(X, dtype=np.int16)]


def test_linas_table_reads_hypervolume_per_budget_from_the_evaluation_order():
    from paper_tables.linas import hv_curve
    from search.pareto import hypervolume

    F = np.array([[0.5, 0.5], [0.2, 0.9], [0.9, 0.1], [0.1, 0.1]])
    ref = np.array([1.0, 1.0])
    curve = hv_curve(np.zeros(len(F)), F, ref, [1, 2, 3, 4])
    assert curve[0] == pytest.approx(0.25) and curve[-1] == pytest.approx(hypervolume(F[3:], ref))
    assert all(a <= b for a, b in itertools.pairwise(curve))  # a longer run only adds archs


def test_hv_improvement_is_the_hypervolume_a_point_adds_to_the_front():
    from search.algorithms.linas import hv_improvement
    from search.pareto import hypervolume

    rng = np.random.default_rng(0)
    ref = np.array([1.0, 1.0])
    front = rng.random((8, 2)) * 0.9
    P = np.concatenate([rng.random((40, 2)) * 1.1, front[:2]])  # some beyond ref, some already on the front
    want = [hypervolume(np.concatenate([front, p[None]]), ref) - hypervolume(front, ref) for p in P]
    np.testing.assert_allclose(hv_improvement(P, front, ref), want, atol=1e-12)
    np.testing.assert_allclose(hv_improvement(P[:3], np.zeros((0, 2)), ref), np.prod(np.clip(ref - P[:3], 0, None), 1))


def test_expected_hvi_pick_fills_the_fronts_gaps_before_crowding_a_spot():
    from search.algorithms.linas import expected_hvi_pick

    ref = np.array([1.0, 1.0])
    front = np.array([[0.2, 0.8], [0.8, 0.2]])  # a gap in the middle
    # 0 adds the most; 1 sits next to it (adds nothing once 0 is in); 2 fills the rest of the gap; 3 is dominated
    F = np.array([[0.45, 0.5], [0.46, 0.5], [0.6, 0.35], [0.9, 0.9]])
    assert expected_hvi_pick(F, 0.0, front, ref, 2).tolist() == [0, 2]
    assert 3 not in expected_hvi_pick(F, 0.0, front, ref, 4)  # improves nothing: left for the caller's top-up
    assert 3 in expected_hvi_pick(F, 0.5, front, ref, 4)  # ... unless the uncertainty can lift it over the front


def test_linas_uses_the_listed_predictor_with_the_lowest_out_of_fold_error(tiny):
    from search.algorithms.linas import LINAS

    truth = LinearAccuracy(tiny.space)
    ev = ArchEvaluator(tiny.space, truth, {"dev_a": TableLatency(tiny.space, "dev_a")})
    ev.evaluate(tiny.space.sample_encoded(np.random.default_rng(0), 40))
    ridge = {"kind": "ridge", "features": "onehot_stats", "alpha": 1e-3}  # the truth is linear in the one-hot
    gbm = {"kind": "gbm", "features": "onehot_stats", "max_iter": 5}
    alone = {r["kind"]: LINAS(predictor=[r], noise=0.0)._fit(ev, np.arange(ev.n), 0)[1] for r in (ridge, gbm)}
    assert alone["ridge"] < alone["gbm"]
    for order in ([gbm, ridge], [ridge, gbm]):
        model, sigma = LINAS(predictor=order, noise=0.0)._fit(ev, np.arange(ev.n), 0)
        assert model.kind == "ridge" and sigma == alone["ridge"]
    assert LINAS(predictor=[ridge], noise=0.05)._fit(ev, np.arange(ev.n), 0)[1] == 0.05  # the noise floor


def test_measured_accuracy_from_a_checkpoint_calibrates_on_the_same_batches_in_every_run(tmp_path):
    from search.measured import measured_from_checkpoint
    from supernets.checkpoints import CKPT_KEY

    torch.manual_seed(0)
    net = supernets.create_supernet("ofa_mbv3_tiny", num_classes=10, in_chans=3, resolutions=[8])
    # the bundled CIFAR-10 split augments its training images (random crop and flip from torch's global RNG)
    meta = {"supernet": "ofa_mbv3_tiny", "supernet_kwargs": {"num_classes": 10, "in_chans": 3, "resolutions": [8]},
            "data": {"name": "cifar10_test", "batch_size": 16, "val_batch_size": 32, "seed": 0, "split_seed": 0,
                     "n_val": 64, "augment": True}}
    torch.save({"state_dict": {f"supernet.{k}": v for k, v in net.state_dict().items()}, CKPT_KEY: meta},
               tmp_path / "t.ckpt")
    runs = []
    for s in (1, 2):
        torch.manual_seed(s)  # another process's global RNG: the augmentation draws from it
        runs.append(measured_from_checkpoint(tmp_path / "t.ckpt", calib_batches=2, eval_batches=1))
    torch.testing.assert_close(runs[0].calib[0][0], runs[1].calib[0][0])


class NoisyTruth(LinearAccuracy):
    """A 'measured' top-1: the linear truth plus a fixed per-arch error (an evaluation on a finite held-out split:
    the same arch always measures the same, neighbours do not share it)."""

    def __init__(self, space, noise: float) -> None:
        super().__init__(space)
        self.noise = noise

    def _predict(self, x):
        import zlib

        err = [np.random.default_rng(zlib.crc32(r.tobytes())).normal(0.0, self.noise) for r in np.ascontiguousarray(x)]
        return super()._predict(x) + np.asarray(err)


def test_linas_measured_front_beats_random_nsga2_and_spread_batches_at_the_same_budget(tiny, tmp_path):
    """The table=linas claim in small: same truth, same reference point, 24 evaluations after the extremes; batches by
    expected hypervolume improvement also beat batches spread along the predicted front (the earlier LINAS)."""
    from search.pareto import hypervolume, non_dominated

    lat = {"dev_a": TableLatency(tiny.space, "dev_a")}
    algos = {"linas": {**LINAS, "n_evals": 30, "batch_size": 4, "n_init": 4, "noise": 0.005,
                       "predictor": [{"kind": "ridge", "features": "onehot_stats", "alpha": 1.0}]},
             "nsga2": {"name": "nsga2", "pop_size": 6, "n_gen": 3},
             "random": {"name": "random", "batch_size": 6, "n_gen": 3, "max_evals": 24}}
    algos["spread"] = {**algos["linas"], "select": "spread"}
    hv = {m: [] for m in algos}
    for seed in (0, 1):
        for m, algo in algos.items():
            out = tmp_path / f"{m}{seed}"
            search.run(_cfg(out, seed=seed, algorithm=algo, checkpoint_every=0), accuracy=NoisyTruth(tiny.space, 0.005),
                       latency=lat, supernet=tiny)
            ev, _, _ = load_state(out / STATE_FILE)
            F = np.stack([1.0 - np.asarray(ev["top1"]), np.asarray(ev["lat"])[:, 0]], axis=1)
            ref = F[:6].max(axis=0) + 0.05 * (F[:6].max(axis=0) - F[:6].min(axis=0))
            f = F[6:30]  # the route's own 24 archs (the runner measures the 6 extremes first for every route)
            assert len(f) == 24
            hv[m].append(hypervolume(f[non_dominated(f)], ref))
    assert min(hv["linas"]) > max(hv["random"] + hv["nsga2"] + hv["spread"]), hv
