"""Trainable accuracy predictors: fit/predict, save/load, ensemble uncertainty, load_predictor, train script."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from predictors import load_predictor
from predictors.accuracy import (
    AccuracyPredictor,
    EnsemblePredictor,
    build_predictor,
    list_predictors,
    ranking_metrics,
    read_dataset,
)
from predictors.accuracy.dataset import file_sha256
from predictors.accuracy.train import train_predictor
from supernets.paths import REPO_ROOT

SMALL_MLP = {"kind": "mlp", "features": "onehot_stats", "hidden": [32, 32], "epochs": 30, "lr": 3e-3}


@pytest.fixture(scope="module")
def dynast():
    return read_dataset("dynast_ofa_mbv3_w10")


@pytest.fixture(scope="module")
def split(dynast):
    idx = np.random.default_rng(0).permutation(len(dynast))
    return dynast.subset(idx[:500]), dynast.subset(idx[500:800])


@pytest.mark.parametrize("spec", [
    {"kind": "ridge", "alpha": 1.0},
    SMALL_MLP,
    {"kind": "ensemble", "n": 3, "member": SMALL_MLP},
], ids=["ridge", "mlp", "ensemble"])
def test_save_load_round_trip_gives_identical_predictions(spec, split, tmp_path):
    train, test = split
    model = build_predictor(spec, train.space, supernet="ofa_mbv3_w10").fit(train.archs, train.top1)
    path = model.save(tmp_path / "p.pth")
    again = AccuracyPredictor.load(path)
    assert type(again) is type(model) and again.supernet == "ofa_mbv3_w10" and again.space == model.space
    np.testing.assert_array_equal(again.predict(test.archs), model.predict(test.archs))
    # the same artefact through the public loader, by path
    np.testing.assert_array_equal(load_predictor(str(path)).predict(test.encoded), model.predict(test.archs))


def test_fitted_predictors_rank_held_out_dynast_archs(split):
    train, test = split
    for spec in ({"kind": "ridge", "alpha": 1.0}, SMALL_MLP):
        model = build_predictor(spec, train.space).fit(train.encoded, train.top1)
        m = ranking_metrics(test.top1, model.predict(test.archs))
        assert m["kendall_tau"] > 0.8, (spec["kind"], m)


def test_ensemble_uncertainty_is_larger_off_distribution(split, rng):
    train, test = split
    ens = build_predictor({"kind": "ensemble", "n": 4, "member": SMALL_MLP}, train.space).fit(train.archs, train.top1)
    assert isinstance(ens, EnsemblePredictor)
    _, std_on = ens.predict_with_uncertainty(test.archs)
    # DyNAS-T measured r=224 only: the same archs at r=160 are off the training distribution
    off = [train.space.with_resolution(a, 160) for a in test.archs]
    mean_off, std_off = ens.predict_with_uncertainty(off)
    assert np.median(std_off) > 2 * np.median(std_on)
    np.testing.assert_allclose(mean_off, ens.predict(off))


def test_fit_rejects_percentages_and_length_mismatch(split):
    train, _ = split
    model = build_predictor({"kind": "ridge"}, train.space)
    with pytest.raises(ValueError, match="divide percentages by 100"):
        model.fit(train.archs, train.top1 * 100)
    with pytest.raises(ValueError, match="targets"):
        model.fit(train.archs, train.top1[:-1])


def test_load_predictor_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="ofa_pretrained") as err:
        load_predictor("no_such_predictor")
    assert "ofa_mbv3_w10_imagenet" in str(err.value)


def test_load_predictor_recipe_without_artefact_says_how_to_train():
    assert "mlp" in list_predictors()
    with pytest.raises(ValueError, match=r"train_predictor\.py"):
        load_predictor("mlp")


def test_artefact_for_another_supernet_is_refused(split, tmp_path):
    train, _ = split
    path = build_predictor({"kind": "ridge"}, train.space, supernet="ofa_mbv3_w10").fit(
        train.archs, train.top1).save(tmp_path / "w10")
    with pytest.raises(ValueError, match="ofa_mbv3_w10"):
        load_predictor(str(path), supernet="ofa_mbv3_w12")


def test_corrupt_artefact_raises_clear_error(split, tmp_path):
    train, _ = split
    path = build_predictor({"kind": "ridge"}, train.space).fit(train.archs, train.top1).save(tmp_path / "p")
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read predictor weights"):
        AccuracyPredictor.load(path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        AccuracyPredictor.load(path)


def test_weights_that_are_no_state_dict_or_lack_an_array_raise_naming_the_file(split, tmp_path):
    import torch

    train, _ = split
    path = build_predictor({"kind": "ridge"}, train.space).fit(train.archs, train.top1).save(tmp_path / "p")
    torch.save(torch.zeros(3), path)  # a bare tensor, not a dict of named tensors
    with pytest.raises(ValueError, match=r"p\.pth hold a Tensor, expected a dict of named tensors"):
        AccuracyPredictor.load(path)
    torch.save({"coef": torch.zeros(len(train.space.n_choices))}, path)  # no intercept
    with pytest.raises(ValueError, match=r"p\.pth do not fit a 'ridge' predictor .*lack \['intercept'\]"):
        AccuracyPredictor.load(path)


def test_shipped_imagenet_predictor_matches_its_training_set(dynast):
    model = load_predictor("ofa_mbv3_w10_imagenet", supernet="ofa_mbv3_w10")
    ts = model.metadata["training_set"]
    assert ts["n"] == len(dynast) and ts["sha256"] == file_sha256(dynast.path)
    assert model.metadata["metrics"]["cv"]["mean"]["kendall_tau"] >= 0.80
    assert ranking_metrics(dynast.top1, model.predict(dynast.archs))["kendall_tau"] > 0.9


def test_train_predictor_cross_validates_saves_and_never_overwrites(split, tmp_path):
    train, _ = split
    from predictors.accuracy.dataset import write_dataset

    csv = write_dataset(train, tmp_path / "small.csv")
    out = tmp_path / "ridge.pth"
    lines: list[str] = []
    result = train_predictor(csv, {"kind": "ridge"}, out, folds=3, echo=lines.append)
    assert result["cv"]["mean"]["kendall_tau"] > 0.8
    assert any("kendall_tau" in line and "rmse" in line for line in lines)
    saved = out.read_bytes()
    with pytest.raises(FileExistsError):
        train_predictor(csv, {"kind": "ridge", "alpha": 5.0}, out, folds=3, echo=lines.append)
    assert out.read_bytes() == saved
    with pytest.raises(ValueError, match="published"):
        train_predictor(csv, {"kind": "ofa_mbv3_pretrained"}, tmp_path / "x.pth", folds=3, echo=lines.append)
    assert not (tmp_path / "x.pth").exists()


def test_script_configs_compose_with_predictor_recipes(compose_config):
    cfg = compose_config("train_predictor", ["dataset=dynast_ofa_mbv3_w10", "predictor=mlp"])
    assert cfg.predictor.kind == "mlp" and cfg.folds == 5
    from hydra import compose, initialize_config_dir

    from supernets.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR / "scripts"), version_base="1.3"):  # the script's folder
        cfg = compose(config_name="build_accuracy_dataset", overrides=["ckpt=x.ckpt", "shard=1/4"])
    assert cfg.n == 300 and cfg.shard == "1/4"


_MLP_HASH = """
import hashlib, importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("numpy_mlp", sys.argv[1])  # the module alone: numpy, no torch
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
NumpyMLP = mod.NumpyMLP
rng = np.random.default_rng(0)
dims = [128, 400, 400, 400, 1]  # OFA's predictor's shape
m = NumpyMLP([rng.standard_normal((a, b)).astype(np.float32) * 0.05 for a, b in zip(dims, dims[1:])],
             [rng.standard_normal(b).astype(np.float32) * 0.01 for b in dims[1:]])
