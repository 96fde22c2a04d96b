"""Time to predict 10,000 archs with each accuracy predictor, against a naive per-arch baseline.

    python scripts/bench_predictor.py [n=10000] [naive=1000] [repeats=7] [threads=1]

The baseline is what OFA's tutorial does per candidate: build one feature vector in Python from the arch's
OFA dict and run the torch MLP on it. It is timed on ``naive`` archs in this same run and scaled to ``n``
(per-arch cost is constant). The vectorised path builds one-hot features for the whole batch by fancy
indexing and runs numpy float32 matmuls. The speed-up compares like with like: both start from a list of
``Arch`` objects (the encoded column shows what is left once archs come pre-encoded). Timings on a shared
machine are contended: median of ``repeats``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from predictors import load_predictor
from predictors.accuracy import AccuracyPredictor, EnsemblePredictor, OFAMobileNetV3Predictor


def _median_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU milliseconds (CPU time is what an idle machine's wall time would be with one
    thread; on a contended host the wall time also counts the waits for a core)."""
    fn()  # warm-up (allocations, BLAS threads)
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def _naive_ofa(model: OFAMobileNetV3Predictor) -> Callable[[list], np.ndarray]:
    """OFA's per-arch loop: Python one-hot from the OFA dict, then a torch forward of one row."""
    sd = model.state()
    net = nn.Sequential(nn.Linear(128, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 400),
                        nn.ReLU(), nn.Linear(400, 1))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    net.eval()

    def feats(arch) -> torch.Tensor:
        cfg = arch.to_ofa_dict()
        ks, e = list(cfg["ks"]), list(cfg["e"])
        for s, d in enumerate(cfg["d"]):
            for j in range(s * 4 + d, s * 4 + 4):
                ks[j] = e[j] = 0
        f = [0.0] * 128
        for i in range(20):
            if ks[i]:
                f[3 * i + {3: 0, 5: 1, 7: 2}[ks[i]]] = 1.0
            if e[i]:
                f[60 + 3 * i + {3: 0, 4: 1, 6: 2}[e[i]]] = 1.0
        f[120 + (cfg["r"] - 112) // 16] = 1.0
        return torch.tensor(f)

    @torch.no_grad()
    def run(archs: list) -> np.ndarray:
        return np.array([float(net(feats(a)[None, :])[0, 0]) for a in archs])

    return run


def _naive_generic(model: AccuracyPredictor) -> Callable[[list], np.ndarray]:
    """The same model called once per arch (each call validates, encodes and predicts one row)."""
    return lambda archs: np.array([model.predict([a])[0] for a in archs])


@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="bench_predictor")
def main(cfg: DictConfig) -> list[dict[str, float | str]]:
    """Print the timings; returns one row per predictor (``naive_ms / arch_ms`` is its ``speed_up``)."""
    from supernets.config_checks import ConfigError, check_int

    args = SimpleNamespace(**{k: check_int(k, cfg[k], min=1) for k in ("n", "naive", "repeats")})
    if check_int("threads", cfg.threads) < 0:
        raise ConfigError(f"threads must be 0 (library default) or a positive count, got {cfg.threads}")
    args.threads = int(cfg.threads)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    models: list[tuple[str, AccuracyPredictor]] = []
    for name in ("ofa_pretrained", "ofa_resnet50_pretrained", "ofa_mbv3_w10_imagenet"):
        t = time.perf_counter()
        m = load_predictor(name)
        print(f"load_predictor({name!r}): {(time.perf_counter() - t) * 1e3:.1f} ms")
        models.append((name, m))
        if isinstance(m, EnsemblePredictor):
            models.append((f"{name} (one MLP member)", m.members[0]))
    for name, model in models:
        archs = model.space.sample(rng, args.n)
        enc = model.space.encode(archs)
        if model.metadata.get("training_set"):
            archs = [model.space.with_resolution(a, 224) for a in archs]  # the resolution it was trained at
            enc = model.space.encode(archs)
        naive = _naive_ofa(model) if isinstance(model, OFAMobileNetV3Predictor) else _naive_generic(model)
        sub = archs[: args.naive]
        np.testing.assert_allclose(naive(sub[:50]), model.predict(sub[:50]), atol=1e-5)  # same numbers
        t = time.perf_counter()
        naive(sub)
        naive_ms = (time.perf_counter() - t) * 1e3 * args.n / len(sub)
        enc_ms, enc_cpu = _median_ms(partial(model.predict, enc), args.repeats)
        arch_ms, _ = _median_ms(partial(model.predict, archs), args.repeats)
        # like with like: the naive loop starts from Arch objects (and encodes them), so does the Arch-list path
        rows.append({"predictor": name, "encoded_ms": enc_ms, "encoded_cpu_ms": enc_cpu, "arch_ms": arch_ms,
                     "naive_ms": naive_ms, "speed_up": naive_ms / arch_ms})
    timed = min(args.naive, args.n)  # the naive loop runs over the first `naive` of the `n` archs
    how = f"all {args.n} timed" if timed == args.n else f"timed on {timed} archs and scaled to {args.n}"
    print(f"\npredict {args.n} archs, BLAS threads={args.threads or 'default'} (median of {args.repeats}; "
          f"naive per-arch {how})")
    print(f"{'predictor':42s} {'encoded wall ms':>15s} {'(cpu ms)':>9s} {'Arch list ms':>13s} {'naive ms':>9s} "
          f"{'speed-up (naive / Arch list)':>29s}")
    for r in rows:
        print(f"{r['predictor']:42s} {r['encoded_ms']:15.1f} {r['encoded_cpu_ms']:9.1f} {r['arch_ms']:13.1f} "
              f"{r['naive_ms']:9.0f} {r['speed_up']:28.0f}x")
    return rows


if __name__ == "__main__":
    main()
