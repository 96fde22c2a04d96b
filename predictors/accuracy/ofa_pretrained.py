"""OFA's published accuracy predictors (Cai et al., *Once-for-All*, ICLR 2020), run in numpy.

* :class:`OFAMobileNetV3Predictor`: the tutorial's MLP 128-400-400-400-1 for OFA-MobileNetV3 w1.2.
* :class:`OFAResNet50Predictor`: MLP 82-400-400-400-1 (last layer without bias) plus ``base_acc``.

The weights are the files the OFA authors published (bundled under ``predictors/artefacts/ofa/`` with
their attribution); they are read with ``torch.load(weights_only=True)`` and converted to float32 arrays once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from predictors.accuracy.base import AccuracyPredictor, register_predictor
from predictors.accuracy.features import (
    OFA_RESNET_RESOLUTIONS,
    check_ofa_mbv3_space,
    check_ofa_resnet_space,
    ofa_mbv3_features,
    ofa_resnet_features,
)
from predictors.accuracy.numpy_mlp import NumpyMLP
from supernets.space import MobileNetV3Space, ResNetSpace, SearchSpace

__all__ = ["OFAMobileNetV3Predictor", "OFAResNet50Predictor", "read_state_dict"]


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A published ``state_dict`` as float32 arrays (safe loader; no code runs)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"predictor weights {p} not found (bundled under predictors/artefacts/ofa/)")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read predictor weights {p}: {err}") from None
    if not isinstance(sd, dict):
        raise ValueError(f"predictor weights {p} hold a {type(sd).__name__}, expected a state_dict")
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in sd.items()}


def _require(state: dict[str, np.ndarray], keys: dict[str, tuple[int, ...]], what: str) -> None:
    for k, shape in keys.items():
        if k not in state:
            raise ValueError(f"{what}: weights lack {k!r} (have {sorted(state)})")
        if tuple(state[k].shape) != shape:
            raise ValueError(f"{what}: {k!r} has shape {tuple(state[k].shape)}, expected {shape}")


class _FixedPredictor(AccuracyPredictor):
    """A published predictor: weights in, predictions out; ``fit`` raises."""

    trainable: ClassVar[bool] = False
    _layers: ClassVar[tuple[tuple[str, str | None], ...]] = ()
    _shapes: ClassVar[dict[str, tuple[int, ...]]] = {}

    def __init__(self, space: SearchSpace, *, supernet: str | None = None, weights: str | None = None) -> None:
        super().__init__(space, supernet=supernet)
        self._state: dict[str, np.ndarray] = {}
        self.mlp: NumpyMLP | None = None
        if weights is not None:
            self.load_state(read_state_dict(weights))

    def params(self) -> dict[str, Any]:
        return {}

    def state(self) -> dict[str, np.ndarray]:
        return dict(self._state)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        _require(state, self._shapes, type(self).__name__)
        self._state = dict(state)
        ws = [state[w].T for w, _ in self._layers]
        bs = [None if b is None else state[b] for _, b in self._layers]
        self.mlp = NumpyMLP(ws, bs)

    def _net(self) -> NumpyMLP:
        if self.mlp is None:
            raise RuntimeError(f"{type(self).__name__} has no weights; build it with load_predictor(...)")
        return self.mlp


@register_predictor
class OFAMobileNetV3Predictor(_FixedPredictor):
    """OFA's MobileNetV3 w1.2 accuracy predictor (trained by its authors on r = 160..224)."""

    kind: ClassVar[str] = "ofa_mbv3_pretrained"
    _layers = (("0.weight", "0.bias"), ("2.weight", "2.bias"), ("4.weight", "4.bias"), ("6.weight", "6.bias"))
    _shapes: ClassVar[dict[str, tuple[int, ...]]] = {
        "0.weight": (400, 128), "0.bias": (400,), "2.weight": (400, 400), "2.bias": (400,),
        "4.weight": (400, 400), "4.bias": (400,), "6.weight": (1, 400), "6.bias": (1,),
    }

    def __init__(self, space: SearchSpace | None = None, *, supernet: str | None = "ofa_mbv3_w12",
                 weights: str | None = None) -> None:
        space = MobileNetV3Space() if space is None else space
        check_ofa_mbv3_space(space)
        super().__init__(space, supernet=supernet, weights=weights)

    @property
    def trained_resolutions(self) -> tuple[int, ...]:
        # OFA trained it on r = 160..224 only: the one-hot slots of lower (and higher) resolutions kept their
        # random initial weights, so e.g. r=128 archs score a meaningless 76-80 %.
        return tuple(r for r in range(160, 225, 4))

    def features(self, encoded: np.ndarray) -> np.ndarray:
        return ofa_mbv3_features(self.space, encoded)  # type: ignore[arg-type]

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        return self._net()(self.features(encoded))[:, 0]


