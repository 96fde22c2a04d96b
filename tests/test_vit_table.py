"""Table 8 (vit_training): the samplers' supernets and the from-scratch subnets train and are scored against each
other (the full table is `python scripts/reproduce.py table=vit_training`)."""

from __future__ import annotations

import pandas as pd
import pytest

from paper_tables import run_table
from paper_tables.runner import table_config


@pytest.mark.slow
def test_vit_training_table_scores_each_sampler_against_training_alone(tmp_path):
    tiny = ["experiment=vit_cifar", "data=synthetic", "data.batch_size=8", "data.val_batch_size=8",
            "data.n_train=16", "data.n_val=8", "data.image_size=32", "data.in_chans=3",
            "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "eval.calib_batches=1", "logger=none",
            "callbacks.progress_bar=null", "callbacks.lr_monitor=null", "trainer.enable_progress_bar=false",
            "eval.n_random=0"]
    cfg = table_config("vit_training", {"common_overrides": tiny, "roles": ["min"], "epochs": 1,
                                        "eval": {"calib_batches": 1, "max_val_batches": 1}})
    cfg["methods"] = {k: v for k, v in cfg["methods"].items() if k in ("complexity_aware", "from_scratch")}
    res = run_table("vit_training", cfg, tmp_path, echo=lambda s: None)
    df = pd.read_csv(res["files"]["csv"])
    assert list(df["method"]) == ["complexity_aware", "from_scratch"]
    row = df.set_index("method").loc["complexity_aware"]
    assert row["gap_min"] == pytest.approx(100 * (row["top1_min"] - df.set_index("method").loc["from_scratch", "top1_min"]))
    assert "schedule=complexity_tiny" in row["command"] and "schedule.phases.0.epochs=1" in row["command"]
