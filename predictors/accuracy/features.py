"""Feature encoders: encoded arch matrices -> float32 feature matrices, vectorised by fancy indexing.

* ``ofa_mbv3_features``: the input of OFA's MobileNetV3 accuracy predictor (128 = 20 slots x 3 kernels,
  20 slots x 3 expand ratios, zeros for skipped blocks, then one-hot ``(r - 112) // 16`` over 8 slots).
* ``ofa_resnet_features``: the input of OFA's ResNet50 predictor (82 = resolution 8, stem skip 2,
  width index 6 x 3, expand 18 x 3 with zeros beyond a stage's depth).
* ``FEATURES``: named encoders for predictors trained in this project (any space).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from supernets.space import MobileNetV3Space, ResNetSpace, SearchSpace

__all__ = [
    "FEATURES",
    "OFA_RESNET_RESOLUTIONS",
    "check_ofa_mbv3_space",
    "check_ofa_resnet_space",
    "get_features",
    "ofa_mbv3_features",
    "ofa_resnet_features",
    "onehot_features",
    "onehot_stats_features",
    "resolution_free_features",
]

#: The resolutions OFA's ResNet50 predictor was built with (its one-hot order).
OFA_RESNET_RESOLUTIONS = (128, 144, 160, 176, 192, 224, 240, 256)


def _scatter(n: int, width: int, positions: list[np.ndarray]) -> np.ndarray:
    """One-hot matrix (n, width) with a 1 at each non-negative position of each (n, k) block.

    Negative positions (unused slots) are sent to a spare last column that is sliced off, so one 2-D fancy
    assignment does all rows at once (no boolean masking); the result is a view with row stride width + 1,
    which BLAS takes as is.
    """
    pos = np.concatenate(positions, axis=1)
    out = np.zeros((n, width + 1), dtype=np.float32)
    out[np.arange(n)[:, None], np.where(pos >= 0, pos, width)] = 1.0
    return out[:, :width]


def _slot_positions(idx: np.ndarray, offset: int, n_choices: int) -> np.ndarray:
    """Feature position of each slot's choice, -1 where the slot is unused."""
    slots = np.arange(idx.shape[1])[None, :]
    return np.where(idx >= 0, offset + n_choices * slots + idx, -1)


def check_ofa_mbv3_space(space: SearchSpace) -> None:
    """Raise unless ``space`` has the gene choices OFA's MobileNetV3 predictor was trained on."""
    ok = (isinstance(space, MobileNetV3Space) and space.kernel_sizes == (3, 5, 7) and space.expand_ratios == (3, 4, 6)
          and space.depths == (2, 3, 4) and space.n_stages == 5)
    if not ok:
        raise ValueError(
            f"OFA's MobileNetV3 accuracy predictor needs a MobileNetV3Space with kernels (3, 5, 7), expand ratios "
            f"(3, 4, 6), depths (2, 3, 4) and 5 stages (supernets ofa_mbv3_w10/w12); got {space!r}"
        )
    bad = [r for r in space.resolutions if not 112 <= r < 240]
    if bad:
        raise ValueError(f"OFA's MobileNetV3 predictor encodes resolutions 112..239 only; space {space.name!r} has {bad}")


def ofa_mbv3_features(space: MobileNetV3Space, encoded: np.ndarray) -> np.ndarray:
    """OFA's 128-dim MobileNetV3 predictor input for a canonical encoded matrix."""
    n = encoded.shape[0]
    ks = encoded[:, space.group_slices["ks"]]
    e = encoded[:, space.group_slices["e"]]
    r = np.asarray(space.resolutions)[encoded[:, space.group_slices["r"].start]]
    r_pos = 120 + (r - 112) // 16
    return _scatter(n, 128, [_slot_positions(ks, 0, 3), _slot_positions(e, 60, 3), r_pos[:, None]])


def check_ofa_resnet_space(space: SearchSpace) -> None:
    """Raise unless ``space`` has the gene choices of OFA's ResNet50 predictor."""
    ok = (isinstance(space, ResNetSpace) and space.base_depths == (2, 2, 4, 2) and space.depths == (0, 1, 2)
          and space.expand_ratios == (0.2, 0.25, 0.35) and space.width_mults == (0.65, 0.8, 1.0))
    if not ok:
        raise ValueError(
            f"OFA's ResNet50 accuracy predictor needs a ResNetSpace with base depths (2, 2, 4, 2), depths (0, 1, 2), "
            f"expand ratios (0.2, 0.25, 0.35) and width multipliers (0.65, 0.8, 1.0) (supernet ofa_resnet50); "
            f"got {space!r}"
        )


