"""Accuracy datasets from a trained supernet: sample archs, recalibrate BN per subnet, evaluate top-1.

* The arch plan is a pure function of ``(space, n, seed, macs function)``: the max and min archs, a uniform
  sample and a sample stratified over MACs (equal counts per MACs bin), de-duplicated. Every shard and every
  restart recomputes the same plan; shard ``i/k`` takes every ``k``-th arch starting at ``i``.
* Rows are appended to the CSV one at a time with flush + fsync, keyed by the arch string: a killed run
  restarts where it stopped (a half-written last line is cut off) and never repeats or loses a row.
* BN calibration and evaluation batches are read from the loaders once and cached in memory.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from predictors.accuracy.base import atomic_write_bytes
from predictors.accuracy.dataset import COLUMNS, AccuracyDataset, format_row, meta_path, read_dataset, write_dataset
from predictors.accuracy.models import torch_threads
from predictors.accuracy.spaces import space_from_dict, space_to_dict
from predictors.accuracy.workers import exclusive_writer
from supernets.bn import recalibrate_bn
from supernets.cpu import tune_malloc
from supernets.space import Arch, SearchSpace
from supernets.utils import resize_batch

__all__ = [
    "ResumableCSV",
    "build_accuracy_dataset",
    "build_from_checkpoint",
    "cache_batches",
    "default_out",
    "evaluate_arch",
    "merge_shards",
    "plan_archs",
    "shard_path",
]

MacsFn = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------- plan
def plan_archs(space: SearchSpace, n: int, seed: int, *, macs_fn: MacsFn | None = None,
               stratified_fraction: float = 0.5, n_bins: int = 10, pool_factor: int = 20) -> list[Arch]:
    """``n`` distinct archs: max, min, then uniform and MACs-stratified samples (deterministic in ``seed``).

    Stratification draws a pool of ``pool_factor * n`` archs whose genes are tilted towards small or large
    choices (one random tilt per arch), bins them into ``n_bins`` equal-width MACs bins between the min and max
    arch, and takes archs round-robin over bins, so both small and large subnets are covered (uniform gene
    sampling almost never reaches the top 40 % of the MACs range).
    """
    if n < 2:
        raise ValueError(f"n must be >= 2 (the max and min archs are always included), got {n}")
    total = space.count_with_resolutions()
    if n > total:  # otherwise sampling for distinct archs would never finish
        raise ValueError(f"n={n} archs asked for, but space {space.name!r} holds only {total} distinct archs "
                         f"(resolutions included); pass n <= {total}")
    rng = np.random.default_rng(seed)
    plan: dict[Arch, None] = {space.max_arch(): None, space.min_arch(): None}
    n_strat = round((n - 2) * stratified_fraction) if macs_fn is not None else 0
    n_unif = n - 2 - n_strat
    if n_strat:
        pool = _size_tilted_pool(space, rng, max(pool_factor * n_strat, n_bins))
        macs = np.asarray(macs_fn(pool), dtype=np.float64)
        ext = np.asarray(macs_fn(space.encode([space.min_arch(), space.max_arch()])), dtype=np.float64)
        edges = np.linspace(ext[0], ext[1], n_bins + 1)
        bins = np.clip(np.searchsorted(edges, macs, side="right") - 1, 0, n_bins - 1)
        queues = [list(rng.permutation(np.flatnonzero(bins == b))) for b in range(n_bins)]
        taken = 0
        while taken < n_strat and any(queues):
            for q in queues:
                if q and taken < n_strat:
                    a = space.decode(pool[q.pop()][None, :])[0]
                    if a not in plan:
                        plan[a] = None
                        taken += 1
    while len(plan) < n:
        for a in space.decode(space.sample_encoded(rng, max(n_unif, n - len(plan)))):
            if len(plan) < n:
                plan.setdefault(a, None)
    return list(plan)


def _size_tilted_pool(space: SearchSpace, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` encoded archs; arch ``i`` draws each gene index ``j`` of ``k`` with probability
    proportional to ``exp(tilt_i * j / (k - 1))``, ``tilt_i ~ U(-4, 4)`` (choices are ordered small to large)."""
    tilt = rng.uniform(-4.0, 4.0, size=n)
    cols = []
    for k in space.n_choices:
        pos = np.arange(k) / max(k - 1, 1)
        gumbel = rng.gumbel(size=(n, k))  # Gumbel-max: argmax(logits + G) samples the softmax
        cols.append(np.argmax(tilt[:, None] * pos[None, :] + gumbel, axis=1))
    return space.normalize(np.stack(cols, axis=1))


