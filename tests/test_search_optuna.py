"""Optuna searches sharing one study through storage (sqlite, journal file)."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest

import search
import supernets
from search.algorithms.optuna_search import OptunaSearch, open_storage
from search.pareto import non_dominated
from tests.data.search.models import LinearAccuracy, TableLatency


@pytest.fixture(scope="module")
def tiny():
    return supernets.create_supernet("ofa_mbv3_tiny")


def run(tiny, tmp_path, out: str, constraints: dict | None = None, **algo):
    cfg = {"device": "dev_a", "progress": False, "plot": False, "probe": 32, "out_dir": str(tmp_path / out),
           "checkpoint_every": 0, "seed": 0, "constraints": constraints or {},
           "algorithm": {"name": "optuna", "sampler": "nsga2", "n_trials": 20, "batch_size": 10, "pop_size": 10, **algo}}
    return search.run(cfg, accuracy=LinearAccuracy(tiny.space), latency={"dev_a": TableLatency(tiny.space, "dev_a")},
                      supernet=tiny)


def study_trials(storage, name: str):
    study = optuna.load_study(study_name=name, storage=storage)
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def assert_front_covers_the_study(res, trials) -> None:
    """The reported front is the non-dominated set of a superset of the study's trials (all workers'):
    no trial dominates a front row, and every trial on the study's own front is in the front or dominated
    by a front row (the search's probe archs are evaluated too)."""
    front = res["devices"]["dev_a"]["front"]
    Ff = np.stack([1 - front["top1"].to_numpy(), front["latency_ms"].to_numpy()], axis=1)
    Ft = np.array([[1 - t.values[0], t.values[1]] for t in trials])
    dominates = lambda a, b: (a <= b + 1e-12).all(-1) & (a < b - 1e-12).any(-1)  # noqa: E731
    assert not dominates(Ft[:, None, :], Ff[None, :, :]).any()
    archs = set(front["arch"])
    for i in non_dominated(Ft):
        arch = trials[i].user_attrs["arch"]
        assert arch in archs or dominates(Ff, Ft[i][None, :]).any()


def test_optuna_with_sqlite_storage_and_two_workers_produces_one_study(tiny, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    res = run(tiny, tmp_path, "w2", storage=url, n_workers=2, study_name="shared", n_trials=15)
    trials = study_trials(url, "shared")
    assert len(trials) == 30  # 15 trials from each worker, in one study
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert res["devices"]["dev_a"]["n_study_trials"] == 30
    assert_front_covers_the_study(res, trials)


def test_a_second_launch_on_the_same_journal_file_joins_the_study(tiny, tmp_path):
    journal = str(tmp_path / "study.log")
    run(tiny, tmp_path, "first", storage=journal, sampler="tpe", study_name="j")
    res = run(tiny, tmp_path, "second", storage=journal, sampler="tpe", study_name="j", n_trials=10)
    trials = study_trials(open_storage(journal), "j")
    assert len(trials) == 30
    assert res["devices"]["dev_a"]["n_study_trials"] == 30
    assert_front_covers_the_study(res, trials)


def test_optuna_workers_without_storage_are_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match="needs a shared storage"):
        run(tiny, tmp_path, "x", n_workers=2)


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_samplers_are_built_without_deprecated_arguments(sampler):
    with warnings.catch_warnings():  # Optuna >= 4.9 warns (FutureWarning) on each deprecated argument passed
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        built = OptunaSearch(sampler=sampler)._make_sampler(0, constrained=True)
    assert type(built).__name__ == {"nsga2": "NSGAIISampler", "tpe": "TPESampler"}[sampler]


def trial_constraints(trial) -> list[float]:
    """A finished trial's constraint values as its sampler reads them (Optuna >= 5.0 records them per name)."""
    if hasattr(trial, "constraints"):
        return list(trial.constraints.values())
    return list(trial.system_attrs.get("constraints") or [])


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_a_constrained_study_gives_each_trial_its_latency_violation(tiny, tmp_path, sampler):
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    res = run(tiny, tmp_path, "c", constraints={"latency_ms": 3.0}, storage=storage, sampler=sampler, study_name="c")
    trials = study_trials(storage, "c")
    archs = [tiny.space.parse(t.user_attrs["arch"]) for t in trials]
    latency = TableLatency(tiny.space, "dev_a").predict(tiny.space.encode(archs))
    feasible = [len(g) == 1 and g[0] <= 0 for g in map(trial_constraints, trials)]
    assert feasible == list(latency <= 3.0) and 0 < sum(feasible) < len(trials)
    assert (res["devices"]["dev_a"]["front"]["latency_ms"] <= 3.0).all()


def run_at(tiny, tmp_path, out: str, resolutions: list[int], **algo):
    """A search of the tiny supernet built at ``resolutions`` (the models cover all of its resolutions)."""
    cfg = {"device": "dev_a", "supernet": {"name": "ofa_mbv3_tiny", "resolutions": resolutions}, "progress": False,
           "plot": False, "probe": 16, "out_dir": str(tmp_path / out), "checkpoint_every": 0, "seed": 0,
           "algorithm": {"name": "optuna", "sampler": "nsga2", "n_trials": 20, "batch_size": 10, "pop_size": 10, **algo}}
    return search.run(cfg, accuracy=LinearAccuracy(tiny.space), latency={"dev_a": TableLatency(tiny.space, "dev_a")})


def test_one_storage_searched_at_other_resolutions_keeps_a_study_per_space(tiny, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    a = run_at(tiny, tmp_path, "a", [24, 28, 32], storage=url)
    b = run_at(tiny, tmp_path, "b", [28, 32], storage=url)  # the default study name differs with the choices
    assert a["devices"]["dev_a"]["n_study_trials"] == b["devices"]["dev_a"]["n_study_trials"] == 20
    assert len(optuna.get_all_study_names(url)) == 2
    assert set(b["devices"]["dev_a"]["front"]["arch"].str.extract(r"^r=(\d+)_")[0].astype(int)) <= {28, 32}


def test_a_named_study_of_other_resolutions_is_refused_before_any_trial(tiny, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_at(tiny, tmp_path, "a", [24, 28], storage=url, study_name="s")
    with pytest.raises(ValueError, match=r"optuna study 's' in storage sqlite:///.*study\.db was searched over other "
                                         r"choices \(r: study \[24, 28\], this search \[28, 32\]\)"):
        run_at(tiny, tmp_path, "b", [28, 32], storage=url, study_name="s")
    assert len(study_trials(url, "s")) == 20  # refused before asking a trial
    # a study written before the choices were recorded is checked on its trials' parameters
    old = optuna.create_study(study_name="old", storage=url, directions=["maximize", "minimize"])
    t = old.ask()
    for c in tiny.space.columns:
        t.suggest_int(c.label, 0, len(c.choices) - 1)
    old.tell(t, [0.5, 1.0])
    with pytest.raises(ValueError, match=r"optuna study 'old' .* has trials of another space \(gene r"):
        run_at(tiny, tmp_path, "c", [28, 32], storage=url, study_name="old")


def test_a_study_under_the_default_name_it_had_before_the_space_hash_is_joined(tiny, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    old = optuna.create_study(study_name="oncenas-ofa_mbv3_tiny-dev_a-top1-latency_ms", storage=url,
                              directions=["maximize", "minimize"])
    t = old.ask()
    for c in tiny.space.columns:
        t.suggest_int(c.label, 0, len(c.choices) - 1)
    old.tell(t, [0.5, 1.0])
    res = run(tiny, tmp_path, "joined", storage=url)
    assert res["devices"]["dev_a"]["n_study_trials"] == 21
    assert optuna.get_all_study_names(url) == ["oncenas-ofa_mbv3_tiny-dev_a-top1-latency_ms"]
