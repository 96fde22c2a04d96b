"""The accuracy-predictor interface: fit, vectorised predict (top-1 as a fraction), save/load with a sidecar.

An artefact is two files side by side: ``<stem>.pth`` (a flat dict of tensors, read with
``torch.load(weights_only=True)``) and ``<stem>.yaml`` (kind, space, supernet, hyper-parameters, the training
set (path, sha256, n) and metrics, read with ``yaml.safe_load``). Both are written atomically.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml

from predictors.accuracy.spaces import space_from_dict, space_to_dict
from predictors.base import ArchModel, as_encoded
from predictors.fileio import atomic_write_bytes  # re-exported: datasets and builders write through it
from supernets.space import Arch, SearchSpace
from supernets.utils import to_plain

__all__ = ["KINDS", "AccuracyPredictor", "artefact_paths", "atomic_write_bytes", "create_predictor", "is_predictor_kind",
           "list_predictor_kinds", "register_predictor"]

#: kind name -> predictor class: the timm-style registry (as :mod:`supernets.registry` and
#: :mod:`search.algorithms.registry`), filled by :func:`register_predictor` as the predictor modules are imported.
KINDS: dict[str, type[AccuracyPredictor]] = {}

ArchBatch = Sequence[Arch] | np.ndarray | Arch

def register_predictor(cls: type[AccuracyPredictor]) -> type[AccuracyPredictor]:
    """Register a predictor class under its ``kind``."""
    if cls.kind in KINDS and KINDS[cls.kind] is not cls:
        raise ValueError(f"predictor kind {cls.kind!r} is registered twice ({KINDS[cls.kind].__name__}, {cls.__name__})")
    KINDS[cls.kind] = cls
    return cls


def list_predictor_kinds(pattern: str = "*", *, trainable: bool | None = None) -> list[str]:
    """Registered kinds matching ``pattern``; ``trainable=True`` / ``False`` keeps the recipes / published ones."""
    return sorted(k for k, c in KINDS.items()
                  if fnmatch.fnmatch(k, pattern) and (trainable is None or c.trainable == trainable))


def is_predictor_kind(kind: str) -> bool:
    return kind in KINDS


def create_predictor(kind: str, space: SearchSpace, **kwargs: Any) -> AccuracyPredictor:
    """A registered predictor, e.g. ``create_predictor("mlp", space, hidden=[64], epochs=50)`` (unfitted)."""
    if kind not in KINDS:
        raise ValueError(f"unknown predictor kind {kind!r}; known kinds {list_predictor_kinds()}")
    try:
        return KINDS[kind](space, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad hyper-parameters for predictor kind {kind!r}: {err}") from None

def artefact_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(<stem>.pth, <stem>.yaml)`` for a path given with either suffix or none."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".pth", ".yaml", ".yml") else p
    return stem.with_name(stem.name + ".pth"), stem.with_name(stem.name + ".yaml")

class AccuracyPredictor(ArchModel):
    """Predicts ImageNet-style top-1 (a fraction in [0, 1]) for archs of one space.

    Subclasses set ``kind``, implement ``_fit``, ``_predict``, ``params`` and ``state`` / ``from_state``.
    """

    target = "top1"
    kind: ClassVar[str] = "base"
    trainable: ClassVar[bool] = True

    def __init__(self, space: SearchSpace, *, supernet: str | None = None) -> None:
        super().__init__(space, supernet=supernet)
        #: what the sidecar records besides the hyper-parameters (training set, metrics, ...).
        self.metadata: dict[str, Any] = {}

    @property
    def trained_resolutions(self) -> tuple[int, ...] | None:
        """Resolutions the predictor was trained on (``None``: unknown, trust the whole space). Searches keep
        to them: elsewhere the predictor extrapolates."""
        seen = (self.metadata.get("training_set") or {}).get("resolutions")
        return tuple(int(r) for r in seen) if seen else None

    def predict(self, archs: ArchBatch) -> np.ndarray:
        """Top-1 fractions, one per arch (see :meth:`ArchModel.predict`).

        Warns once when asked about resolutions the training set never measured (a model fitted at r=224 only
        predicts the same top-1 at every resolution)."""
        x = as_encoded(self.space, archs)
        seen = (self.metadata.get("training_set") or {}).get("resolutions")
        if seen and not getattr(self, "_warned_resolution", False) and x.shape[0]:
            r = np.asarray(self.space.resolutions)[x[:, self.space.group_slices["r"].start]]
            unseen = sorted(set(np.unique(r).tolist()) - set(seen))
            if unseen:
                warnings.warn(f"{self.kind} predictor was trained at resolutions {seen} only; its predictions at "
                              f"{unseen[:5]}{'...' if len(unseen) > 5 else ''} are extrapolations", stacklevel=2)
                self._warned_resolution = True
        if x.shape[0] == 0:
            return np.zeros(0)
        return np.asarray(self._predict(x), dtype=np.float64).reshape(-1)

    # --------------------------------------------------------------------------------- fitting
    def fit(self, archs: ArchBatch, y: Sequence[float] | np.ndarray) -> AccuracyPredictor:
        """Fit on archs (or an encoded matrix) and their top-1 as fractions."""
        if not self.trainable:
            raise TypeError(f"predictor kind {self.kind!r} is a published, fixed predictor and cannot be fitted")
        x = as_encoded(self.space, archs)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"fit got {x.shape[0]} archs but {y.shape[0]} targets")
        if x.shape[0] < 2:
            raise ValueError(f"fit needs at least 2 archs, got {x.shape[0]}")
        if not np.all(np.isfinite(y)) or y.min() < 0 or y.max() > 1:
            raise ValueError(
                f"targets must be top-1 fractions in [0, 1], got range [{np.nanmin(y)}, {np.nanmax(y)}]; "
                f"divide percentages by 100"
            )
        self._fit(x, y)
        return self

    def _fit(self, encoded: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------ persistence
    def params(self) -> dict[str, Any]:
        """Hyper-parameters that rebuild the (unfitted) predictor: ``cls(space, **params())``."""
        return {}

    def state(self) -> dict[str, np.ndarray]:
        """Fitted arrays by name."""
        raise NotImplementedError

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "supernet": self.supernet,
            "space": space_to_dict(self.space),
            "params": self.params(),
            **self.metadata,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<stem>.pth`` + ``<stem>.yaml``; returns the ``.pth`` path."""
        pth, meta_path = artefact_paths(path)
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.state().items()}
        meta = self.describe()
        meta["saved"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        buf = io.BytesIO()
        torch.save(tensors, buf)
        text = yaml.safe_dump(to_plain(meta), sort_keys=False)
        atomic_write_bytes(pth, buf.getvalue())
        atomic_write_bytes(meta_path, text.encode())
        return pth

    @classmethod
    def load(cls, path: str | os.PathLike, *, supernet: str | None = None) -> AccuracyPredictor:
        """Load an artefact saved by :meth:`save` (any kind); check it was built for ``supernet``."""
        pth, meta_path = artefact_paths(path)
        for p in (pth, meta_path):
            if not p.is_file():
                raise FileNotFoundError(
                    f"predictor artefact {path} is incomplete: {p} is missing (an artefact is <stem>.pth + <stem>.yaml, "
                    f"written by predictor.save or scripts/train_predictor.py)"
                )
        try:
            meta = yaml.safe_load(meta_path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"predictor metadata {meta_path} is not valid YAML: {err}") from None
        if not isinstance(meta, dict) or "kind" not in meta or "space" not in meta:
            raise ValueError(f"predictor metadata {meta_path} lacks 'kind'/'space'; is it a predictor sidecar?")
        kind = meta["kind"]
        if kind not in KINDS:
            raise ValueError(f"predictor {path}: unknown kind {kind!r}; known kinds {sorted(KINDS)}")
        if supernet is not None and meta.get("supernet") not in (None, supernet):
            raise ValueError(
                f"predictor {path} was trained for supernet {meta.get('supernet')!r}, not {supernet!r}; "
                f"train one on a dataset of {supernet!r} with scripts/train_predictor.py"
            )
        try:
            raw = torch.load(pth, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for corrupt files
            raise ValueError(f"cannot read predictor weights {pth}: {err}") from None
        if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
            raise ValueError(f"predictor weights {pth} hold a {type(raw).__name__}, expected a dict of named tensors "
                             f"(as predictor.save writes); re-save the predictor or retrain it with "
                             f"scripts/train_predictor.py")
        state = {str(k): v.numpy() for k, v in raw.items()}
        space = space_from_dict(meta["space"])
        model = KINDS[kind].from_params(space, supernet=meta.get("supernet"), params=meta.get("params") or {})
        try:
            model.load_state(state)
        except (KeyError, ValueError, IndexError) as err:  # a missing or misshapen array
            raise ValueError(f"predictor weights {pth} do not fit a {kind!r} predictor ({err}; have {sorted(state)}); "
                             f"re-save the predictor or retrain it with scripts/train_predictor.py") from None
        model.metadata = {k: v for k, v in meta.items() if k not in ("kind", "target", "supernet", "space", "params")}
        return model

    @classmethod
    def from_params(cls, space: SearchSpace, *, supernet: str | None, params: dict[str, Any]) -> AccuracyPredictor:
        return cls(space, supernet=supernet, **params)