def shard_path(out: str | os.PathLike, shard: tuple[int, int]) -> Path:
    """``dataset.csv`` -> ``dataset.shard1of4.csv`` (the whole file when ``k == 1``)."""
    i, k = shard
    p = Path(out)
    return p if k == 1 else p.with_name(f"{p.stem}.shard{i}of{k}{p.suffix}")


def parse_shard(text: str | Sequence[int] | None) -> tuple[int, int]:
    """``"i/k"`` (0 <= i < k) -> ``(i, k)``."""
    if text is None:
        return 0, 1
    if isinstance(text, str):
        try:
            i, k = (int(v) for v in text.split("/"))
        except ValueError:
            raise ValueError(f"shard must look like 'i/k' (e.g. 0/4), got {text!r}") from None
    else:
        i, k = (int(v) for v in text)
    if not 0 <= i < k:
        raise ValueError(f"shard {i}/{k}: need 0 <= i < k")
    return i, k


# ------------------------------------------------------------------------------------ resumable CSV
class ResumableCSV:
    """Append-only CSV keyed by arch string; reopening it resumes (a torn last line is truncated)."""

    def __init__(self, path: str | os.PathLike, space: SearchSpace) -> None:
        self.path = Path(path)
        self.space = space
        self.done: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = exclusive_writer(self.path, "build")  # one writer per shard: two would interleave rows
        try:
            if self.path.exists() and self.path.stat().st_size > 0:
                self._recover()
            else:
                atomic_write_bytes(self.path, (",".join(COLUMNS) + "\n").encode())
            self._fh = open(self.path, "a", newline="")  # kept open across appends; closed by close()
        except BaseException:
            self._lock.release()
            raise

    def _recover(self) -> None:
        raw = self.path.read_bytes()
        if not raw.endswith(b"\n"):
            # killed mid-write: drop the partial line (its arch is simply evaluated again)
            cut = raw.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            raw = raw[:cut]
        text = raw.decode()
        header = text.split("\n", 1)[0]
        if header != ",".join(COLUMNS):
            raise ValueError(f"{self.path} exists but its header is {header!r}, not {','.join(COLUMNS)!r}; "
                             f"it is not an accuracy dataset being built; choose another out=")
        keep, dropped = [header], []
        for line, raw_row in enumerate(text.split("\n")[1:], start=2):
            if not raw_row:
                continue
            try:
                row = next(csv.DictReader(io.StringIO(header + "\n" + raw_row + "\n")))
                arch = str(self.space.parse(row["arch"]))
                if None in row or not np.isfinite(float(row["top1"])):
                    raise ValueError("wrong number of fields or a non-finite top1")
            except (ValueError, TypeError, StopIteration) as err:
                dropped.append(f"line {line}: corrupt ({err})")
                continue
            if arch in self.done:  # two writers (before the lock) evaluated it twice: the first row counts
                dropped.append(f"line {line}: {arch} again")
                continue
            self.done.add(arch)
            keep.append(raw_row)
        if dropped:  # repaired in place; the dropped archs are evaluated again if missing
            atomic_write_bytes(self.path, ("\n".join(keep) + "\n").encode())
            print(f"{self.path}: repaired, dropped {len(dropped)} rows ({'; '.join(dropped[:3])}"
                  f"{'; ...' if len(dropped) > 3 else ''})")

    def append(self, arch: Arch, top1: float, macs: float, params: float) -> None:
        key = str(arch)
        if key in self.done:
            raise ValueError(f"{key} is already in {self.path}")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(format_row(arch, top1, macs, params))
        self._fh.write(buf.getvalue())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done.add(key)

    def close(self) -> None:
        self._fh.close()
        self._lock.release()

    def __enter__(self) -> ResumableCSV:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------ evaluate
