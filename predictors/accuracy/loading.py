"""``load_predictor(name_or_path)``: the one way search and scripts obtain an accuracy predictor.

A name is a file ``configs/predictor/<name>.yaml``: either a published predictor (``kind: ofa_mbv3_pretrained``
+ ``weights:``), a shipped artefact (``artefact:`` relative to the repository), or a training recipe
(``kind: mlp`` etc.; it has nothing to load until ``scripts/train_predictor.py`` fitted it). A path is an artefact
saved by ``AccuracyPredictor.save`` (``<stem>.pth`` + ``<stem>.yaml``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from predictors.accuracy.base import KINDS, AccuracyPredictor, artefact_paths
from predictors.accuracy.spaces import space_from_dict
from supernets.paths import CONFIG_DIR, REPO_ROOT
from supernets.space import SearchSpace

__all__ = ["PREDICTOR_CONFIG_DIR", "list_predictors", "load_predictor", "predictor_config"]

PREDICTOR_CONFIG_DIR = CONFIG_DIR / "predictor"


def list_predictors(*, loadable_only: bool = False) -> list[str]:
    """Names of ``configs/predictor/*.yaml`` (with ``loadable_only``: those ``load_predictor`` can load)."""
    names = sorted(p.stem for p in PREDICTOR_CONFIG_DIR.glob("*.yaml"))
    if loadable_only:
        names = [n for n in names if _loadable(predictor_config(n))]
    return names


def predictor_config(name: str) -> dict[str, Any]:
    path = PREDICTOR_CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown predictor {name!r}: not a saved artefact path and not one of {list_predictors(loadable_only=True)} "
            f"(configs/predictor/*.yaml; trainable recipes: "
            f"{[n for n in list_predictors() if n not in list_predictors(loadable_only=True)]})"
        )
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise ValueError(f"predictor config {path} must be a mapping with a 'kind'")
    return cfg


def _loadable(cfg: dict[str, Any]) -> bool:
    return bool(cfg.get("artefact")) or (cfg.get("kind") in KINDS and not KINDS[cfg["kind"]].trainable)


def _repo_path(p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else REPO_ROOT / q


def _looks_like_path(name: str) -> bool:
    return os.sep in name or name.endswith((".pth", ".yaml", ".yml")) or artefact_paths(name)[0].is_file()


def load_predictor(name_or_path: str | os.PathLike, supernet: str | None = None, *,
                   space: SearchSpace | None = None) -> AccuracyPredictor:
    """An accuracy predictor by config name or artefact path.

    Args:
        name_or_path: ``ofa_pretrained``, ``ofa_resnet50_pretrained``, ``ofa_mbv3_w10_imagenet``, another
            ``configs/predictor`` name with an artefact, or the path of a saved artefact.
        supernet: if given, the predictor must have been built for this supernet (else ValueError).
        space: for the published OFA predictors, the space to accept archs of (default: the family's
            default space); it must have the gene choices the predictor was trained on.
    """
    name = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(name):
        model = AccuracyPredictor.load(name, supernet=supernet)
    else:
        cfg = predictor_config(name)
        kind = cfg["kind"]
        if cfg.get("artefact"):
            model = AccuracyPredictor.load(_repo_path(cfg["artefact"]), supernet=supernet)
        elif kind in KINDS and not KINDS[kind].trainable:
            kwargs: dict[str, Any] = {k: v for k, v in cfg.items() if k not in ("kind", "weights", "description",
                                                                                "supernet", "space", "name")}
            if "space" in cfg and space is None:
                space = space_from_dict(cfg["space"])
            model = KINDS[kind](space, supernet=cfg.get("supernet"), weights=str(_repo_path(cfg["weights"])), **kwargs)
        else:
            raise ValueError(
                f"predictor {name!r} is a training recipe (kind {kind!r}) with no fitted artefact; train it with "
                f"`python scripts/train_predictor.py dataset=<csv> predictor={name}` and load the saved path, or use one "
                f"of {list_predictors(loadable_only=True)}"
            )
    if supernet is not None and model.supernet not in (None, supernet):
        raise ValueError(
            f"predictor {name!r} was built for supernet {model.supernet!r}, not {supernet!r}; "
            f"choose a predictor for {supernet!r} or train one (scripts/train_predictor.py)"
        )
    return model
