"""Cost of elasticity: the supernet running an arch vs the extracted static subnet (timm MobileNetV3).

For the min, mid and max archs of a supernet, times a training step (forward + backward, batch 32,
128 px) and batch-1 eval inference of both models, interleaving the two so that load changes on a
shared machine hit both alike, and prints the median times and their ratios (supernet / static).
Targets: <= 1.03 for training steps, <= 1.05 for batch-1 inference.

``impl=[ofa]`` runs the same measurement on MIT's once-for-all reference code (``pip install ofa --no-deps``;
its ``OFAMobileNetV3`` / ``OFAResNets`` with the same archs, via ``Arch.to_ofa_dict``), and ``impl=[oncenas,ofa]``
alternates the two, process by process, so that both meet the same machine state.

    python scripts/bench_elastic.py [supernet=ofa_mbv3_w10] [repeats=15] [processes=3] [threads=1]
                                    [impl=[oncenas,ofa]]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import NamedTuple

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from supernets import Arch, create_supernet, list_supernets
from supernets.cpu import tune_malloc
from supernets.pretrained.verify import OFA_REFERENCE_ARGS
from supernets.space import SearchSpace

# Our supernets and the reference code's class and arguments for the same space (OFA's ``networks`` module).
OFA_REFERENCE = OFA_REFERENCE_ARGS


class Elastic(NamedTuple):
    """What the benchmark needs of an elastic model, whichever code implements it."""

    model: nn.Module
    space: SearchSpace
    activate: Callable[[Arch], None]
    extract: Callable[[], nn.Module]


def oncenas_model(supernet: str) -> Elastic:
    model = create_supernet(supernet)
    return Elastic(model, model.space, model.set_active_subnet, model.get_active_subnet)


def ofa_networks(supernet: str) -> ModuleType:
    """The reference code's elastic networks module, or a SystemExit saying how to get it."""
    if supernet not in OFA_REFERENCE:
        raise SystemExit(f"impl=[ofa]: the reference code has no counterpart of {supernet!r}; "
                         f"choose one of {sorted(OFA_REFERENCE)}")
    try:
        from ofa.imagenet_classification.elastic_nn import networks
    except ImportError as e:
        raise SystemExit("impl=[ofa] measures MIT's once-for-all reference code; install it with "
                         "`pip install ofa --no-deps`") from e
    return networks


def ofa_model(supernet: str) -> Elastic:
    """The reference code's supernet for ``supernet``'s space (1000 classes, no dropout: the same as ours)."""
    cls, kwargs = OFA_REFERENCE[supernet]
    model = getattr(ofa_networks(supernet), cls)(n_classes=1000, dropout_rate=0.0, **kwargs)

    def activate(arch: Arch) -> None:
        genes = arch.to_ofa_dict()
        genes.pop("r")  # the input size is the benchmark's resolution
        model.set_active_subnet(**genes)

    return Elastic(model, create_supernet(supernet).space, activate,
                   lambda: model.get_active_subnet(preserve_weight=True))


IMPLS = {"oncenas": oncenas_model, "ofa": ofa_model}


