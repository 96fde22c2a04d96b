"""NSGA-II's surrogate screening (search.algorithms.nsga2): the ridge surrogate, which children it picks, and that
it finds better fronts than the same number of unscreened evaluations on OFA's predictor and Note10's table."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

import search
import supernets
from search.algorithms.nsga2 import NSGA2, LinearSurrogate
from search.evaluator import ArchEvaluator
from tests.data.search.models import LinearAccuracy, TableLatency


@pytest.fixture(scope="module")
def tiny():
    return supernets.create_supernet("ofa_mbv3_tiny")


def _onehot_const(space, xn: np.ndarray) -> np.ndarray:
    """The surrogate's inputs written out densely (independent of its positions trick): one-hot, then 1."""
    return np.concatenate([space.one_hot(xn).astype(np.float64), np.ones((len(xn), 1))], axis=1)


def test_linear_surrogate_updated_batch_by_batch_equals_scikit_learns_ridge_on_every_stored_arch(tiny):
    from sklearn.linear_model import Ridge

    space = tiny.space
    ev = ArchEvaluator(space, LinearAccuracy(space), {"dev_a": TableLatency(space, "dev_a")})
    sur = LinearSurrogate(space, alpha=0.5)
    rng = np.random.default_rng(0)
    for n in (40, 7, 90):  # running sums over three batches, as the search adds generations
        ev.evaluate(space.sample_encoded(rng, n))
        sur.update(ev)
    P = _onehot_const(space, ev.encoded())
    ref = Ridge(alpha=0.5, fit_intercept=False, solver="cholesky").fit(P, ev.top1[: ev.n])
    new = space.normalize(space.sample_encoded(rng, 50))
    np.testing.assert_allclose(sur.predict(new), ref.predict(_onehot_const(space, new)), rtol=0, atol=1e-12)
    assert sur.n_seen == ev.n == len(P)


class ScreenSpy(NSGA2):
    """NSGA-II that records each screening pool, the surrogate's data and front at that moment, and the children."""

    calls: ClassVar[list] = []

    def _children(self, ctx, X, rank, crowd, ids, n, **kw):
        pool = super()._children(ctx, X, rank, crowd, ids, n, **kw)
        if n > self.pop_size:  # the screening pool
            sur = LinearSurrogate(ctx.problem.ev.space, self.screen_alpha)
            sur.update(ctx.problem.ev)
            self.calls.append({"pool": pool.copy(), "sur": sur, "front": ctx.F(ids[rank == 0]), "ev": ctx.problem.ev,
                               "seen": set(ctx.seen)})
        return pool

    def _offspring(self, ctx, X, rank, crowd, ids):
        off = super()._offspring(ctx, X, rank, crowd, ids)
        self.calls[-1]["off"] = off.copy()
        return off


@pytest.mark.parametrize("limit", [None, 4.0])
def test_screening_evaluates_the_children_the_surrogate_rates_highest_above_the_front(tiny, tmp_path, limit):
    """Replays each screened generation by hand: the evaluated children are exactly the pool's pop_size best new
    archs by estimated top-1 minus the population front's best top-1 at or under their latency (with a latency
    limit, those over it last)."""
    space = tiny.space
    lat = TableLatency(space, "dev_a")
    ScreenSpy.calls = []
    search.run({"device": "dev_a", "supernet": "ofa_mbv3_tiny", "progress": False, "plot": False, "probe": 16,
                "out_dir": str(tmp_path), "seed": 1, "checkpoint_every": 0, "constraints": {"latency_ms": limit},
                "algorithm": {"_target_": "tests.test_search_screen.ScreenSpy", "pop_size": 12, "n_gen": 2,
                              "screen": 5}},
               accuracy=LinearAccuracy(space), latency={"dev_a": lat}, supernet=tiny)
    assert len(ScreenSpy.calls) == 2
    for c in ScreenSpy.calls:
        pool, ev = c["pool"], c["ev"]
        xn = space.normalize(pool)
        keys = ev.keys(xn)
        # new: the first of each arch, not evaluated by this search before (the probe's archs may come again)
        new = [i for i, k in enumerate(keys) if k not in keys[:i] and int(ev.lookup([k])[0]) not in c["seen"]]
        est = c["sur"].predict(xn[new])
        lt = lat.predict(xn[new])
        gain = est - np.array([max([1 - f[0] for f in c["front"] if f[1] <= t], default=0.0) for t in lt])
        if limit is not None:
            gain[lt > limit] = -np.inf
            assert 0 < (lt > limit).sum() < len(lt) - 12  # the limit decides some picks
        want = np.sort(np.array(new)[np.argsort(-gain, kind="stable")[:12]])
        np.testing.assert_array_equal(c["off"], pool[want])


def test_screening_ablation_on_ofas_predictor_and_note10_beats_the_same_evaluations_unscreened(tmp_path):
    """The reason for screening, at a small scale: OFA's predictor, Note10's table, pop 60 x 25 gen (1.5k
    evaluations), three seeds: best top-1 under 25 ms is higher with screen=4 on every seed."""
    from search.components import load_components

    base = {"device": "note10", "progress": False, "plot": False, "checkpoint_every": 0, "probe": 64}
    comps = load_components(base)
    models = {"accuracy": comps.accuracy, "latency": comps.latency, "supernet": comps.supernet}
    algo = {"name": "nsga2", "pop_size": 60, "n_gen": 25, "mating_window": 5, "init": "ladder", "mutation_prob": 0.01}
    for seed in range(3):
        best = {}
        for screen in (1, 4):
            res = search.run({**base, "seed": seed, "out_dir": str(tmp_path / f"{seed}_{screen}"), "algorithm": {**algo, "screen": screen}}, **models)
            f = res["devices"]["note10"]["front"]
            best[screen] = float(f.loc[f["latency_ms"] <= 25, "top1"].max())
        assert best[4] > best[1], (seed, best)
