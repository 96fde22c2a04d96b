"""Check converted OFA weights against MIT's own code (the ``ofa`` package: ``pip install ofa --no-deps``).

:func:`compare_with_ofa` builds MIT's ``OFAMobileNetV3`` / ``OFAResNets`` for one of the published spaces, gives it
random weights (every BatchNorm's affine and running statistics and every kernel-transform matrix moved away from
its initial value, so a mis-mapped tensor shows) or the weights of a published file, converts its state dict into
the oncenas supernet, and runs both on the same random archs and inputs in eval and train mode. Used by
``tests/test_pretrained_ofa.py`` and ``scripts/verify_ofa_pretrained.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["OFA_REFERENCE_ARGS", "build_ofa_reference", "compare_with_ofa", "randomise_"]

#: Constructor arguments of MIT's classes for each published supernet (the file names spell them out).
OFA_REFERENCE_ARGS: dict[str, tuple[str, dict[str, Any]]] = {
    "ofa_mbv3_w10": ("OFAMobileNetV3", {"width_mult": 1.0, "ks_list": [3, 5, 7], "expand_ratio_list": [3, 4, 6],
                                        "depth_list": [2, 3, 4]}),
    "ofa_mbv3_w12": ("OFAMobileNetV3", {"width_mult": 1.2, "ks_list": [3, 5, 7], "expand_ratio_list": [3, 4, 6],
                                        "depth_list": [2, 3, 4]}),
    "ofa_resnet50": ("OFAResNets", {"depth_list": [0, 1, 2], "expand_ratio_list": [0.2, 0.25, 0.35],
                                    "width_mult_list": [0.65, 0.8, 1.0]}),
}


def build_ofa_reference(name: str, num_classes: int = 1000) -> torch.nn.Module:
    """MIT's supernet class for ``name``, without dropout (so train-mode outputs are deterministic)."""
    from ofa.imagenet_classification.elastic_nn import networks

    cls, kwargs = OFA_REFERENCE_ARGS[name]
    return getattr(networks, cls)(n_classes=num_classes, dropout_rate=0.0, **kwargs)


@torch.no_grad()
def randomise_(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Random weights drawn from ``gen`` only (MIT's constructors draw from torch's global generator): conv and
    linear weights He-scaled, and every BN affine / statistic and kernel-transform matrix moved off its initial
    value, since identity matrices and unit BNs would hide a mis-mapped tensor."""
    for key, t in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if t.dim() >= 2 and not key.endswith("_matrix"):
            fan = t.shape[0] * t[0, 0].numel() if t.dim() == 4 else t.shape[1]  # conv: fan-out; linear: fan-in
            t.copy_(torch.randn(t.shape, generator=gen) * (2.0 / fan) ** 0.5)
        if key.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
        elif key.endswith("running_mean"):
            t.copy_(0.1 * torch.randn(t.shape, generator=gen))
        elif key.endswith("_matrix"):
            t.copy_(torch.eye(t.shape[0]) + 0.2 * torch.randn(t.shape, generator=gen))
        elif t.dim() == 1:  # BN weight / bias, SE and classifier biases
            t.copy_(float(key.endswith("weight")) + 0.1 * torch.randn(t.shape, generator=gen))


def compare_with_ofa(name: str, *, n_archs: int = 20, resolutions: Sequence[int] = (128, 160), batch: int = 2,
                     seed: int = 0, pretrained: str | os.PathLike | None = None) -> dict[str, Any]:
    """Largest ``max |Δ logits| / max |logits|`` between MIT's code and the converted oncenas supernet.

    Each of ``n_archs`` random archs (plus the largest and the smallest) runs at the next resolution of
    ``resolutions`` (cycled), in eval and then train mode (batch statistics; running statistics updated on
    both sides). ``pretrained``: a published file loaded into both (MIT's class with its own
    ``load_state_dict``); default random weights. Returns ``{"worst_rel", "worst", "n_compared", "rows"}``.
    """
    from supernets.pretrained.ofa import convert_ofa_state_dict, read_ofa_state_dict
    from supernets.registry import create_supernet

    gen = torch.Generator().manual_seed(seed)
    ref = build_ofa_reference(name)
    if pretrained is None:
        randomise_(ref, gen)
    else:
        ref.load_state_dict(read_ofa_state_dict(pretrained))
    ours = create_supernet(name, dropout=0.0)
    ours.load_state_dict(convert_ofa_state_dict(ref.state_dict(), ours), strict=True)
    rng = np.random.default_rng(seed)
    archs = [ours.space.max_arch(), ours.space.min_arch(), *(ours.space.sample(rng) for _ in range(n_archs))]
    rows = []
    for i, arch in enumerate(archs):
        ofa_dict = arch.to_ofa_dict()
        ofa_dict.pop("r")
        ref.set_active_subnet(**ofa_dict)
        ours.set_active_subnet(arch)
        r = int(resolutions[i % len(resolutions)])
        x = torch.randn(batch, 3, r, r, generator=gen)
        for train in (False, True):
            ref.train(train)
            ours.train(train)
            with torch.no_grad():
                a, b = ref(x), ours(x)
            scale = float(a.abs().max())
            diff = float((a - b).abs().max())
            rows.append({"arch": str(arch), "r": r, "train": train, "max_abs_diff": diff, "scale": scale,
                         "rel": diff / scale})
    worst = max(rows, key=lambda row: row["rel"])
    return {"worst_rel": worst["rel"], "worst": worst, "n_compared": len(rows), "n_archs": len(archs), "rows": rows}
