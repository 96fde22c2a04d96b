"""Real top-1 of subnets as an :class:`~predictors.base.ArchModel`: searches with measured accuracies.

:class:`MeasuredAccuracy` answers ``predict`` by evaluating each subnet of a trained supernet the way the accuracy
builder does (:func:`predictors.accuracy.builder.evaluate_arch`: BN recalibrated on cached training batches, top-1
on the cached held-out split). Every measurement is appended to a resumable CSV (the builder's
:class:`~predictors.accuracy.builder.ResumableCSV`, flushed and fsynced per row), so a killed run, a resumed search
or another search on the same checkpoint and data never measures an arch twice. ``n_measured`` counts the subnets
evaluated for real by this object (cache hits excluded).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from predictors.base import ArchModel
from supernets.space import SearchSpace

__all__ = ["MeasuredAccuracy", "measured_from_checkpoint"]


class MeasuredAccuracy(ArchModel):
    """Top-1 (fraction) of subnets measured on held-out data; one real evaluation per distinct arch.

    Args:
        supernet: a trained supernet (``space``, ``set_active_subnet``).
        calib: BN-recalibration batches, ``[(x, y), ...]`` (``builder.cache_batches``).
        eval_batches: held-out batches with labels.
        cache: CSV of measured archs (read back on start, appended per arch); ``None`` keeps them in memory only.
        threads: torch threads while evaluating (1 is fastest on a shared small host).
        path: what identifies the weights (the checkpoint path), for run fingerprints.
    """

    target = "top1"

    def __init__(self, supernet: Any, calib: list, eval_batches: list, *, cache: str | os.PathLike | None = None,
                 threads: int | None = 1, path: str | None = None, supernet_name: str | None = None,
                 device: str = "cpu") -> None:
        super().__init__(supernet.space, supernet=supernet_name or getattr(supernet, "name", None))
        self.net = supernet
        self.calib = calib
        self.eval_batches = eval_batches
        self.threads = threads
        self.device = device
        self.path = path
        self.n_measured = 0
        self.values: dict[str, float] = {}
        self._sink = None
        self.cache = None if cache is None else Path(cache)
        if self.cache is not None:
            from predictors.accuracy.builder import ResumableCSV

            self._sink = ResumableCSV(self.cache, self.space)  # recovers a torn last line
            with open(self.cache, newline="") as f:
                for row in csv.DictReader(f):
                    self.values[str(self.space.parse(row["arch"]))] = float(row["top1"])

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        from predictors.accuracy.builder import evaluate_arch
        from predictors.accuracy.models import torch_threads

        archs = self.space.decode(np.asarray(encoded, dtype=np.int64))
        out = np.empty(len(archs))
        with torch_threads(self.threads):
            for i, arch in enumerate(archs):
                key = str(arch)
                v = self.values.get(key)
                if v is None:
                    v = float(evaluate_arch(self.net, arch, self.calib, self.eval_batches, device=self.device))
                    self.values[key] = v
                    self.n_measured += 1
                    if self._sink is not None:
                        self._sink.append(arch, v, float("nan"), float("nan"))
                out[i] = v
        return out

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None


def measured_from_checkpoint(ckpt: str | os.PathLike, *, calib_batches: int = 4, eval_batches: int | None = None,
                             cache: str | os.PathLike | None = None, threads: int | None = 1,
                             channels_last: bool = True, space: SearchSpace | None = None,
                             data: Mapping[str, Any] | None = None, calib_seed: int = 0) -> MeasuredAccuracy:
    """A :class:`MeasuredAccuracy` on a ``train.py`` checkpoint and its own data module (the held-out split it was
    validated on; ``data`` overrides some of the checkpoint's data options, e.g. ``val_batch_size``). The BN
    calibration batches are drawn under ``calib_seed``: the same in every process."""
    import torch

    from predictors.accuracy.builder import cache_batches
    from supernets.checkpoints import load_supernet
    from supernets.data.modules import create_datamodule

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise ValueError(f"ckpt={ckpt}: no such checkpoint file (train one with `python train.py`)")
    supernet, meta = load_supernet(ckpt, map_location="cpu")
    if not meta.get("data"):
        raise ValueError(f"checkpoint {ckpt} records no data config; cannot rebuild its held-out split")
    dm = create_datamodule(**{**dict(meta["data"]), **dict(data or {})})
    dm.setup()
    if channels_last:
        supernet.to(memory_format=torch.channels_last)
    # the calibration batches are shuffled and augmented training images: drawn under a fixed seed, so every process
    # measures an arch the same way and a cache written by one run (or a resumed one) holds what this one would measure
    with torch.random.fork_rng():
        torch.manual_seed(int(calib_seed))
        calib = cache_batches(dm.train_dataloader(), calib_batches)
    model = MeasuredAccuracy(supernet, calib,
                             cache_batches(dm.val_dataloader(), eval_batches), cache=cache, threads=threads,
                             path=str(ckpt.resolve()), supernet_name=meta.get("supernet"))
    if space is not None and space.columns != model.space.columns:
        raise ValueError(f"ckpt={ckpt} holds a supernet of space {model.space.name!r}, not the configured "
                         f"{space.name!r}")
    return model
