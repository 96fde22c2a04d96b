"""Build an accuracy dataset from a trained supernet (resumable, shardable).

    python scripts/build_accuracy_dataset.py ckpt=outputs/train/.../checkpoints/last.ckpt n=300
    python scripts/build_accuracy_dataset.py ckpt=... n=3000 shard=0/4 out=acc.csv   # one process per shard
    python scripts/build_accuracy_dataset.py ckpt=... n=3000 merge=true out=acc.csv   # join the shards
    python scripts/build_accuracy_dataset.py ckpt=... n=300 jobs=2      # shards in 2 local processes, merged

Rerunning the same command after an interruption continues where it stopped.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf

from predictors.accuracy.builder import build_from_checkpoint, default_out, merge_shards, parse_shard, shard_path
from predictors.accuracy.dataset import meta_path, read_dataset
from predictors.accuracy.workers import die_with_parent


def check_options(cfg: DictConfig) -> None:
    """Every option by name, before the checkpoint loads (``limit=-3`` or ``jobs=0`` used to run on)."""
    import torch

    from supernets.config_checks import ConfigError, check_int, reject_comma

    check_int("n", cfg.n, min=1)
    check_int("seed", cfg.seed, min=0)
    check_int("jobs", cfg.jobs, min=1, allow_none=True)
    check_int("limit", cfg.limit, min=1, allow_none=True)
    check_int("calib_batches", cfg.calib_batches, min=0)
    check_int("eval_batches", cfg.eval_batches, min=1, allow_none=True)
    check_int("batch_size", cfg.batch_size, min=1, allow_none=True)
    check_int("threads", cfg.threads, min=1, allow_none=True)
    if cfg.out:
        reject_comma("out", cfg.out)
    try:
        torch.device(str(cfg.device))
    except RuntimeError:
        raise ConfigError(f"device={cfg.device!r} is not a torch device; use cpu, cuda or cuda:<i>") from None


def run(cfg: DictConfig) -> Path:
    check_options(cfg)
    if cfg.merge:
        if not cfg.out:
            raise ValueError("merge=true needs out=<dataset.csv> (the path the shards were written beside)")
        k = parse_shard(cfg.shard)[1] if str(cfg.shard) != "0/1" else None
        path = merge_shards(cfg.out, k=k)
        print(f"merged into {path}")
    elif (jobs := _jobs(cfg)) > 1:
        path = _build_parallel(cfg, jobs)
    else:
        path = _build(cfg, cfg.out, cfg.shard, progress=True)
    ds = read_dataset(path)
    planned = (ds.meta.get("plan") or {}).get("n")
    print(f"{path}: {len(ds)} archs (plan: {planned} over all shards), top1 {ds.top1.min():.4f}..{ds.top1.max():.4f} "
          f"(mean {ds.top1.mean():.4f})")
    return path


def _jobs(cfg: DictConfig) -> int:
    """Local shard processes: ``jobs`` as given, or one per available core (at most 8) when null."""
    if str(cfg.shard) != "0/1":
        return 1  # an explicit shard runs alone
    if cfg.jobs is not None:
        return max(1, int(cfg.jobs))
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _build(cfg: DictConfig, out: str | Path | None, shard: str, *, progress: bool) -> Path:
    return build_from_checkpoint(cfg.ckpt, out, n=cfg.n, seed=cfg.seed, shard=shard,
                                 calib_batches=cfg.calib_batches, eval_batches=cfg.eval_batches,
                                 batch_size=cfg.batch_size, device=cfg.device, limit=cfg.limit,
                                 threads=cfg.threads, channels_last=cfg.channels_last, progress=progress)


def _build_job(cfg: dict, out: Path, shard: str, progress: bool) -> Path:
    return _build(OmegaConf.create(cfg), out, shard, progress=progress)


def _build_parallel(cfg: DictConfig, jobs: int) -> Path:
    """Evaluate shards ``i/jobs`` in ``jobs`` spawned processes (each resumable), then merge them into ``out``.
    Independent processes use the cores better than intra-op threads on these small subnets."""
    out = Path(cfg.out) if cfg.out else default_out(cfg.ckpt, cfg.n, cfg.seed)
    if out.exists():
        meta = yaml.safe_load(meta_path(out).read_text()) if meta_path(out).is_file() else None
        if (meta or {}).get("merged_from"):
            print(f"{out} exists (a finished, merged build): nothing to do; pass another out= for a new dataset")
            return out
        print(f"{out} holds a build started in one process (jobs=1): continuing it in this process")
        return _build(cfg, out, "0/1", progress=True)
    print(f"evaluating {cfg.n} archs in {jobs} processes (shards i/{jobs}; a rerun resumes each)", flush=True)
    # workers die with this process: orphans would keep writing the shards the rerun resumes
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        plain = OmegaConf.to_container(cfg, resolve=True)
        futures = [pool.submit(_build_job, plain, out, f"{i}/{jobs}", i == 0) for i in range(jobs)]
        for fut in futures:
            fut.result()
    if cfg.limit is not None:
        return shard_path(out, (0, jobs))  # time-boxed: shards stay unmerged
    merged = merge_shards(out, k=jobs)
    print(f"merged {jobs} shards into {merged}")
    return merged


# configs/scripts/: a folder without config groups, so that `device=cpu` sets this script's torch device instead
# of selecting a latency device from configs/device/ ("Could not override 'device'")
@hydra.main(version_base="1.3", config_path="../configs/scripts", config_name="build_accuracy_dataset")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