out = m((rng.random((4000, 128)) < 0.2).astype(np.float32))
assert out.dtype == np.float32
print(hashlib.md5(out.tobytes()).hexdigest())
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="OpenBLAS core types named for x86-64")
def test_mlp_predictions_do_not_depend_on_the_cpus_blas_kernels():
    # OpenBLAS picks its kernels by CPU; forcing three of them here stands for three hosts. In float32 the four
    # kernels tried gave three different outputs, which changed RESULTS.md's Table 1 searches between two hosts.
    outs = set()
    for core in ("Prescott", "Sandybridge", "Haswell"):
        env = {**os.environ, "OPENBLAS_CORETYPE": core}
        proc = subprocess.run([sys.executable, "-c", _MLP_HASH, str(REPO_ROOT / "predictors/accuracy/numpy_mlp.py")],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.add(proc.stdout.strip())
    assert len(outs) == 1, outs


def test_mlp_outputs_are_the_exact_values_rounded_to_17_bits():
    """The float32 fast path gives what float64 arithmetic rounded to 17 significant bits gives, row for row: rows
    whose float32 value sits near a rounding boundary are recomputed in float64 (issue #31: the search's hot path)."""
    from predictors.accuracy.numpy_mlp import round_bits

    pred = load_predictor("ofa_pretrained")
    space = pred.space
    from search.operators import gene_layout, sample_genomes

    x = pred.features(space.normalize(sample_genomes(gene_layout(space), np.random.default_rng(0), 4000)))
    m = pred._net()
    m.n_exact = 0
    out = np.concatenate([m(x[s : s + 200]) for s in range(0, len(x), 200)])  # a search's batches
    exact = round_bits(m._forward(np.asarray(x, dtype=np.float32).astype(np.float64)))[0]
    assert out.dtype == np.float32 and np.array_equal(out, exact)
    assert m.n_exact < 0.15 * len(x), m.n_exact  # mostly float32: the check rows and the few near a boundary
    # a random MLP whose float32 errors (~1e-7) often cross the 17-bit grid: only the recomputation keeps it exact
    import itertools

    from predictors.accuracy.numpy_mlp import NumpyMLP

    rng = np.random.default_rng(1)
    dims = [128, 400, 400, 1]
    r = NumpyMLP([rng.standard_normal((a, b)).astype(np.float32) * 0.05 for a, b in itertools.pairwise(dims)],
                 [rng.standard_normal(b).astype(np.float32) * 0.01 for b in dims[1:]])
    xr = (rng.random((2000, 128)) < 0.2).astype(np.float32)
    out = np.concatenate([r(xr[s : s + 200]) for s in range(0, len(xr), 200)])
    assert np.array_equal(out, round_bits(r._forward(xr.astype(np.float64)))[0])


def test_round_bits_keeps_significant_bits_and_says_how_far_the_rounding_is_from_flipping():
    from predictors.accuracy.numpy_mlp import SIGNIFICANT_BITS, round_bits

    g = 2.0**-SIGNIFICANT_BITS  # the grid on [0.5, 1)
    on = 0.8 - np.fmod(0.8, g)  # a grid value
    q, dist = round_bits(np.array([on + 0.3 * g, on + 0.5 * g + 1e-9, -0.75, 0.5 + 1e-9, 2.0, on - 0.2 * g]))
    assert q[0] == on and q[2] == -0.75 and q[3] == 0.5 and q[4] == 2.0 and q[5] == on
    assert q[1] == on + g  # just above a midpoint
    assert dist[1] < 1e-8 and dist[3] < 1e-8  # next to a midpoint / a power of two (where the grid changes)
    assert dist[0] == pytest.approx(0.2 * g) and dist[5] == pytest.approx(0.3 * g)


def test_cross_validate_through_sklearn_equals_a_plain_kfold_loop(split):
    """The predictor's CV runs through scikit-learn's cross_val_predict: same folds and numbers as a hand loop."""
    from sklearn.model_selection import KFold

    from predictors.accuracy import cross_validate

    train, _ = split
    recipe = {"kind": "ridge"}
    cv = cross_validate(lambda: build_predictor(recipe, train.space), train, folds=4, seed=3)
    x, y = train.encoded, train.top1
    oof = np.empty_like(y)
    for tr, te in KFold(4, shuffle=True, random_state=3).split(x):
        oof[te] = build_predictor(recipe, train.space).fit(x[tr], y[tr]).predict(x[te])
    assert cv["pooled"]["kendall_tau"] == ranking_metrics(y, oof)["kendall_tau"]
    assert [f["spearman"] for f in cv["per_fold"]] == [
        ranking_metrics(y[te], oof[te])["spearman"] for _, te in KFold(4, shuffle=True, random_state=3).split(x)]
    err = (oof - y) * 100.0
    assert cv["pooled"]["rmse_points"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
    assert cv["pooled"]["mae_points"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)


def test_predictor_kinds_are_one_timm_style_registry():
    """register_predictor / create_predictor / list_predictor_kinds, as supernets and search algorithms have: a new
    kind is one decorated class, and recipes (build_predictor), ensembles and published predictors go through it."""
    from predictors.accuracy import create_predictor, list_predictor_kinds, register_predictor
    from predictors.accuracy.base import KINDS
    from predictors.accuracy.models import RidgePredictor
    from supernets.space import MobileNetV3Space

    space = MobileNetV3Space()
    assert {"mlp", "ridge", "gbm", "ensemble"} <= set(list_predictor_kinds(trainable=True))
    assert isinstance(create_predictor("ridge", space, alpha=2.0), RidgePredictor)
    with pytest.raises(ValueError, match=r"unknown predictor kind 'nope'; known kinds \['"):
        create_predictor("nope", space)
    with pytest.raises(ValueError, match="bad hyper-parameters for predictor kind 'ridge'"):
        build_predictor({"kind": "ridge", "depth": 3}, space)
    with pytest.raises(ValueError, match="is a published, fixed predictor; it cannot be trained"):
        build_predictor({"kind": list_predictor_kinds(trainable=False)[0]}, space)

    @register_predictor
    class Mean(RidgePredictor):  # a new kind: one class, then every recipe may name it
        kind = "mean_test"

    try:
        assert type(build_predictor({"kind": "mean_test"}, space)) is Mean
        ens = build_predictor({"kind": "ensemble", "n": 2, "member": {"kind": "mean_test"}}, space)
        assert all(type(m) is Mean for m in ens.members)
        with pytest.raises(ValueError, match="registered twice"):
            register_predictor(type("Other", (RidgePredictor,), {"kind": "mean_test"}))
    finally:
        KINDS.pop("mean_test")
