"""oncenas in one minute: build an elastic supernet, sample subnets, extract them as static timm models
and profile them (MACs, parameters, CPU latency of one forward pass).

    python scripts/demo.py [supernet=ofa_mbv3_w10] [n=4] [seed=0]
"""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from supernets import count_macs, count_params, create_supernet, list_supernets


def latency_ms(model: nn.Module, x: torch.Tensor, repeats: int = 5) -> float:
    """Median wall time of one eval forward pass (after one warm-up)."""
    model.eval()
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="demo")
def main(cfg: DictConfig) -> None:
    from supernets.config_checks import ConfigError, check_int

    if cfg.supernet not in list_supernets():
        raise ConfigError(f"supernet={cfg.supernet!r} is not a registered supernet; choose one of {list_supernets()}")
    args = SimpleNamespace(supernet=cfg.supernet, n=check_int("n", cfg.n, min=0), seed=check_int("seed", cfg.seed))

    torch.manual_seed(args.seed)
    model = create_supernet(args.supernet)
    space = model.space
    in_chans = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    print(f"supernet {args.supernet}: {count_params(model) / 1e6:.2f} M weights, "
          f"{space.count():.3e} archs per resolution x {space.count_with_resolutions() // space.count()} resolutions")
    archs = [space.min_arch(), *space.sample(np.random.default_rng(args.seed), args.n), space.max_arch()]
    print(f"{'MMACs':>8} {'M params':>8} {'latency ms':>10} {'max|Δ|':>8}  arch")
    for arch in archs:
        model.set_active_subnet(arch)
        subnet = model.get_active_subnet().eval()
        x = torch.randn(1, in_chans, arch.r, arch.r)
        model.eval()
        with torch.inference_mode():
            diff = (model(x) - subnet(x)).abs().max().item()  # the extracted subnet computes the same function
        macs = count_macs(subnet, arch.r, in_chans=in_chans)
        print(f"{macs / 1e6:8.1f} {count_params(subnet) / 1e6:8.3f} {latency_ms(subnet, x):10.2f} {diff:8.1e}  {arch}")


if __name__ == "__main__":
    main()
