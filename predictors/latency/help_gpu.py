"""HELP's measured GPU latencies of 5000 OFA-MobileNetV3 w1.0 subnets -> learned per-device predictors.

Source: ``predictors/artefacts/help/help_ofa_mbv3_gpu_latency.csv.xz`` (bundled, xz-compressed; HayeonLee/HELP
45f70eb, MIT): columns ``ks``, ``e``, ``d`` (dash-joined, 20/20/5 values; slots beyond a stage's depth hold
filler values), ``r``, and ``lat_ms_<gpu>_<batch>`` for gpu in 2080ti/titan_rtx/titan_xp/v100 and batch
1/32/64. Each (gpu, batch) becomes a device ``help_<gpu>_b<batch>`` served for ``ofa_mbv3_w10``.
The predictor is :data:`HELP_METHOD`. This module holds the data, the recipe and its scores;
:mod:`predictors.latency.help_noise` (noise ceilings) builds on it and :mod:`predictors.latency.help_fit`
fits and saves the devices (so neither imports the other's caller).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import mean_absolute_percentage_error

from predictors.latency.learned import LearnedLatencyModel
from predictors.latency.table import LatencyTableError
from supernets.measurable import MeasurableLayers
from supernets.paths import REPO_ROOT
from supernets.space import MobileNetV3Space

__all__ = ["ATTRIBUTION", "HELP_ALPHAS", "HELP_CSV", "HELP_METHOD", "HelpRegressor", "cross_validate", "evaluate_split",
           "fit_help_model", "help_devices", "load_help_csv", "scores", "split_indices"]

#: HELP's CSV as the repository bundles it (pandas reads the xz stream directly; see predictors/artefacts/README.md).
HELP_CSV = REPO_ROOT / "predictors" / "artefacts" / "help" / "help_ofa_mbv3_gpu_latency.csv.xz"
#: Ridge penalties tried by leave-one-out on the training rows only (never the held-out rows).
HELP_ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 11))
HELP_METHOD = ("ridge (sklearn RidgeCV: alpha by leave-one-out over the training rows from 1e-2..1e3, weights 1/y^2) "
               "over per-stage sums of block cost features (MACs by operator, activation bytes, SE, h-swish, block "
               "count) + per-slot kernel/expand one-hots + resolution one-hot; folded into a per-block grid")
_LAT_COL = re.compile(r"^lat_ms_(?P<gpu>[a-z0-9_]+)_(?P<batch>\d+)$")
ATTRIBUTION = ("Whole-network GPU latencies of 5000 OFA-MobileNetV3 w1.0 subnets measured by the HELP authors "
               "(Lee et al., NeurIPS 2021; HayeonLee/HELP 45f70eb, MIT), converted to CSV and bundled as "
               "predictors/artefacts/help/help_ofa_mbv3_gpu_latency.csv.xz; the fitted ridge coefficients are here.")


def _split_ints(col: np.ndarray, n: int, what: str) -> np.ndarray:
    try:
        out = np.array([[int(v) for v in s.split("-")] for s in col], dtype=np.int64)
    except ValueError:
        raise LatencyTableError(f"HELP csv: column {what} must hold dash-joined integers") from None
    if out.shape[1] != n:
        raise LatencyTableError(f"HELP csv: column {what} has {out.shape[1]} values a row, expected {n}")
    return out


def load_help_csv(space: MobileNetV3Space, path: Path = HELP_CSV) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Encoded archs of ``space`` (vectorised, normalised) and ``{column: latency_ms}``."""
    import pandas as pd

    if not Path(path).is_file():
        raise LatencyTableError(f"HELP latency CSV {path} not found (the repository bundles it as {HELP_CSV}; "
                                f"git checkout -- {HELP_CSV.relative_to(REPO_ROOT)} restores it)")
    df = pd.read_csv(path)
    missing = {"ks", "e", "d", "r"} - set(df.columns)
    if missing:
        raise LatencyTableError(f"HELP csv {path} lacks columns {sorted(missing)}")
    ks = _split_ints(df["ks"].to_numpy(), space.n_slots, "ks")
    e = _split_ints(df["e"].to_numpy(), space.n_slots, "e")
    d = _split_ints(df["d"].to_numpy(), space.n_stages, "d")
    r = df["r"].to_numpy().astype(np.int64)

    def index(values: np.ndarray, choices: tuple[int, ...], what: str) -> np.ndarray:
        lut = {v: i for i, v in enumerate(choices)}
        bad = ~np.isin(values, choices)
        if bad.any():
            raise LatencyTableError(f"HELP csv: {what} value {values[bad][0]} not in the space's {list(choices)}")
        return np.vectorize(lut.__getitem__)(values)

    x = np.concatenate([index(r, space.resolutions, "r")[:, None], index(d, space.depths, "d"),
                        index(ks, space.kernel_sizes, "ks"), index(e, space.expand_ratios, "e")], axis=1)
    lat = {c: df[c].to_numpy(dtype=np.float64) for c in df.columns if _LAT_COL.match(c)}
    return space.normalize(x), lat


