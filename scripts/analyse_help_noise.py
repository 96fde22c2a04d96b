"""Print how much of HELP's GPU latency is predictable from the arch (noise ceiling), per (gpu, batch).

Run: ``OMP_NUM_THREADS=1 python scripts/analyse_help_noise.py [all=true] [no_trees=true]`` (< 1 min on one core).
By default only the columns whose shipped predictor misses held-out Spearman 0.95 are analysed; the
figures are defined in :mod:`predictors.latency.help_noise`.
"""

from __future__ import annotations

from types import SimpleNamespace

import hydra
from omegaconf import DictConfig

from predictors.latency.devices import geometry_for
from predictors.latency.help_gpu import evaluate_split, load_help_csv
from predictors.latency.help_noise import noise_report

TARGET = 0.95


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="analyse_help_noise")
def main(cfg: DictConfig) -> dict[str, dict]:
    from supernets.config_checks import ConfigError

    for key in ("all", "no_trees"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    args = SimpleNamespace(all=cfg.all, no_trees=cfg.no_trees)
    geo = geometry_for("ofa_mbv3_w10")
    x, lat = load_help_csv(geo.space)
    cols = sorted(lat) if args.all else [c for c in sorted(lat) if evaluate_split(geo, x, lat[c])["spearman"] < TARGET]
    print(f"analysing {len(cols)} column(s): {', '.join(cols)}")
    rep = noise_report(geo, x, lat, cols, trees=not args.no_trees)
    for c, r in rep.items():
        trees = f" trees {r['trees_heldout_spearman']:.3f}," if "trees_heldout_spearman" in r else ""
        print(f"\n{c}")
        print(f"  capacity: held-out Spearman ridge {r['heldout_spearman']:.3f},{trees} 5-fold CV {r['cv5_spearman']:.3f}; "
              f"in-sample Spearman {r['insample_spearman']:.3f}; R2 in-sample {r['insample_r2']:.3f} vs held-out "
              f"{r['heldout_r2']:.3f}")
        print(f"  row-order drift: residual lag-1 autocorr {r['resid_lag1']:.3f} (control, predictions: "
              f"{r['pred_lag1_control']:.3f}); drift share of residual variance {r['drift_share']:.3f}; "
              f"residual sd {r['resid_sd']:.3f} (relative)")
        print(f"  cross-device: max residual corr {r['resid_corr_max']:.3f} (with {r['resid_corr_partner']})")
        if "twin" in r:
            print(f"  same die ({r['twin']}): residual corr {r['twin_resid_corr']:.3f}; Spearman measured vs measured "
                  f"{r['twin_measured_spearman']:.3f}, predicted vs predicted {r['twin_predicted_spearman']:.3f}; "
                  f"twin CV Spearman {r['twin_cv_spearman']:.3f} -> implied ceiling "
                  f"{r['twin_measured_spearman']:.3f} / ({r['twin_cv_spearman']:.3f} x "
                  f"{r['twin_predicted_spearman']:.3f}) = {r['twin_implied_ceiling']:.3f}")
        print(f"  noise share {r['noise_share']:.3f} -> ceiling Spearman(y_true, y_measured) {r['ceiling']:.3f} "
              f"(drift alone: {r['ceiling_drift_only']:.3f})")
    return rep


if __name__ == "__main__":
    main()
