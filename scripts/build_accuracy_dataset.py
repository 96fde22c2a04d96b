"""Build an accuracy dataset from a trained supernet (resumable, shardable).

    python scripts/build_accuracy_dataset.py ckpt=outputs/train/.../checkpoints/last.ckpt n=300
    python scripts/build_accuracy_dataset.py ckpt=... n=3000 shard=0/4 out=acc.csv   # one process per shard
    python scripts/build_accuracy_dataset.py ckpt=... n=3000 merge=true out=acc.csv   # join the shards

Rerunning the same command after an interruption continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from predictors.accuracy.builder import build_from_checkpoint, merge_shards, parse_shard
from predictors.accuracy.dataset import read_dataset
from supernets.paths import CONFIG_DIR


def run(cfg: DictConfig) -> Path:
    if cfg.merge:
        if not cfg.out:
            raise ValueError("merge=true needs out=<dataset.csv> (the path the shards were written beside)")
        k = parse_shard(cfg.shard)[1] if str(cfg.shard) != "0/1" else None
        path = merge_shards(cfg.out, k=k)
        print(f"merged into {path}")
    else:
        path = build_from_checkpoint(cfg.ckpt, cfg.out, n=cfg.n, seed=cfg.seed, shard=cfg.shard,
                                     calib_batches=cfg.calib_batches, eval_batches=cfg.eval_batches,
                                     batch_size=cfg.batch_size, device=cfg.device, limit=cfg.limit,
                                     threads=cfg.threads, channels_last=cfg.channels_last)
    ds = read_dataset(path)
    planned = (ds.meta.get("plan") or {}).get("n")
    print(f"{path}: {len(ds)} archs (plan: {planned} over all shards), top1 {ds.top1.min():.4f}..{ds.top1.max():.4f} "
          f"(mean {ds.top1.mean():.4f})")
    return path


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="build_accuracy_dataset")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
