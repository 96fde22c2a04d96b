"""How much of HELP's measured GPU latency is predictable from the architecture at all (noise ceiling).

HELP measured each of its 5000 subnets once per (GPU, batch). Where a learned predictor's held-out Spearman
stays low, this module measures from the data whether the unexplained part is architecture-driven (a model
could learn it) or measurement noise (no model can), with four figures per column:

* **capacity**: held-out Spearman of the shipped ridge, of a gradient-boosted trees model on the same
  features (more capacity, non-additive), and the ridge's in-sample Spearman and R² (train rows) vs held-out R².
* **row-order drift**: the CSV rows are randomly sampled archs, so an arch property has no autocorrelation
  in row order (control: lag-1 autocorrelation of the predictions) while a drifting measurement does
  (lag-1 autocorrelation of the 5-fold residuals, and the share of residual variance a 51-row moving
  average explains).
* **cross-device**: residuals (measured / predicted - 1) of a column against the other GPUs' at the same
  batch. An arch effect the features miss would show on every GPU running the same kernels (2080ti and
  Titan RTX are the same TU102 chip), so the largest residual correlation with another GPU estimates the
  arch-driven share of the residual; the rest is measurement noise. For the TU102 twins it also gives the
  measured-vs-measured Spearman against the predicted-vs-predicted one, and the ceiling that agreement
  implies without using this column's residuals (``twin_implied_ceiling``).
* **ceiling**: Spearman(y_true, y_true + noise) simulated with that noise share (and, as an upper bound,
  with the drift alone): what even a perfect model of the architecture would score against these
  measurements.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr

from predictors.latency.help_gpu import HelpRegressor, fit_help_model, split_indices
from predictors.latency.learned import BlockFeaturizer
from supernets.measurable import MeasurableLayers

__all__ = ["cv_predictions", "noise_ceiling", "noise_report"]

_WINDOW = 51
#: GPUs on the same die (TU102): the arch-driven part of their latencies should agree closely.
TWINS = {"2080ti": "titan_rtx", "titan_rtx": "2080ti"}


def cv_predictions(geometry: MeasurableLayers, x: np.ndarray, y: np.ndarray, *, folds: int = 5,
                   seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions of the shipped recipe (each row predicted by a model that never saw it)."""
    from sklearn.model_selection import KFold, cross_val_predict

    return cross_val_predict(HelpRegressor(geometry), x, y, cv=KFold(folds, shuffle=True, random_state=seed))


def _lag1(v: np.ndarray) -> float:
    return float(pearsonr(v[:-1], v[1:]).statistic)


def _drift_share(res: np.ndarray) -> float:
    """Share of residual variance that is slow drift in row order (white noise's own share removed)."""
    ma = np.convolve(res, np.ones(_WINDOW) / _WINDOW, mode="valid")
    return float(max(0.0, (ma.var() - res.var() / _WINDOW) / res.var()))


def noise_ceiling(pred: np.ndarray, res: np.ndarray, noise_share: float, rng: np.random.Generator,
                  reps: int = 20) -> float:
    """Mean Spearman(y_true, y_noisy) when ``noise_share`` of the relative residual variance is noise.

    ``y_true = pred * (1 + s)`` with ``s`` the arch-driven rest of the residual and ``y_noisy = y_true *
    (1 + n)``; ``s`` and ``n`` are the measured residuals, shuffled (their own distribution, tails kept)
    and scaled to their shares.
    """
    out = []
    for _ in range(reps):
        s = rng.permutation(res) * np.sqrt(1.0 - noise_share)
        n = rng.permutation(res) * np.sqrt(noise_share)
        y_true = pred * (1.0 + s)
        out.append(spearmanr(y_true, y_true * (1.0 + n)).statistic)
    return float(np.mean(out))


def noise_report(geometry: MeasurableLayers, x: np.ndarray, lat: dict[str, np.ndarray], columns: list[str], *,
                 seed: int = 0, trees: bool = True) -> dict[str, dict[str, Any]]:
    """Figures above for ``columns`` (cross-device partners: every column of ``lat`` at the same batch)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    batch = {c: c.rsplit("_", 1)[1] for c in lat}
    wanted = sorted({c2 for c in columns for c2 in lat if batch[c2] == batch[c]})
    pred = {c: cv_predictions(geometry, x, lat[c], seed=seed) for c in wanted}
    res = {c: lat[c] / pred[c] - 1.0 for c in wanted}
    tr, te = split_indices(len(x), seed=seed)
    feats = BlockFeaturizer(geometry, per_slot=True)(x)
    rng = np.random.default_rng(seed)
    report = {}
    for c in columns:
        y = lat[c]
        model = fit_help_model(geometry, x[tr], y[tr])
        p_tr, p_te = model.predict(x[tr]), model.predict(x[te])
        row: dict[str, Any] = {
            "heldout_spearman": float(spearmanr(p_te, y[te]).statistic),
            "insample_spearman": float(spearmanr(p_tr, y[tr]).statistic),
            "insample_r2": float(1 - np.var(y[tr] - p_tr) / np.var(y[tr])),
            "heldout_r2": float(1 - np.var(y[te] - p_te) / np.var(y[te])),
        }
        if trees:
            hgb = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, random_state=seed)
            hgb.fit(feats[tr], y[tr])
            row["trees_heldout_spearman"] = float(spearmanr(hgb.predict(feats[te]), y[te]).statistic)
        r = res[c]
        row["cv5_spearman"] = float(spearmanr(pred[c], y).statistic)
        row["resid_sd"] = float(r.std())
        row["resid_lag1"] = _lag1(r)
        row["pred_lag1_control"] = _lag1(pred[c])
        row["drift_share"] = _drift_share(r)
        others = {o: float(pearsonr(r, res[o]).statistic) for o in wanted if o != c and batch[o] == batch[c]}
        partner = max(others, key=others.get)
        row["resid_corr_max"], row["resid_corr_partner"] = others[partner], partner
        gpu = c[len("lat_ms_"): -len(batch[c]) - 1]
        if gpu in TWINS:
            # same die: measured vs measured agreement against the agreement of the arch-driven parts
            twin = f"lat_ms_{TWINS[gpu]}_{batch[c]}"
            row["twin"] = twin
            row["twin_resid_corr"] = others[twin]
            row["twin_measured_spearman"] = float(spearmanr(y, lat[twin]).statistic)
            row["twin_predicted_spearman"] = float(spearmanr(pred[c], pred[twin]).statistic)
            # With independent noise, Spearman(y_A, y_B) ~ c_A * c_B * rho(f_A, f_B) (c: each column's ceiling,
            # f: arch-driven latency). The twin's CV Spearman is at most its c_B and the prediction agreement
            # estimates rho, so this is an upper estimate of c_A that uses no residual of column A.
            row["twin_cv_spearman"] = float(spearmanr(pred[twin], lat[twin]).statistic)
            row["twin_implied_ceiling"] = row["twin_measured_spearman"] / (
                row["twin_cv_spearman"] * row["twin_predicted_spearman"])
        row["noise_share"] = 1.0 - max(0.0, others[partner])
        row["ceiling"] = noise_ceiling(pred[c], r, row["noise_share"], rng)
        row["ceiling_drift_only"] = noise_ceiling(pred[c], r, row["drift_share"], rng)
        report[c] = row
    return report
