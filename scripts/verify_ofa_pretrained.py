"""Check converted OFA supernets against MIT's own code (``pip install ofa --no-deps``) at the spaces' resolutions.

    python scripts/verify_ofa_pretrained.py                      # random weights, all three supernets
    python scripts/verify_ofa_pretrained.py --supernet ofa_mbv3_w12 --pretrained ofa_mbv3_d234_e346_k357_w1.2

For each supernet: ``--archs`` random archs plus the largest and smallest, each at the next of ``--resolutions``,
in eval and train mode; prints the worst ``max |Δ logits| / max |logits|`` (the test suite runs the same check at
smaller inputs; ``pytest -m slow tests/test_pretrained_ofa.py`` runs this one). ``--pretrained`` loads a published
file into both MIT's class and ours instead of random weights. Exits non-zero above ``--tol``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from supernets.pretrained import OFA_FILES
from supernets.pretrained.verify import compare_with_ofa


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--supernet", nargs="+", choices=sorted(OFA_FILES), default=sorted(OFA_FILES))
    ap.add_argument("--pretrained", default=None, help="a published OFA file (one --supernet)")
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[128, 160, 192, 224])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args(argv)
    if args.pretrained and len(args.supernet) != 1:
        ap.error("--pretrained needs exactly one --supernet")
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
    sys.exit(main())
