"""Distributed training on CPU: two gloo processes sample the same subnets at every step and stay in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from supernets.paths import REPO_ROOT
from tests.training_utils import tiny_overrides


def test_two_cpu_processes_train_the_same_sandwich_subnets_and_end_with_identical_weights(tmp_path):
    trace = tmp_path / "trace"
    overrides = [o for o in tiny_overrides(tmp_path / "run", max_steps=3, batches=4, batch_size=4)
                 if not o.startswith(("trainer=", "callbacks="))]
    cmd = [sys.executable, str(REPO_ROOT / "train.py"), "experiment=tiny_sandwich", *overrides, "trainer=ddp",
           "callbacks=none", f"+callbacks.trace={{_target_: supernets.training.callbacks.SubnetTrace, dirpath: {trace}}}",
           f"hydra.run.dir={tmp_path / 'hydra'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [[json.loads(line) for line in (trace / f"subnets_rank{r}.jsonl").read_text().splitlines()]
             for r in (0, 1)]
    steps = [[rec["archs"] for rec in lines if "archs" in rec] for lines in ranks]
    assert len(steps[0]) == 3 and steps[0] == steps[1]
    assert all(len(archs) == 4 for archs in steps[0])  # max + min + 2 random
    assert len({a for archs in steps[0] for a in archs[2:]}) > 1  # random subnets vary
    digests = [lines[-1]["weights"] for lines in ranks]
    assert digests[0] == digests[1]
