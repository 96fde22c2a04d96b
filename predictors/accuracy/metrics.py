"""Ranking quality of an accuracy predictor, and k-fold cross-validation.

The search only needs the predictor to *order* subnets well, so Kendall's tau (pairwise order) and Spearman's
rho (rank correlation) come first; RMSE is reported in top-1 percentage points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

from predictors.accuracy.base import AccuracyPredictor
from predictors.accuracy.dataset import AccuracyDataset

__all__ = ["cross_validate", "format_report", "out_of_fold", "ranking_metrics"]


def ranking_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Kendall tau-b, Spearman rho, RMSE and MAE (points), n."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return {
        "kendall_tau": float(stats.kendalltau(y_true, y_pred).statistic),
        "spearman": float(stats.spearmanr(y_true, y_pred).statistic),
        "rmse_points": 100.0 * float(root_mean_squared_error(y_true, y_pred)),
        "mae_points": 100.0 * float(mean_absolute_error(y_true, y_pred)),
        "n": len(y_true),
    }


class _Recipe(RegressorMixin, BaseEstimator):
    """A predictor recipe (``make()`` builds a fresh, unfitted predictor) as a scikit-learn estimator, so
    scikit-learn's cross-validation drives it."""

    def __init__(self, make: Callable[[], AccuracyPredictor] | None = None) -> None:
        self.make = make

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Recipe:
        self.model_ = self.make().fit(x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict(x)


def out_of_fold(make: Callable[[], AccuracyPredictor], x: np.ndarray, y: np.ndarray, *, folds: int = 5,
                seed: int = 0) -> np.ndarray:
    """Each row's prediction by the model fitted on the other folds (``folds``-fold, shuffled with ``seed``)."""
    from sklearn.model_selection import KFold, cross_val_predict

    return cross_val_predict(_Recipe(make), x, y, cv=KFold(n_splits=folds, shuffle=True, random_state=seed))


def cross_validate(make: Callable[[], AccuracyPredictor], ds: AccuracyDataset, *, folds: int = 5,
                   seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``folds``-fold CV (shuffled with ``seed``): metrics per fold, their mean and std, metrics of the pooled
    out-of-fold predictions, and pooled metrics per resolution when the dataset has several (``progress`` gets
    one line per fold once the folds are fitted)."""
    from sklearn.model_selection import KFold

    if len(ds) < folds:
        raise ValueError(f"{folds}-fold CV needs at least {folds} archs, the dataset has {len(ds)}")
    x, y = ds.encoded, ds.top1
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)  # the same folds out_of_fold uses
    oof = out_of_fold(make, x, y, folds=folds, seed=seed).astype(y.dtype, copy=False)
    per_fold = []
    for k, (_, te) in enumerate(splitter.split(x)):
        per_fold.append(ranking_metrics(y[te], oof[te]))
        if progress is not None:
            m = per_fold[-1]
            progress(f"fold {k + 1}/{folds}: kendall_tau={m['kendall_tau']:.4f} spearman={m['spearman']:.4f} "
                     f"rmse={m['rmse_points']:.3f} pts")
    keys = ("kendall_tau", "spearman", "rmse_points", "mae_points")
    out: dict[str, Any] = {
        "folds": folds,
        "seed": seed,
        "per_fold": per_fold,
        "mean": {k: float(np.mean([m[k] for m in per_fold])) for k in keys},
        "std": {k: float(np.std([m[k] for m in per_fold], ddof=1)) for k in keys},
        "pooled": ranking_metrics(y, oof),
    }
    res = ds.resolutions
    if len(np.unique(res)) > 1:
        out["per_resolution"] = {int(r): ranking_metrics(y[res == r], oof[res == r])
                                 for r in np.unique(res) if (res == r).sum() >= 3}
    return out


def format_report(cv: dict[str, Any]) -> str:
    """Human-readable lines for a :func:`cross_validate` result."""
    m, s, p = cv["mean"], cv["std"], cv["pooled"]
    lines = [
        f"{cv['folds']}-fold CV (mean ± std over folds): kendall_tau={m['kendall_tau']:.4f} ± {s['kendall_tau']:.4f}  "
        f"spearman={m['spearman']:.4f} ± {s['spearman']:.4f}  rmse={m['rmse_points']:.3f} ± {s['rmse_points']:.3f} pts  "
        f"mae={m['mae_points']:.3f} pts",
        f"pooled out-of-fold (n={p['n']}): kendall_tau={p['kendall_tau']:.4f}  spearman={p['spearman']:.4f}  "
        f"rmse={p['rmse_points']:.3f} pts",
    ]
    for r, q in (cv.get("per_resolution") or {}).items():
        lines.append(f"  r={r} (n={q['n']}): kendall_tau={q['kendall_tau']:.4f}  spearman={q['spearman']:.4f}  "
                     f"rmse={q['rmse_points']:.3f} pts")
    return "\n".join(lines)
