"""Table 5, ``small_scale_training``: progressive shrinking vs the sandwich rule vs training each subnet
from scratch, on the bundled dataset and the tiny supernet (the shape of OFA's and BigNAS's tables).

Every training is the real command ``python train.py experiment=... <overrides>`` (run as a subprocess so
each has its own Hydra run and seed state). Afterwards every checkpoint is evaluated the same way: the
largest, middle and smallest subnet (``max`` / ``mid`` / ``min``: each gene at its largest, middle or smallest
choice), BN recalibrated on training batches, top-1 on the held-out split. ``from_scratch`` trains one
fixed subnet per role (a one-phase schedule whose choices pin every gene) for the same number of epochs as
the sandwich run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from paper_tables.common import Column, TableResult, new_figure, run_train, save_figure
from supernets.compose import override_value

__all__ = ["build", "evaluate_checkpoint", "role_choices"]

ROLES = ("max", "mid", "min")


def role_choices(space, role: str) -> dict[str, list]:
    """Sampler ``choices`` pinning every gene group of ``space`` to its largest / middle / smallest value."""
    out = {}
    for group in space.group_names:
        col = space.columns[space.group_slices[group].start]
        values = sorted(v for v in col.choices if v is not None)
        out[group] = [values[{"max": -1, "mid": len(values) // 2, "min": 0}[role]]]
    return out


def _role_arch(space, role: str):
    from supernets.training.samplers import RestrictedSpace

    return RestrictedSpace(space, role_choices(space, role)).max_arch()


@torch.no_grad()
def evaluate_checkpoint(ckpt: Path, roles: tuple[str, ...] = ROLES, *, calib_batches: int = 10,
                        max_val_batches: int | None = None) -> dict[str, float]:
    """Top-1 on the checkpoint's held-out split of each role's subnet after BN recalibration."""
    from supernets.bn import recalibrate_bn
    from supernets.checkpoints import load_supernet
    from supernets.data.modules import create_datamodule
    from supernets.utils import resize_batch

    net, meta = load_supernet(ckpt)
    dm = create_datamodule(**meta["data"])
    dm.setup("fit")
    out = {}
    for role in roles:
        arch = _role_arch(net.space, role)
        net.set_active_subnet(arch)
        recalibrate_bn(net, dm.train_dataloader(), calib_batches, transform=lambda x, r=arch.r: resize_batch(x, r))
        correct = total = 0
        for i, (x, y) in enumerate(dm.val_dataloader()):
            if max_val_batches is not None and i >= max_val_batches:
                break
            correct += int((net(resize_batch(x, arch.r)).argmax(-1) == y).sum())
            total += len(y)
        out[role] = correct / max(total, 1)
    return out


def build(cfg: dict[str, Any], out_dir: Path) -> TableResult:
    """Train and evaluate (``cfg``: configs/reproduce/table/small_scale_training.yaml)."""
    import supernets

    out_dir = Path(out_dir)
    common = [str(o) for o in cfg.get("common_overrides", [])]
    roles = tuple(cfg.get("roles", ROLES))
    ev = dict(cfg.get("eval") or {})
    space = supernets.create_supernet(str(cfg["supernet"])).space
    jobs: list[tuple[str, str | None, list[str]]] = []
    for method, spec in dict(cfg["methods"]).items():
        spec = dict(spec)
        ov = [*common, *[str(o) for o in spec.get("overrides", [])]]
        if spec.get("fixed_subnet"):
            for role in roles:
                phase = (f"[{{name: scratch_{role}, epochs: {int(spec['epochs'])}, lr: {float(spec.get('lr', 0.1))}, "
                         f"warmup_epochs: 0.2, distill: none, choices: {override_value(role_choices(space, role))}, "
                         "sampler: {_target_: supernets.training.samplers.UniformSampler, n_subnets: 1}}]")
                jobs.append((method, role, [*ov, f"schedule.phases={phase}"]))
        else:
            jobs.append((method, None, ov))
    rows: list[dict[str, Any]] = []
    for method, role, ov in jobs:
        run = out_dir / "train" / (method if role is None else f"{method}_{role}")
        run.mkdir(parents=True, exist_ok=True)
        secs = run_train(ov, run, run / "train.log")
        acc = evaluate_checkpoint(run / "checkpoints" / "last.ckpt", roles if role is None else (role,),
                                  calib_batches=int(ev.get("calib_batches", 10)), max_val_batches=ev.get("max_val_batches"))
        row = next((r for r in rows if r["method"] == method), None)
        if row is None:
            row = {"method": method, "train_s": 0.0, "runs": 0, "command": "python train.py " + " ".join(
                o for o in ov if not o.startswith("schedule.phases="))}
            rows.append(row)
        row["train_s"] += secs
        row["runs"] += 1
        for k, v in acc.items():
            row[f"top1_{k}"] = v
    columns = [Column("method", "method")] + [Column(f"top1_{r}", f"top-1 {r} (%)", "pct2") for r in roles]
    columns += [Column("runs", "trainings"), Column("train_s", "train wall s", ".0f"), Column("command", "command")]
    archs = {r: str(_role_arch(space, r)) for r in roles}
    notes = [f"Subnets: {', '.join(f'{r} = {a}' for r, a in archs.items())}.",
             f"Evaluation: BN recalibrated on {ev.get('calib_batches', 10)} training batches, top-1 on the held-out split "
             "of the bundled MNIST test set (8k train / 2k held-out); single seed, so differences under ~1 point are noise.",
             "from_scratch: one training per subnet (command shown without its pinned one-phase schedule); the others "
             "train one supernet for all subnets. Wall times are contended (2 shared cores)."]

    def plot(path: Path) -> None:
        import numpy as np

        fig, ax = new_figure(figsize=(6.5, 4))
        w = 0.8 / max(len(rows), 1)
        x = np.arange(len(roles))
        for k, r in enumerate(rows):
            ax.bar(x + k * w, [100 * (r.get(f"top1_{q}") or 0) for q in roles], w, label=r["method"])
        ax.set_xticks(x + w * (len(rows) - 1) / 2, roles)
        ax.set_ylabel("held-out top-1 (%)")
        lo = min((100 * r[f"top1_{q}"] for r in rows for q in roles if r.get(f"top1_{q}") is not None), default=0)
        ax.set_ylim(max(0, lo - 5), 100)
        ax.set_title(f"{cfg['supernet']} on the bundled data: subnets by training method", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        save_figure(fig, path)

    return TableResult("small_scale_training", "Table 5: small-scale supernet training (tiny supernet, bundled data)",
                       columns, rows, notes, plot)