def help_devices(columns: list[str]) -> dict[str, tuple[str, int]]:
    """``help_<gpu>_b<batch>`` -> (column, batch)."""
    out = {}
    for c in columns:
        m = _LAT_COL.match(c)
        if m:
            out[f"help_{m['gpu']}_b{m['batch']}"] = (c, int(m["batch"]))
    return out


def fit_help_model(geometry: MeasurableLayers, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> LearnedLatencyModel:
    """The HELP GPU recipe (:data:`HELP_METHOD`) fitted on ``(x, y)`` only."""
    return LearnedLatencyModel.fit(geometry, x, y, alphas=np.array(HELP_ALPHAS), per_slot=True, **kwargs)


class HelpRegressor(RegressorMixin, BaseEstimator):
    """:func:`fit_help_model` as a scikit-learn estimator, so scikit-learn's cross-validation runs the recipe."""

    def __init__(self, geometry: MeasurableLayers | None = None) -> None:
        self.geometry = geometry

    def __sklearn_clone__(self) -> HelpRegressor:
        # an unfitted copy that shares the geometry: deep-copying it would rebuild its feature grids every fold
        return HelpRegressor(self.geometry)

    def fit(self, x: np.ndarray, y: np.ndarray) -> HelpRegressor:
        self.model_ = fit_help_model(self.geometry, x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict(x)


def split_indices(n: int, *, seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` row indices of the held-out split (a seeded permutation; the first rows are test).

    Not ``sklearn.model_selection.train_test_split``: it draws with numpy's legacy ``RandomState``, so seed 0 would
    hold out another 1000 rows (222 in common with these) and move every published held-out figure (RESULTS.md's
    HELP rows, each ``latency_tables/help_*/meta.yaml``; e.g. titan_xp_b1's Spearman 0.790 -> 0.775). Callers that
    need the split take it from here rather than re-deriving it.
    """
    perm = np.random.default_rng(seed).permutation(n)
    n_test = round(test_fraction * n)
    return perm[n_test:], perm[:n_test]


def scores(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman, MAPE (a fraction) and the share of predictions within ±10 % of the measured ``y``."""
    return {"spearman": float(spearmanr(p, y).statistic), "mape": float(mean_absolute_percentage_error(y, p)),
            "within_10pct": float((np.abs(p - y) / y <= 0.10).mean())}


def evaluate_split(geometry: MeasurableLayers, x: np.ndarray, y: np.ndarray, *, seed: int = 0,
                   test_fraction: float = 0.2) -> dict[str, Any]:
    """Fit on a random split, report held-out Spearman / MAPE / share within ±10 %."""
    tr, te = split_indices(len(x), seed=seed, test_fraction=test_fraction)
    model = fit_help_model(geometry, x[tr], y[tr])
    return {**scores(model.predict(x[te]), y[te]), "n_train": len(tr), "n_test": len(te), "split_seed": seed,
            "alpha": model.alpha}


def cross_validate(geometry: MeasurableLayers, x: np.ndarray, y: np.ndarray, *, folds: int = 5,
                   seed: int = 0) -> dict[str, Any]:
    """K-fold scores of :func:`fit_help_model` (each fold's alpha chosen on its own training rows)."""
    from sklearn.model_selection import KFold
    from sklearn.model_selection import cross_validate as sk_cross_validate

    scoring = {k: (lambda est, xt, yt, k=k: scores(est.predict(xt), yt)[k]) for k in ("spearman", "mape", "within_10pct")}
    cv = sk_cross_validate(HelpRegressor(geometry), x, y, cv=KFold(folds, shuffle=True, random_state=seed),
                           scoring=scoring)
    return {"folds": folds, "seed": seed, **{f"{k}_mean": float(np.mean(cv[f"test_{k}"])) for k in scoring},
            "spearman_min": float(np.min(cv["test_spearman"]))}
