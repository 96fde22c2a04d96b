"""Table 8, ``vit_training``: the CPU elastic ViT's largest / middle / smallest subnets under four samplers
(uniform, sandwich, ElasticViT's complexity-aware, SortedNet's sorted) against each subnet trained alone, at equal
epochs on CIFAR-10. The training and evaluation are Table 5's (:mod:`paper_tables.small_scale_training`): real
``python train.py`` runs, then the held-out top-1 of each role's subnet; this module sets every method's epochs,
adds the gap to from-scratch and its own title and notes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from paper_tables import small_scale_training
from paper_tables.common import Column, TableResult

__all__ = ["build"]


def build(cfg: dict[str, Any], out_dir: Path) -> TableResult:
    """Train and evaluate (``cfg``: configs/reproduce/table/vit_training.yaml)."""
    epochs = int(cfg["epochs"])
    methods = {}
    for name, spec in dict(cfg["methods"]).items():
        spec = dict(spec)
        if spec.get("fixed_subnet"):
            spec["epochs"] = epochs
        else:
            spec["overrides"] = [*spec.get("overrides", []), f"schedule.phases.0.epochs={epochs}"]
        methods[name] = spec
    res = small_scale_training.build({**cfg, "methods": methods}, out_dir)
    roles = tuple(cfg.get("roles", small_scale_training.ROLES))
    scratch = next((r for r in res.rows if r["method"] == "from_scratch"), None)
    for row in res.rows:
        for role in roles:
            if scratch is not None and row is not scratch and f"top1_{role}" in row and f"top1_{role}" in scratch:
                row[f"gap_{role}"] = 100 * (row[f"top1_{role}"] - scratch[f"top1_{role}"])
    gap_cols = [Column(f"gap_{r}", f"{r} vs scratch (pt)", "+.2f") for r in roles]
    columns = [*res.columns[: 1 + len(roles)], *gap_cols, *res.columns[1 + len(roles):]]
    data = "the 50k CIFAR-10 training set" if any("data=cifar10" == o for o in cfg.get("common_overrides", [])) \
        else "the bundled CIFAR-10 test archive (8k train / 2k held out)"
    notes = [res.notes[0],
             f"{epochs} epochs per method on {data} (trainer.limit_train_batches in the command caps an epoch), "
             "AdamW lr 1e-3 (warm-up 0.2 epoch, cosine), label smoothing 0.1; "
             "top-1 on the held-out images; one seed, so differences under ~1-2 points are noise.",
             "from_scratch: one training per subnet (its command shown without the pinned one-phase schedule); the "
             "others train one supernet for all three subnets. Wall times are contended (2 shared cores)."]
    return dataclasses.replace(res, name="vit_training", columns=columns, notes=notes,
                               title="Table 8: elastic ViT samplers vs training alone (vit_cifar_tiny, CIFAR-10)")
