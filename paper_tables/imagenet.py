"""Table 6, ``ofa_imagenet`` / ``ofa_resnet_imagenet``: the full ImageNet recipes.

Where ``data_root`` points at ImageNet (``train/`` and ``val/`` class folders) the table runs the recipe,
``python train.py experiment=<experiment> data.root=<root> <train_overrides>``, and reports the trained
supernet's max/mid/min subnets. Elsewhere it says what the run needs (data, GPUs, expected GPU-hours) and
shows the published schedule read from the experiment's own config files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paper_tables.common import Column, TableResult, new_figure, save_figure

__all__ = ["build", "expected_gpu_hours", "experiment_schedule"]

IMAGENET_TRAIN_IMAGES = 1_281_167


def experiment_schedule(experiment: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(the composed supernet config of ``train.py experiment=<experiment>``, its schedule, its group choices),
    composed by Hydra as ``train.py`` would."""
    from hydra import compose
    from omegaconf import OmegaConf

    from supernets.compose import group_options, hydra_on

    if experiment not in group_options("experiment"):
        raise ValueError(f"no experiment {experiment!r}; experiments: {group_options('experiment')}")
    with hydra_on():
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    choices = {str(k): str(v) for k, v in cfg.hydra.runtime.choices.items() if not str(k).startswith("hydra")}
    return (OmegaConf.to_container(cfg.supernet, resolve=True), OmegaConf.to_container(cfg.schedule, resolve=True),
            choices)


def _passes(phase: dict[str, Any]) -> int:
    """Forward-backward passes of the student per training image in a phase (teacher forwards not counted)."""
    s = dict(phase.get("sampler") or {})
    if str(s.get("_target_", "")).rsplit(".", 1)[-1] == "SandwichSampler":
        return 2 + int(s.get("n_random", 2))
    return int(s.get("n_subnets", 1))


def expected_gpu_hours(sched: dict[str, Any], images_per_gpu_s: float, kd_forward_cost: float) -> list[dict[str, Any]]:
    """Per phase: epochs, subnets per step and the GPU-hours at ``images_per_gpu_s`` training images per second
    per subnet pass (plus ``kd_forward_cost`` of a pass for the teacher's forward when the phase distils)."""
    defaults = dict(sched.get("phase_defaults") or {})
    rows = []
    for ph in sched["phases"]:
        p = {**defaults, **ph}
        passes = _passes(p)
        kd = str(p.get("distill", "none")) == "teacher"
        cost = passes + (kd_forward_cost if kd else 0.0)
        hours = float(p["epochs"]) * IMAGENET_TRAIN_IMAGES * cost / images_per_gpu_s / 3600.0
        rows.append({"phase": p["name"], "epochs": p["epochs"], "lr": p.get("lr"), "subnets_per_step": passes,
                     "distill": p.get("distill", "none"), "choices": str(p.get("choices", "max")).replace("'", ""),
                     "gpu_hours": hours})
    return rows


def _is_imagenet(root: str | None) -> bool:
    return bool(root) and (Path(root) / "train").is_dir() and (Path(root) / "val").is_dir()


def build(cfg: dict[str, Any], out_dir: Path) -> TableResult:
    """The recipe's table (``cfg``: configs/reproduce/table/ofa_imagenet.yaml or ofa_resnet_imagenet.yaml)."""
    experiment = str(cfg["experiment"])
    _, sched, groups = experiment_schedule(experiment)
    phases = expected_gpu_hours(sched, float(cfg["images_per_gpu_s"]), float(cfg.get("kd_forward_cost", 0.33)))
    total_epochs = sum(float(p["epochs"]) for p in phases)
    total_hours = sum(p["gpu_hours"] for p in phases)
    root = cfg.get("data_root")
    name = str(cfg["name"])
    title = f"Table 6: {experiment} on ImageNet (`experiment={experiment}`)"
    if _is_imagenet(root):
        from paper_tables.common import run_train
        from paper_tables.small_scale_training import evaluate_checkpoint

        run = Path(out_dir) / "train"
        run.mkdir(parents=True, exist_ok=True)
        ov = [f"experiment={experiment}", f"data.root={root}", *[str(o) for o in cfg.get("train_overrides", [])]]
        secs = run_train(ov, run, run / "train.log")
        acc = evaluate_checkpoint(run / "checkpoints" / "last.ckpt", calib_batches=int(cfg.get("calib_batches", 20)))
        rows = [{"subnet": k, "top1": v, "train_s": secs} for k, v in acc.items()]
        cols = [Column("subnet", "subnet"), Column("top1", "ImageNet top-1 (%)", "pct2"), Column("train_s", "wall s", ".0f")]
        return TableResult(name, title, cols, rows, [f"command: python train.py {' '.join(ov)}"])

    train_ov = " ".join(str(o) for o in cfg.get("train_overrides", []))
    needs = (f"Not run here: `data_root` is {root!r}, not an ImageNet folder with train/ and val/ class folders. "
             f"To run: `python scripts/reproduce.py table={name} table.data_root=/path/to/imagenet` (it calls "
             f"`python train.py experiment={experiment} data.root=<root> {train_ov}` with the schedule below; "
             f"start it on every node through your cluster's launcher, e.g. srun, which Lightning detects).")
    gpu = (f"Needs: ImageNet-1k (1.28 M training images), {cfg['gpus']}; schedule {groups.get('schedule')} "
           f"({total_epochs:g} epochs over {len(phases)} phases, supernet {groups.get('supernet')}). Expected "
           f"{total_hours:,.0f} GPU-hours at {cfg['images_per_gpu_s']} training images/s per GPU per subnet pass "
           f"({cfg['throughput_source']}); {cfg.get('reference', '')}".rstrip("; "))
    notes = [needs, gpu, "Teacher forwards counted as a fraction "
             f"{cfg.get('kd_forward_cost', 0.33)} of a subnet pass in phases that distil from the full network."]
    cols = [Column("phase", "phase"), Column("epochs", "epochs"), Column("lr", "lr (global batch 2048)"),
            Column("subnets_per_step", "subnets / step"), Column("distill", "distillation"),
            Column("choices", "elastic genes"), Column("gpu_hours", "expected GPU-hours", ",.0f")]

    def plot(path: Path) -> None:
        fig, ax = new_figure(figsize=(6.5, 3.8))
        ax.bar([p["phase"] for p in phases], [p["gpu_hours"] for p in phases], color="C0")
        ax.set_ylabel("expected GPU-hours")
        ax.set_title(f"{experiment}: published schedule, {total_epochs:g} epochs, ~{total_hours:,.0f} GPU-h", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(alpha=0.3, axis="y")
        save_figure(fig, path)

    return TableResult(name, title, cols, phases, notes, plot,
                       summary={"ran": False, "total_epochs": total_epochs, "gpu_hours": total_hours})
