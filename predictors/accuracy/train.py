"""Fit an accuracy predictor on a dataset: k-fold CV metrics first, then a fit on all rows, then an artefact.

``scripts/train_predictor.py`` is the Hydra wrapper; tests call :func:`train_predictor` directly.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from predictors.accuracy.base import artefact_paths
from predictors.accuracy.dataset import file_sha256, read_dataset
from predictors.accuracy.metrics import cross_validate, format_report, ranking_metrics
from predictors.accuracy.models import build_predictor
from supernets.paths import REPO_ROOT

__all__ = ["train_predictor"]


def train_predictor(dataset: str | Path, predictor: dict[str, Any], out: str | Path, *, folds: int = 5,
                    seed: int = 0, supernet: str | None = None, overwrite: bool = False,
                    echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Cross-validate ``predictor`` (a recipe, e.g. ``configs/predictor/mlp.yaml``) on ``dataset``, fit it on
    every row and save it to ``out`` (``.pth`` + ``.yaml`` sidecar with the CV metrics).

    Everything is validated before anything is written; an existing artefact is kept unless ``overwrite``.

    Returns:
        ``{"cv": ..., "train": ..., "artefact": path}``.
    """
    pth, meta = artefact_paths(out)
    if not overwrite and (pth.exists() or meta.exists()):
        raise FileExistsError(f"{pth} already exists; pass overwrite=true or another out=...")
    ds = read_dataset(dataset, supernet=supernet)
    model = build_predictor(predictor, ds.space, supernet=ds.supernet)  # validates the recipe early
    echo(f"dataset {ds.path} ({len(ds)} archs, supernet {ds.supernet}); predictor {model.kind} {model.params()}")
    cv = None
    if folds and folds > 1:
        cv = cross_validate(lambda: build_predictor(predictor, ds.space, supernet=ds.supernet), ds, folds=folds,
                            seed=seed, progress=echo)
        echo(format_report(cv))
    model.fit(ds.encoded, ds.top1)
    train = ranking_metrics(ds.top1, model.predict(ds.encoded))
    echo(f"fit on all {len(ds)}: train kendall_tau={train['kendall_tau']:.4f} rmse={train['rmse_points']:.3f} pts")
    model.metadata = {
        "training_set": {"path": _display_path(ds.path), "sha256": file_sha256(ds.path) if ds.path else None, "n": len(ds),
                         "resolutions": sorted({int(r) for r in ds.resolutions})},
        "metrics": {"cv": cv, "train": train},
        "command": " ".join(shlex.quote(a) for a in sys.argv),
    }
    saved = model.save(out)
    echo(f"saved {saved} (+ {artefact_paths(saved)[1].name})")
    return {"cv": cv, "train": train, "artefact": str(saved)}


def _display_path(path: Path | None) -> str | None:
    """Repository-relative for bundled data (stable across checkouts), else absolute."""
    if path is None:
        return None
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return str(p)