def mid_arch(space: SearchSpace) -> Arch:
    """Every gene at its middle choice."""
    return space.decode(((space.n_choices - 1) // 2)[None, :])[0]


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    return step


def infer(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def interleaved_medians(a: Callable[[], None], b: Callable[[], None], repeats: int, warmup: int = 2,
                        inner: int = 1) -> tuple[float, float, float, float]:
    """Median wall and process-CPU seconds per call of ``a`` and ``b`` (``wall_a, wall_b, cpu_a, cpu_b``),
    alternating which goes first each round. CPU time leaves out waiting for a core on a shared machine."""
    for _ in range(warmup):
        a()
        b()
    wa, wb, ca, cb = [], [], [], []
    for i in range(repeats):
        order = ((a, wa, ca), (b, wb, cb)) if i % 2 == 0 else ((b, wb, cb), (a, wa, ca))
        for fn, wall, cpu in order:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(inner):
                fn()
            wall.append((time.perf_counter() - t0) / inner)
            cpu.append((time.process_time() - c0) / inner)
    return statistics.median(wa), statistics.median(wb), statistics.median(ca), statistics.median(cb)


def measure(args: SimpleNamespace) -> dict[str, dict[str, float]]:
    """One process's measurement: per arch, wall and CPU medians of both models and their ratios."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.default_malloc:
        tune_malloc()  # as train.py does: without it both models pay page faults that swamp the difference
    torch.manual_seed(0)
    memory_format = torch.contiguous_format if args.no_channels_last else torch.channels_last
    elastic = IMPLS[args.impl[0]](args.supernet)  # the driver passes one
    model = elastic.model.to(memory_format=memory_format)
    in_chans = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    n_classes = next(m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)).out_features
    x = torch.randn(args.batch, in_chans, args.resolution, args.resolution).to(memory_format=memory_format)
    y = torch.randint(0, n_classes, (args.batch,))
    x1 = x[:1].clone().to(memory_format=memory_format)
    out = {}
    space = elastic.space
    for label, arch in (("min", space.min_arch()), ("mid", mid_arch(space)), ("max", space.max_arch())):
        elastic.activate(arch)
        static = elastic.extract().to(memory_format=memory_format)
        model.train()
        static.train()
        ts, tt, cts, ctt = interleaved_medians(train_step(model, x, y), train_step(static, x, y), args.repeats)
        model.eval()
        static.eval()
        es, et, ces, cet = interleaved_medians(infer(model, x1), infer(static, x1), args.infer_repeats, warmup=5,
                                               inner=5)
        out[label] = {"train_super_ms": ts * 1e3, "train_static_ms": tt * 1e3, "train": ts / tt, "train_cpu": cts / ctt,
                      "eval_super_ms": es * 1e3, "eval_static_ms": et * 1e3, "eval": es / et, "eval_cpu": ces / cet}
    return out


def _print_rows(rows: dict[str, dict[str, float]]) -> None:
    print(f"{'arch':<5} {'train super ms':>14} {'static ms':>10} {'ratio':>6} {'cpu ratio':>9}   "
          f"{'b1 eval super ms':>16} {'static ms':>10} {'ratio':>6} {'cpu ratio':>9}")
    for label, r in rows.items():
        print(f"{label:<5} {r['train_super_ms']:14.1f} {r['train_static_ms']:10.1f} {r['train']:6.3f} "
              f"{r['train_cpu']:9.3f}   {r['eval_super_ms']:16.2f} {r['eval_static_ms']:10.2f} {r['eval']:6.3f} "
              f"{r['eval_cpu']:9.3f}")


def _args(cfg: DictConfig) -> SimpleNamespace:
    """The options, each checked by name (``impl`` as a list)."""
    from supernets.config_checks import ConfigError, check_int

    if cfg.supernet not in list_supernets():
        raise ConfigError(f"supernet={cfg.supernet!r} is not a registered supernet; choose one of {list_supernets()}")
    impl = [cfg.impl] if isinstance(cfg.impl, str) else list(cfg.impl)
    if not impl or not set(impl) <= set(IMPLS):
        raise ConfigError(f"impl must list some of {sorted(IMPLS)} (e.g. impl=[oncenas,ofa]), got {impl}")
    for key in ("default_malloc", "no_channels_last", "json"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    ints = {k: check_int(k, cfg[k], min=1) for k in ("batch", "resolution", "repeats", "infer_repeats", "processes")}
    return SimpleNamespace(supernet=cfg.supernet, impl=impl, default_malloc=cfg.default_malloc,
                           no_channels_last=cfg.no_channels_last, json=cfg.json,
                           threads=check_int("threads", cfg.threads, min=1, allow_none=True), **ints)


def _child_command(args: SimpleNamespace, impl: str) -> list[str]:
    """This script measuring ``impl`` in a fresh process with the driver's options, printing its rows as JSON."""
    keys = ("supernet", "batch", "resolution", "repeats", "infer_repeats", "threads", "default_malloc",
            "no_channels_last")
    # (null/true/false spelled for Hydra; not a dict lookup: 1 == True would read threads=1 as true)
    over = [f"{k}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}"
            for k, v in ((k, getattr(args, k)) for k in keys)]
    return [sys.executable, __file__, *over, "json=true", f"impl=[{impl}]"]


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="bench_elastic")
def main(cfg: DictConfig) -> None:
    args = _args(cfg)
    if args.json:
        print(json.dumps(measure(args)))
        return
    impls = list(dict.fromkeys(args.impl))
    if "ofa" in impls:
        ofa_networks(args.supernet)  # fail here, with its message, rather than in a child process
    print(f"{args.supernet}: batch {args.batch}, {args.resolution} px, threads {args.threads or torch.get_num_threads()}, "
          f"{'NCHW' if args.no_channels_last else 'channels_last'}; per process: medians of {args.repeats} interleaved "
          f"training steps and {args.infer_repeats} batch-1 inferences; {args.processes} fresh processes per code")
    # Where the allocator happens to place the big activation and gradient buffers persists through a process
    # and moves some elementwise kernels by up to 2-5x (cache/4K aliasing): it biases one model or the other for
    # a whole process, so interleaving within a process cannot cancel it. Fresh processes resample it.
    # A child gets the driver's options and its own impl (processes is unused there).
    runs: dict[str, list[dict[str, dict[str, float]]]] = {impl: [] for impl in impls}
    for i in range(args.processes):
        for impl in impls:
            res = subprocess.run(_child_command(args, impl), capture_output=True, text=True)
            if res.returncode:
                raise SystemExit(f"{impl}: measuring process {i + 1} failed:\n{res.stderr}")
            runs[impl].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"\n{impl}: process {i + 1}/{args.processes}")
            _print_rows(runs[impl][-1])
    for impl, rows in runs.items():
        med = {label: {k: statistics.median(r[label][k] for r in rows) for k in rows[0][label]} for label in rows[0]}
        print(f"\n{impl}: median over {args.processes} processes")
        _print_rows(med)
        worst = {k: max(r[k] for r in med.values()) for k in ("train", "train_cpu", "eval", "eval_cpu")}
        print(f"{impl} train step ratio (supernet / static): max {worst['train']:.3f} wall, {worst['train_cpu']:.3f} "
              f"CPU (target <= 1.03)")
        print(f"{impl} batch-1 eval ratio (supernet / static): max {worst['eval']:.3f} wall, {worst['eval_cpu']:.3f} "
              f"CPU (target <= 1.05)")


if __name__ == "__main__":
    main()
