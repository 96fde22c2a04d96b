"""Check converted OFA supernets against MIT's own code (``pip install ofa --no-deps``) at the spaces' resolutions.

    python scripts/verify_ofa_pretrained.py                      # random weights, all three supernets
    python scripts/verify_ofa_pretrained.py supernet=[ofa_mbv3_w12] pretrained=ofa_mbv3_d234_e346_k357_w1.2

For each supernet: ``archs`` random archs plus the largest and smallest, each at the next of ``resolutions``,
in eval and train mode; prints the worst ``max |Δ logits| / max |logits|`` (the test suite runs the same check at
smaller inputs; ``pytest -m slow tests/test_pretrained_ofa.py`` runs this one). ``pretrained`` loads a published
file into both MIT's class and ours instead of random weights. Exits non-zero above ``tol``.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import hydra
import torch
from omegaconf import DictConfig

from supernets.pretrained import OFA_FILES
from supernets.pretrained.verify import compare_with_ofa


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="verify_ofa_pretrained")
def main(cfg: DictConfig) -> None:
    """Exits with status 1 when a supernet is above the tolerance."""
    if run(cfg):
        sys.exit(1)


def run(cfg: DictConfig) -> int:
    from supernets.config_checks import ConfigError, check_float, check_int

    names = [cfg.supernet] if isinstance(cfg.supernet, str) else list(cfg.supernet)
    if not names or not set(names) <= set(OFA_FILES):
        raise ConfigError(f"supernet must list some of {sorted(OFA_FILES)}, got {names}")
    if cfg.pretrained and len(names) != 1:
        raise ConfigError(f"pretrained={cfg.pretrained} needs exactly one supernet (supernet=[<name>]), got {names}")
    res = [cfg.resolutions] if isinstance(cfg.resolutions, int) else list(cfg.resolutions)
    args = SimpleNamespace(supernet=names, pretrained=cfg.pretrained, archs=check_int("archs", cfg.archs, min=0),
                           resolutions=[check_int("resolutions", r, min=1) for r in res],
                           batch=check_int("batch", cfg.batch, min=1), seed=check_int("seed", cfg.seed),
                           threads=check_int("threads", cfg.threads, min=1), tol=check_float("tol", cfg.tol, min=0))
    torch.set_num_threads(args.threads)
    failed = False
    for name in args.supernet:
        t0 = time.perf_counter()
        res = compare_with_ofa(name, n_archs=args.archs, resolutions=args.resolutions, batch=args.batch,
                               seed=args.seed, pretrained=args.pretrained)
        w = res["worst"]
        ok = res["worst_rel"] <= args.tol
        failed |= not ok
        print(f"{name}: {res['n_archs']} archs x {{eval, train}} at r={args.resolutions}, weights "
              f"{args.pretrained or 'random'}: worst max|d logits| = {w['max_abs_diff']:.3g} at logit scale "
              f"{w['scale']:.3g} (rel {res['worst_rel']:.3g}, {'train' if w['train'] else 'eval'}, r={w['r']}) "
              f"{'OK' if ok else 'ABOVE TOLERANCE'} ({time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    main()
