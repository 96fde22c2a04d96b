"""The search config's boundary: every value a user sets is checked here, once, before any model loads.

Called by :func:`search.run` on the merged config; it converts command-line strings (``pop_size=200`` arrives
as an int, ``pop_size=abc`` as a string) and refuses out-of-range values naming the key and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supernets.config_checks import ConfigError, check_float, check_int, reject_comma

__all__ = ["check_devices", "check_search_config"]

#: algorithm keys that count things: (minimum, key)
_ALGO_INTS = {"pop_size": 2, "n_gen": 0, "n_trials": 1, "batch_size": 1, "n_workers": 1, "refill_rounds": 0,
              "max_tries": 1, "max_evals": 1, "mating_window": 0, "screen": 1}
_ALGO_PROBS = ("crossover_prob", "stage_prob", "mutation_prob", "mutate_prob", "parent_ratio", "mutation_ratio")


def check_search_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with its numbers converted and checked (a new dict; nested dicts copied)."""
    cfg = dict(cfg)
    cfg["seed"] = check_int("seed", cfg.get("seed", 0), min=0)
    cfg["checkpoint_every"] = check_int("checkpoint_every", cfg.get("checkpoint_every", 25), min=0)
    cfg["probe"] = check_int("probe", cfg.get("probe", 512), min=0)
    cfg["blas_threads"] = check_int("blas_threads", cfg.get("blas_threads", 1), min=1, allow_none=True)
    for key in ("resume", "overwrite", "progress", "plot", "restrict_resolutions"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    if cfg.get("out_dir") is not None:
        reject_comma("out_dir", cfg["out_dir"])
    acfg = cfg.get("algorithm")
    if isinstance(acfg, Mapping):
        acfg = dict(acfg)
        for key, low in _ALGO_INTS.items():
            if key in acfg and acfg[key] is not None:
                acfg[key] = check_int(f"algorithm.{key}", acfg[key], min=low)
        for key in _ALGO_PROBS:
            if key in acfg and acfg[key] is not None:
                acfg[key] = check_float(f"algorithm.{key}", acfg[key], min=0.0, max=1.0)
        cfg["algorithm"] = acfg
    cons = cfg.get("constraints")
    if isinstance(cons, Mapping):
        cons = dict(cons)
        for key, v in cons.items():
            if v is None:
                continue
            if key == "top1":  # a fraction: top1=75 (a percent) would make every arch infeasible
                cons[key] = check_float("constraints.top1", v, min=0.0, max=1.0, min_open=True)
            else:
                cons[key] = check_float(f"constraints.{key}", v, min=0.0, min_open=True)
        cfg["constraints"] = cons
    elif cons is not None:
        raise ConfigError(f"constraints must be a mapping (constraints.latency_ms=25), got {cons!r}")
    exp = cfg.get("export")
    if isinstance(exp, Mapping):
        exp = dict(exp)
        exp["top_k"] = check_int("export.top_k", exp.get("top_k", 0), min=0)
        if "calib_batches" in exp:
            exp["calib_batches"] = check_int("export.calib_batches", exp["calib_batches"], min=0)
        if exp.get("onnx_atol") is not None:
            exp["onnx_atol"] = check_float("export.onnx_atol", exp["onnx_atol"], min=0.0, min_open=True)
        if "onnx" in exp and not isinstance(exp["onnx"], bool):
            raise ConfigError(f"export.onnx must be true or false, got {exp['onnx']!r}")
        cfg["export"] = exp
    return cfg


def check_devices(devices: Mapping[str, Any]) -> None:
    """Two names of one device (an alias and its target: ``device=[pixel,pixel1]``) would search it twice and
    write two folders of the same front: refused. ``devices``: name -> its built Device (None: no config, an
    injected model; left alone)."""
    canonical: dict[str, str] = {}
    for d, dev in devices.items():
        if dev is None:
            continue
        name = str(dev.name)
        if name in canonical:
            raise ConfigError(f"device={list(devices)} names device {name!r} twice ({canonical[name]!r} and {d!r}; "
                              f"configs/device/ makes one an alias of the other): list it once")
        canonical[name] = d
