"""OFA's published accuracy predictors: the known value, the encoding, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from predictors import load_predictor
from predictors.accuracy import OFAMobileNetV3Predictor, OFAResNet50Predictor
from supernets.space import MobileNetV3Space, ResNetSpace

TUTORIAL = {
    "r": 192, "d": [2, 2, 3, 4, 3],
    "ks": [5, 3, None, None, 5, 3, None, None, 7, 7, 3, None, 5, 5, 7, 3, 3, 3, 5, None],
    "e": [3, 3, None, None, 4, 4, None, None, 6, 3, 4, None, 4, 4, 4, 3, 6, 6, 6, None],
}


@pytest.fixture(scope="module")
def ofa() -> OFAMobileNetV3Predictor:
    return load_predictor("ofa_pretrained")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def ofa_resnet() -> OFAResNet50Predictor:
    return load_predictor("ofa_resnet50_pretrained")  # type: ignore[return-value]


def test_ofa_pretrained_reproduces_tutorial_subnet_value(ofa):
    arch = ofa.space.arch(**TUTORIAL)
    assert ofa.supernet == "ofa_mbv3_w12"
    assert ofa.predict([arch])[0] == pytest.approx(0.81713, abs=5e-6)


def _reference_ofa_features(arch) -> np.ndarray:
    """Per-arch encoding written from the data README's description (independent of the vectorised code)."""
    cfg = arch.to_ofa_dict()
    ks, e = list(cfg["ks"]), list(cfg["e"])
    for stage, depth in enumerate(cfg["d"]):
        for j in range(stage * 4 + depth, stage * 4 + 4):
            ks[j] = e[j] = 0
    feats = np.zeros(128, dtype=np.float32)
    for i in range(20):
        if ks[i]:
            feats[3 * i + {3: 0, 5: 1, 7: 2}[ks[i]]] = 1
        if e[i]:
            feats[60 + 3 * i + {3: 0, 4: 1, 6: 2}[e[i]]] = 1
    feats[120 + (cfg["r"] - 112) // 16] = 1
    return feats


def test_ofa_vectorised_features_match_per_arch_encoding(ofa, rng):
    archs = ofa.space.sample(rng, 200)
    got = ofa.features(ofa.space.encode(archs))
    want = np.stack([_reference_ofa_features(a) for a in archs])
    np.testing.assert_array_equal(got, want)


def test_ofa_batched_prediction_equals_one_by_one(ofa, rng):
    archs = ofa.space.sample(rng, 50)
    batch = ofa.predict(archs)
    single = np.array([ofa.predict([a])[0] for a in archs])
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-6)
    assert batch.shape == (50,) and np.all((batch > 0.6) & (batch < 0.9))


def test_ofa_pretrained_refuses_another_supernet_and_space(ofa):
    with pytest.raises(ValueError, match="ofa_mbv3_w12"):
        load_predictor("ofa_pretrained", supernet="ofa_resnet50")
    with pytest.raises(ValueError, match="another space"):
        ofa.predict([ResNetSpace().max_arch()])
    with pytest.raises(ValueError, match="kernels"):
        OFAMobileNetV3Predictor(MobileNetV3Space(name="tiny", depths=(1, 2, 3), n_stages=3))


def test_ofa_pretrained_cannot_be_fitted(ofa):
    with pytest.raises(TypeError, match="cannot be fitted"):
        ofa.fit([ofa.space.max_arch(), ofa.space.min_arch()], [0.8, 0.7])


def test_resnet50_predictor_ranks_max_above_min_with_sensible_values(ofa_resnet):
    space = ofa_resnet.space
    hi = ofa_resnet.predict([space.max_arch(224)])[0]
    lo = ofa_resnet.predict([space.min_arch(128)])[0]
    assert 0.70 < lo < hi < 0.85
    assert ofa_resnet.supernet == "ofa_resnet50"


def test_resnet50_off_grid_resolution_interpolates_between_neighbours(ofa_resnet, rng):
    space = ofa_resnet.space
    arch = space.sample(rng)
    p160, p168, p176 = ofa_resnet.predict([space.with_resolution(arch, r) for r in (160, 168, 176)])
    assert p168 == pytest.approx((p160 + p176) / 2, abs=1e-6)
    strict = OFAResNet50Predictor(space, weights=None, off_grid="error")
    strict.load_state(ofa_resnet.state())
    with pytest.raises(ValueError, match="168"):
        strict.predict([space.with_resolution(arch, 168)])


def test_ofa_pretrained_accepts_a_compatible_space_with_fewer_resolutions():
    space = MobileNetV3Space(resolutions=(160, 176, 192, 208, 224))
    model = load_predictor("ofa_pretrained", space=space)
    assert model.space == space
    assert model.predict([space.arch(**TUTORIAL)])[0] == pytest.approx(0.81713, abs=5e-6)
    with pytest.raises(ValueError, match=r"112\.\.239"):
        load_predictor("ofa_pretrained", space=MobileNetV3Space(resolutions=(224, 256)))