def cache_batches(loader: Iterable, n_batches: int | None) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The first ``n_batches`` batches (all when None) as tensors in memory, read once."""
    out = []
    for batch in loader:
        if n_batches is not None and len(out) >= n_batches:
            break
        if isinstance(batch, (list, tuple)):
            out.append((batch[0], batch[1] if len(batch) > 1 else None))
        else:
            out.append((batch, None))
    if not out:
        raise ValueError("the data loader yielded no batches")
    return out


@torch.no_grad()
def evaluate_arch(supernet: nn.Module, arch: Arch, calib: list, eval_batches: list, *,
                  device: str | torch.device = "cpu") -> float:
    """Top-1 (fraction) of ``arch`` on ``eval_batches`` after recalibrating BN on ``calib`` (inputs resized to
    ``arch.r``). The supernet's BN statistics are restored afterwards, so evaluations do not interact."""
    supernet.set_active_subnet(arch)
    saved = {k: v.clone() for k, v in supernet.state_dict().items() if "running_" in k or "num_batches" in k}
    try:
        recalibrate_bn(supernet, [x for x, _ in calib], n_batches=len(calib), transform=lambda x: resize_batch(x, arch.r))
        supernet.eval()
        correct = total = 0
        for x, y in eval_batches:
            if y is None:
                raise ValueError("evaluation batches need labels: (inputs, targets)")
            logits = supernet(resize_batch(x, arch.r).to(device))
            correct += int((logits.argmax(1).cpu() == y).sum())
            total += int(y.numel())
    finally:
        supernet.load_state_dict(saved, strict=False)
    return correct / max(total, 1)


# ------------------------------------------------------------------------------------------- build
def build_accuracy_dataset(supernet: nn.Module, calib_loader: Iterable, eval_loader: Iterable, out: str | os.PathLike,
                           *, n: int, seed: int = 0, shard: tuple[int, int] | str | None = None,
                           calib_batches: int = 10, eval_batches: int | None = None,
                           supernet_name: str | None = None, source: dict[str, Any] | None = None,
                           device: str | torch.device = "cpu", progress: bool = True,
                           limit: int | None = None, threads: int | None = None,
                           channels_last: bool = True) -> Path:
    """Evaluate this shard's part of the plan, appending rows to ``shard_path(out, shard)``; resumes.

    Args:
        supernet: a trained supernet (``.space``, ``set_active_subnet``; ``macs_params`` if available).
        calib_loader: training batches for BN recalibration (``calib_batches`` of them are cached once).
        eval_loader: the held-out split (``eval_batches`` of it, all when None, cached once).
        out: the dataset CSV; a shard writes ``<stem>.shard<i>of<k>.csv`` beside it.
        n: archs in the whole plan (all shards).
        limit: stop after this many new rows (for tests and time-boxed runs).
        threads: torch threads while evaluating (None: leave as is; 1 is fastest on a shared small host).
        channels_last: run the supernet in NHWC memory format (measured 1.6-2x faster for the tiny MobileNetV3
            on CPU; numerically equivalent up to float rounding).

    Returns:
        The path written.
    """
    i, k = parse_shard(shard)
    space: SearchSpace = supernet.space  # type: ignore[assignment]
    macs_fn = _macs_fn(supernet)
    path = shard_path(out, (i, k))
    plan_meta = {"format": "oncenas-accuracy-dataset/1", "supernet": supernet_name, "space": space_to_dict(space),
                 "plan": {"n": int(n), "seed": int(seed), "stratified_over": "macs" if macs_fn else None,
                          "calib_batches": int(calib_batches), "eval_batches": eval_batches},
                 "shard": f"{i}/{k}", **({"source": source} if source else {})}
    mp = meta_path(path)
    if mp.exists():
        old = yaml.safe_load(mp.read_text()) or {}
        ckpt_sha = (source or {}).get("ckpt_sha256")
        if ckpt_sha and (old.get("source") or {}).get("ckpt_sha256") != ckpt_sha:
            raise ValueError(f"{path} was built from another checkpoint ({(old.get('source') or {}).get('ckpt')}); "
                             f"nothing was changed: pass another out= to start a new dataset")
        for key in ("supernet", "space", "plan", "shard"):
            if old.get(key) != plan_meta[key]:
                raise ValueError(
                    f"{path} already holds a dataset built with another {key} ({old.get(key)!r} vs {plan_meta[key]!r}); "
                    f"nothing was changed: pass another out= to start a new dataset"
                )
        _check_same_data(path, (old.get("source") or {}).get("data"), (source or {}).get("data"))
    elif path.exists() and path.stat().st_size > 0:
        raise ValueError(f"{path} exists without its sidecar {mp.name}; refusing to append to an unknown file")
    plan = plan_archs(space, n, seed, macs_fn=macs_fn)[i::k]
    if channels_last:
        supernet.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    calib = cache_batches(calib_loader, calib_batches)
    evals = cache_batches(eval_loader, eval_batches)
    atomic_write_bytes(mp, yaml.safe_dump(plan_meta, sort_keys=False).encode())
    with ResumableCSV(path, space) as sink, torch_threads(threads):
        todo = [a for a in plan if str(a) not in sink.done]
        if limit is not None:
            todo = todo[:limit]
        if todo:
            macs = params = None
            if macs_fn is not None:
                macs, params = _macs_params(supernet, space.encode(todo))
            bar = _progress(todo, progress, f"shard {i}/{k}: {len(sink.done)} done, {len(todo)} to go")
            for j, arch in enumerate(bar):
                top1 = evaluate_arch(supernet, arch, calib, evals, device=device)
                m = float(macs[j]) if macs is not None else float("nan")
                q = float(params[j]) if params is not None else float("nan")
                sink.append(arch, top1, m, q)
    return path


