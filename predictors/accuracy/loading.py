"""``load_predictor(name_or_path)``: the one way search and scripts obtain an accuracy predictor.

A name is an option of the ``predictor`` config group (``configs/predictor/<name>.yaml``), composed by Hydra and
built with ``hydra.utils.instantiate``: every predictor config is a ``_partial_`` of :func:`published` (OFA's
predictors: ``kind`` + ``weights``), :func:`artefact` (a shipped artefact, relative to the repository) or
:func:`recipe` (a training recipe: ``kind`` + hyper-parameters; nothing to load until
``scripts/train_predictor.py`` fitted it), called with the space to accept. A path is an artefact saved by
``AccuracyPredictor.save`` (``<stem>.pth`` + ``<stem>.yaml``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from predictors.accuracy.base import KINDS, AccuracyPredictor, artefact_paths, create_predictor, list_predictor_kinds
from predictors.accuracy.spaces import space_from_dict
from supernets.compose import UnknownOptionError, compose_option, group_options
from supernets.paths import REPO_ROOT
from supernets.space import SearchSpace

__all__ = ["artefact", "build_from_config", "list_predictors", "load_predictor", "predictor_config", "published",
           "recipe"]

#: config keys that describe a predictor without being its arguments
_META = ("name", "description")


def published(*, kind: str, weights: str, supernet: str | None = None, space: SearchSpace | Mapping | None = None,
              name: str | None = None, description: str | None = None, **kwargs: Any) -> AccuracyPredictor:
    """A published, fixed predictor (``kind`` of :data:`KINDS` that is not trainable) with its ``weights``."""
    if kind not in KINDS or KINDS[kind].trainable:
        raise ValueError(f"predictor {name or kind!r}: kind {kind!r} is not a published predictor; published kinds: "
                         f"{list_predictor_kinds(trainable=False)}")
    if isinstance(space, Mapping):
        space = space_from_dict(dict(space))
    return create_predictor(kind, space, supernet=supernet, weights=str(_repo_path(weights)), **kwargs)


def artefact(*, artefact: str, space: SearchSpace | None = None, name: str | None = None,
             description: str | None = None, **recipe: Any) -> AccuracyPredictor:
    """A saved artefact shipped with the repository (``recipe``: the keys it was trained with, for
    ``scripts/train_predictor.py``; loading ignores them, the artefact's sidecar holds its own space)."""
    return AccuracyPredictor.load(_repo_path(artefact))


def recipe(*, kind: str, space: SearchSpace | None = None, supernet: str | None = None, name: str | None = None,
           description: str | None = None, **hyper: Any) -> AccuracyPredictor:
    """An unfitted predictor of a training recipe (``kind`` + hyper-parameters) over ``space``."""
    from predictors.accuracy.models import build_predictor

    if space is None:
        raise ValueError(f"predictor recipe {name or kind!r} needs the space to fit on (space=...)")
    return build_predictor({"kind": kind, **hyper}, space, supernet=supernet)


def predictor_config(name: str) -> dict[str, Any]:
    """``configs/predictor/<name>.yaml`` composed by Hydra (a plain dict)."""
    try:
        return compose_option("predictor", name)
    except UnknownOptionError:
        loadable = list_predictors(loadable_only=True)
        raise ValueError(
            f"unknown predictor {name!r}: not a saved artefact path and not one of {loadable} "
            f"(configs/predictor/*.yaml; trainable recipes: "
            f"{[n for n in list_predictors() if n not in loadable]})"
        ) from None


def list_predictors(*, loadable_only: bool = False) -> list[str]:
    """Options of the ``predictor`` group (with ``loadable_only``: those ``load_predictor`` can load)."""
    names = group_options("predictor")
    if loadable_only:
        names = [n for n in names if not _is_recipe(_factory(compose_option("predictor", n)))]
    return names


def _factory(cfg: Mapping[str, Any]) -> Callable[..., AccuracyPredictor]:
    from hydra.utils import instantiate

    if "_target_" not in cfg:
        raise ValueError(f"predictor config {cfg.get('name', cfg)!r} has no _target_ (one of "
                         f"predictors.accuracy.loading.published / artefact / recipe, with _partial_: true)")
    built = instantiate(dict(cfg), _convert_="all")
    if not callable(built) or isinstance(built, AccuracyPredictor):
        raise ValueError(f"predictor config {cfg.get('name')!r} must build a factory (_partial_: true) that takes "
                         f"space=..., got a {type(built).__name__}")
    return built


def _is_recipe(factory: Callable[..., Any]) -> bool:
    return isinstance(factory, functools.partial) and factory.func is recipe


def build_from_config(cfg: Mapping[str, Any], *, supernet: str | None = None,
                      space: SearchSpace | None = None) -> AccuracyPredictor:
    """The predictor of a composed ``predictor`` config (a recipe is refused: it has nothing fitted to load)."""
    factory = _factory(cfg)
    name = cfg.get("name", "?")
    if _is_recipe(factory):
        raise ValueError(
            f"predictor {name!r} is a training recipe (kind {cfg.get('kind')!r}) with no fitted artefact; train it "
            f"with `python scripts/train_predictor.py dataset=<csv> predictor={name}` and load the saved path, or "
            f"use one of {list_predictors(loadable_only=True)}"
        )
    model = factory(space=space) if cfg.get("space") is None or space is not None else factory()
    return _check_supernet(model, name, supernet)


def _check_supernet(model: AccuracyPredictor, name: str, supernet: str | None) -> AccuracyPredictor:
    if supernet is not None and model.supernet not in (None, supernet):
        raise ValueError(
            f"predictor {name!r} was built for supernet {model.supernet!r}, not {supernet!r}; "
            f"choose a predictor for {supernet!r} or train one (scripts/train_predictor.py)"
        )
    return model


def _repo_path(p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else REPO_ROOT / q


def _looks_like_path(name: str) -> bool:
    return os.sep in name or name.endswith((".pth", ".yaml", ".yml")) or artefact_paths(name)[0].is_file()


def load_predictor(name_or_path: str | os.PathLike | Mapping[str, Any], supernet: str | None = None, *,
                   space: SearchSpace | None = None) -> AccuracyPredictor:
    """An accuracy predictor by config name, composed config or artefact path.

    Args:
        name_or_path: ``ofa_pretrained``, ``ofa_resnet50_pretrained``, ``ofa_mbv3_w10_imagenet``, another
            ``configs/predictor`` name with an artefact, a composed predictor config, or the path of a saved
            artefact.
        supernet: if given, the predictor must have been built for this supernet (else ValueError).
        space: for the published OFA predictors, the space to accept archs of (default: the family's
            default space); it must have the gene choices the predictor was trained on.
    """
    if isinstance(name_or_path, Mapping):
        return build_from_config(name_or_path, supernet=supernet, space=space)
    name = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(name):
        return _check_supernet(AccuracyPredictor.load(name, supernet=supernet), name, supernet)
    return build_from_config(predictor_config(name), supernet=supernet, space=space)
