"""ElasticViT's complexity-aware and SortedNet's sorted samplers, on the ViT and the CNN families."""

from __future__ import annotations

import numpy as np
import pytest

from supernets import create_supernet
from supernets.training.samplers import ComplexityAwareSampler, SortedSampler, UniformSampler
from supernets.training.schedule import build_schedule

FAMILIES = ["vit_cifar_tiny", "ofa_mbv3_tiny", "ofa_resnet_tiny"]


def _macs(model):
    return lambda x: model.macs_params(x)[0]


@pytest.mark.parametrize("name", FAMILIES)
def test_complexity_aware_steps_train_subnets_of_neighbouring_sizes_and_cover_every_size(name: str) -> None:
    model = create_supernet(name)
    space, macs = model.space, _macs(model)
    sampler = ComplexityAwareSampler(space, cost_fn=macs, n_subnets=2, n_buckets=8, pool_size=500, choices="all")
    uniform = UniformSampler(space, n_subnets=2, choices="all")
    lo, hi = macs(space.encode([space.min_arch(), space.max_arch()]))
    width = (hi - lo) / 8

    def bucket(m: np.ndarray) -> np.ndarray:
        return np.clip(((m - lo) / width).astype(int), 0, 7)

    drawn, drawn_uniform = [], []
    for step in range(200):
        plan = sampler(np.random.default_rng([0, step]))
        assert plan.roles == ("max", "random", "random") and plan.archs[0] == space.max_arch()
        m = macs(space.encode(list(plan.archs[1:])))
        assert abs(int(bucket(m)[0]) - int(bucket(m)[1])) <= 2  # neighbouring buckets (an empty one skipped)
        drawn.append(m)
        drawn_uniform.append(macs(space.encode(list(uniform(np.random.default_rng([0, step])).archs))))
    hist = np.bincount(bucket(np.concatenate(drawn)), minlength=8)
    hist_uniform = np.bincount(bucket(np.concatenate(drawn_uniform)), minlength=8)
    in_pool = np.bincount(bucket(sampler.macs), minlength=8) > 0
    # Every size range the pool holds is trained, at least a quarter of an even share (400 draws, <= 7 pairs) ...
    assert hist[in_pool].min() >= 400 / 7 / 4, hist
    # ... where gene-by-gene uniform sampling rarely reaches the largest quarter of the MACs range.
    assert hist[6:].sum() >= 3 * hist_uniform[6:].sum(), (hist, hist_uniform)
    again = ComplexityAwareSampler(space, cost_fn=macs, n_subnets=2, n_buckets=8, pool_size=500, choices="all")
    assert again(np.random.default_rng([0, 5])) == sampler(np.random.default_rng([0, 5]))


@pytest.mark.parametrize("name", FAMILIES)
def test_sorted_models_are_nested_ordered_by_size_and_drawn_largest_first(name: str) -> None:
    model = create_supernet(name)
    space = model.space
    sampler = SortedSampler(space, n_models=6, n_subnets=2, choices="all")
    models = sampler.models
    assert models[0] == space.min_arch() and models[-1] == space.max_arch()
    enc = space.encode(models)
    active = space.active_mask(enc)
    # Nested: every gene's choice index only grows, and every slot a model uses stays used by the larger ones.
    assert (np.diff(np.where(enc < 0, -1, enc), axis=0)[active[:-1]] >= 0).all()
    assert (active[1:] >= active[:-1]).all()
    macs = model.macs_params(enc)[0]
    assert (np.diff(macs) > 0).all()
    seen = set()
    for step in range(60):
        plan = sampler(np.random.default_rng([1, step]))
        ks = [int(r.split("_")[1]) for r in plan.roles]
        assert len(set(ks)) == 2 and ks[0] > ks[1]
        assert list(plan.archs) == [models[k] for k in ks]
        seen.update(ks)
    assert seen == set(range(6))


def test_schedules_take_the_size_aware_samplers_and_check_what_they_need() -> None:
    model = create_supernet("vit_cifar_tiny")
    phase = {"name": "p", "epochs": 1, "lr": 0.1, "choices": "all"}
    cfg = {"phases": [{**phase, "distill": "inplace", "sampler": {"_target_": "supernets.training.samplers.ComplexityAwareSampler", "pool_size": 100}}]}
    s = build_schedule(cfg, model.space, global_batch_size=8, cost_fn=_macs(model))
    assert isinstance(s.phases[0].sampler, ComplexityAwareSampler)
    with pytest.raises(ValueError, match="needs the subnets' MACs"):
        build_schedule(cfg, model.space, global_batch_size=8)
    sorted_kd = {"phases": [{**phase, "distill": "inplace", "sampler": {"_target_": "supernets.training.samplers.SortedSampler"}}]}
    with pytest.raises(ValueError, match="first subnet is the largest"):
        build_schedule(sorted_kd, model.space, global_batch_size=8)
    sorted_kd["phases"][0]["sampler"]["with_max"] = True
    plan = build_schedule(sorted_kd, model.space, global_batch_size=8).phases[0].sampler(np.random.default_rng(0))
    assert plan.roles[0] == "max" and len(plan.archs) == 3