def _check_same_data(path: Path, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    """Refuse to resume ``path`` with another data config: e.g. another ``batch_size`` changes how many images
    recalibrate BN, so the new rows would be measured differently from the rows already there."""
    if new is None or old == new:
        return
    old = old or {}
    diff = [f"{k}={old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]
    raise ValueError(f"{path} was built with other data settings ({'; '.join(diff)}), so resuming would mix rows "
                     f"measured two ways; nothing was changed: rerun with the settings recorded in its sidecar "
                     f"{meta_path(path).name} (e.g. the same batch_size=), or pass another out= to start a new dataset")


def _macs_fn(supernet: nn.Module) -> MacsFn | None:
    fn = getattr(supernet, "macs_params", None)
    if fn is None:
        return None
    return lambda enc: np.asarray(fn(enc)[0], dtype=np.float64)


def _macs_params(supernet: nn.Module, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, p = supernet.macs_params(encoded)  # type: ignore[operator]
    return np.asarray(m, dtype=np.float64), np.asarray(p, dtype=np.float64)


def _progress(items: list, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc)


# ------------------------------------------------------------------------------------------- merge
def merge_shards(out: str | os.PathLike, *, k: int | None = None) -> Path:
    """Join ``<stem>.shard*of<k>.csv`` into ``out`` (+ sidecar). Raises if shards disagree (space, plan),
    overlap with different values, or if ``out`` exists already; reports archs of the plan still missing."""
    out = Path(out)
    pattern = f"{out.stem}.shard*of{k if k else '*'}{out.suffix}"
    shards = sorted(out.parent.glob(pattern))
    if not shards:
        raise FileNotFoundError(f"no shards {out.parent / pattern} to merge")
    if out.exists():
        raise FileExistsError(f"{out} exists; move it away before merging (nothing was changed)")
    metas = [yaml.safe_load(meta_path(s).read_text()) for s in shards]
    ks = {m["shard"].split("/")[1] for m in metas}
    if len(ks) != 1 or any(m["space"] != metas[0]["space"] or m["plan"] != metas[0]["plan"] for m in metas):
        raise ValueError(f"shards {[s.name for s in shards]} come from different plans/spaces; merge one plan at a time")
    # the same archs measured from another checkpoint or with other data settings are other numbers
    for key in ("ckpt_sha256", "data"):
        got = [(m.get("source") or {}).get(key) for m in metas]
        if any(g != got[0] for g in got):
            raise ValueError(f"shards {[s.name for s in shards]} were measured with different source {key} "
                             f"({got}); merge the shards of one checkpoint and data config only")
    space = space_from_dict(metas[0]["space"])
    # a shard with no rows yet (header only) contributes nothing; read_dataset would call it an error
    parts = [read_dataset(s, space=space, dedupe=False) for s in shards if len(s.read_text().splitlines()) > 1]
    archs, top1, macs, params = [], [], [], []
    seen: dict[Arch, float] = {}
    for ds in parts:
        for a, t, m, q in zip(ds.archs, ds.top1, ds.macs, ds.params):
            if a in seen:
                if seen[a] != t:
                    raise ValueError(f"arch {a} appears in two shards with different top1 ({seen[a]} vs {t})")
                continue
            seen[a] = t
            archs.append(a)
            top1.append(t)
            macs.append(m)
            params.append(q)
    merged = AccuracyDataset(space, archs, np.array(top1), np.array(macs), np.array(params), metas[0]["supernet"])
    n_plan = int(metas[0]["plan"]["n"])
    n_shards = int(next(iter(ks)))
    meta = {k_: v for k_, v in metas[0].items() if k_ not in ("shard", "format", "supernet", "space", "n")}
    meta["merged_from"] = [s.name for s in shards]
    meta["complete"] = len(archs) == n_plan and len(shards) == n_shards
    write_dataset(merged, out, meta=meta)
    return out


# ------------------------------------------------------------------------------------- from a ckpt
def default_out(ckpt: str | os.PathLike, n: int, seed: int) -> Path:
    """``<run dir>/accuracy/<ckpt stem>_n<n>_seed<seed>.csv``: a fixed place, so rerunning a build resumes it."""
    ckpt = Path(ckpt)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run_dir / "accuracy" / f"{ckpt.stem}_n{n}_seed{seed}.csv"


def build_from_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike | None = None, *, n: int = 300,
                          seed: int = 0, shard: tuple[int, int] | str | None = None, calib_batches: int = 10,
                          eval_batches: int | None = None, batch_size: int | None = None,
                          device: str = "cpu", progress: bool = True, limit: int | None = None,
                          threads: int | None = None, channels_last: bool = True) -> Path:
    """Load a ``train.py`` checkpoint and its data module, then :func:`build_accuracy_dataset`.

    ``out`` defaults to ``<run dir>/accuracy/<ckpt stem>_n<n>_seed<seed>.csv`` next to the checkpoint, a fixed
    place so that rerunning the same command resumes.
    """
    from predictors.accuracy.dataset import file_sha256
    from supernets.checkpoints import load_supernet
    from supernets.data.modules import create_datamodule

    tune_malloc()
    ckpt = Path(ckpt)
    supernet, meta = load_supernet(ckpt, map_location=device)
    if not meta.get("data"):
        raise ValueError(f"checkpoint {ckpt} records no data config; cannot rebuild its held-out split")
    data_cfg = dict(meta["data"])  # the config actually used (recorded in the sidecar, checked on resume)
    if batch_size is not None:
        data_cfg["batch_size"] = int(batch_size)
        data_cfg["val_batch_size"] = int(batch_size)
    dm = create_datamodule(**data_cfg)
    dm.setup()
    if out is None:
        out = default_out(ckpt, n, seed)
    source = {"ckpt": str(ckpt.resolve()), "ckpt_sha256": file_sha256(ckpt), "phase": meta.get("phase"),
              "data": data_cfg, "eval_split": "val_dataloader (held out)", "calib_split": "train_dataloader"}
    return build_accuracy_dataset(supernet, dm.train_dataloader(), dm.val_dataloader(), out, n=n, seed=seed,
                                  shard=shard, calib_batches=calib_batches, eval_batches=eval_batches,
                                  supernet_name=meta.get("supernet"), source=source, device=device,
                                  progress=progress, limit=limit, threads=threads, channels_last=channels_last)