def ofa_resnet_features(space: ResNetSpace, encoded: np.ndarray, resolution: np.ndarray) -> np.ndarray:
    """OFA's 82-dim ResNet50 predictor input; ``resolution`` (n,) must lie in ``OFA_RESNET_RESOLUTIONS``."""
    n = encoded.shape[0]
    lut = np.full(max(OFA_RESNET_RESOLUTIONS) + 1, -1, dtype=np.int64)
    lut[list(OFA_RESNET_RESOLUTIONS)] = np.arange(len(OFA_RESNET_RESOLUTIONS))
    r_pos = lut[np.asarray(resolution, dtype=np.int64)]
    if (r_pos < 0).any():
        raise ValueError(f"resolution {resolution[r_pos < 0][0]} is not one of {list(OFA_RESNET_RESOLUTIONS)}")
    stem = encoded[:, space.group_slices["d"].start]  # index 1 = the stem's extra block kept
    w = encoded[:, space.group_slices["w"]]
    e = encoded[:, space.group_slices["e"]]
    return _scatter(n, 82, [r_pos[:, None], 8 + stem[:, None], _slot_positions(w, 10, 3), _slot_positions(e, 28, 3)])


# ------------------------------------------------------------------------ features for trained models
def onehot_features(space: SearchSpace, encoded: np.ndarray) -> np.ndarray:
    """One block of one-hot columns per encoded column (the space's own ``one_hot``)."""
    n = encoded.shape[0]
    pos = np.where(encoded >= 0, space.one_hot_offsets[None, :] + encoded, -1)
    return _scatter(n, space.one_hot_size, [pos])


def _group_stats(space: SearchSpace, encoded: np.ndarray) -> np.ndarray:
    """Numeric summaries that one-hot columns only express as sums: per group the mean and the sum of
    the used gene values (e.g. total expand ratio, total kernel size), and the number of used slots."""
    feats = []
    for g in space.group_names:
        vals = space.values(encoded, g)
        used = ~np.isnan(vals)
        v = np.where(used, vals, 0.0)
        feats += [v.sum(1), used.sum(1), v.sum(1) / np.maximum(used.sum(1), 1)]
    f = np.stack(feats, axis=1)
    return f.astype(np.float32)


def onehot_stats_features(space: SearchSpace, encoded: np.ndarray) -> np.ndarray:
    """One-hot columns plus per-group value sums, counts and means (standardised by the model)."""
    return np.concatenate([onehot_features(space, encoded), _group_stats(space, encoded)], axis=1)


def resolution_free_features(space: SearchSpace, encoded: np.ndarray) -> np.ndarray:
    """Features that carry across resolutions: one-hot of every gene but the resolution, the per-group stats of
    the other genes, and the resolution as numbers (``r / 224``, its square, its log) times the arch's size.

    A one-hot resolution slot that training never saw keeps its initial weight (OFA's w1.2 predictor scores r=128
    archs 76-80 % for that reason): nothing is learnt about it. As numbers, a held-out resolution sits between or
    beyond trained ones, where a ridge model interpolates linearly and trees take the nearest trained side. The
    products with the total depth and expand ratio let the model learn that a resolution changes accuracy more for
    small nets than for large ones; MACs scale with r^2 times the arch's width and depth (analytically), which
    these terms can express.
    """
    cols = [c for c, col in enumerate(space.columns) if col.group != "r"]
    n = encoded.shape[0]
    pos = np.where(encoded[:, cols] >= 0, space.one_hot_offsets[None, cols] + encoded[:, cols], -1)
    onehot = _scatter(n, space.one_hot_size, [pos])
    stats = _group_stats(space, encoded)
    keep = [j for j, g in enumerate(np.repeat(space.group_names, 3)) if g != "r"]
    if "r" not in space.group_names:
        return np.concatenate([onehot, stats[:, keep]], axis=1)
    r = space.values(encoded, "r")[:, 0] / 224.0
    size = [space.values(encoded, g) for g in ("d", "e") if g in space.group_names]
    extra = [r, r * r, np.log(r)] + [np.nansum(v, axis=1) * r * r for v in size]
    return np.concatenate([onehot, stats[:, keep], np.stack(extra, axis=1).astype(np.float32)], axis=1)


FEATURES: dict[str, Callable[[SearchSpace, np.ndarray], np.ndarray]] = {
    "onehot": onehot_features,
    "onehot_stats": onehot_stats_features,
    "resolution_free": resolution_free_features,
}


def get_features(name: str) -> Callable[[SearchSpace, np.ndarray], np.ndarray]:
    try:
        return FEATURES[name]
    except KeyError:
        raise ValueError(f"unknown feature set {name!r}; choose one of {sorted(FEATURES)}") from None