@register_predictor
class OFAResNet50Predictor(_FixedPredictor):
    """OFA's ResNet50 accuracy predictor: the MLP's output plus ``base_acc``.

    It knows the resolutions 128, 144, 160, 176, 192, 224, 240, 256 only. For a resolution between two of
    them, ``off_grid="interpolate"`` (default) interpolates linearly between the predictions at the two
    neighbours (accuracy varies smoothly with resolution); ``off_grid="error"`` raises instead.
    """

    kind: ClassVar[str] = "ofa_resnet50_pretrained"
    _layers = (("layers.0.0.weight", "layers.0.0.bias"), ("layers.1.0.weight", "layers.1.0.bias"),
               ("layers.2.0.weight", "layers.2.0.bias"), ("layers.3.weight", None))
    _shapes: ClassVar[dict[str, tuple[int, ...]]] = {
        "base_acc": (1,), "layers.0.0.weight": (400, 82), "layers.0.0.bias": (400,),
        "layers.1.0.weight": (400, 400), "layers.1.0.bias": (400,), "layers.2.0.weight": (400, 400),
        "layers.2.0.bias": (400,), "layers.3.weight": (1, 400),
    }

    def __init__(self, space: SearchSpace | None = None, *, supernet: str | None = "ofa_resnet50",
                 weights: str | None = None, off_grid: str = "interpolate") -> None:
        space = ResNetSpace() if space is None else space
        check_ofa_resnet_space(space)
        if off_grid not in ("interpolate", "error"):
            raise ValueError(f"off_grid must be 'interpolate' or 'error', got {off_grid!r}")
        self.off_grid = off_grid
        lo, hi = min(OFA_RESNET_RESOLUTIONS), max(OFA_RESNET_RESOLUTIONS)
        outside = [r for r in space.resolutions if not lo <= r <= hi]
        if outside:
            raise ValueError(f"OFA's ResNet50 predictor covers resolutions {lo}..{hi}; space has {outside}")
        super().__init__(space, supernet=supernet, weights=weights)

    def params(self) -> dict[str, Any]:
        return {"off_grid": self.off_grid}

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        net = self._net()
        base = float(self._state["base_acc"][0])
        r = np.asarray(self.space.resolutions)[encoded[:, self.space.group_slices["r"].start]]
        grid = np.asarray(OFA_RESNET_RESOLUTIONS)
        hi_i = np.clip(np.searchsorted(grid, r, side="left"), 0, len(grid) - 1)
        on = grid[hi_i] == r
        if not on.all() and self.off_grid == "error":
            raise ValueError(
                f"resolution {r[~on][0]} is not one the OFA ResNet50 predictor knows ({list(grid)}); "
                f"use off_grid='interpolate' or a space with those resolutions"
            )
        space: ResNetSpace = self.space  # type: ignore[assignment]
        out = net(ofa_resnet_features(space, encoded, grid[hi_i]))[:, 0] + base
        if not on.all():
            lo_r, hi_r = grid[hi_i - 1][~on], grid[hi_i][~on]
            low = net(ofa_resnet_features(space, encoded[~on], lo_r))[:, 0] + base
            t = ((r[~on] - lo_r) / (hi_r - lo_r)).astype(np.float32)
            out[~on] = (1 - t) * low + t * out[~on]
        return out
