"""OFA's published supernets (Cai et al., *Once-for-All*, ICLR 2020) loaded into oncenas's supernets.

MIT published the trained supernets as ``torch.save({"state_dict": ...})`` files named after their spaces:
``ofa_mbv3_d234_e346_k357_w1.0`` / ``..._w1.2`` (OFA-MobileNetV3) and
``ofa_resnet50_d=0+1+2_e=0.2+0.25+0.35_w=0.65+0.8+1.0`` (OFA-ResNet50). Users download them; nothing is
fetched here. :func:`convert_ofa_state_dict` maps their keys onto ``ofa_mbv3_w10`` / ``ofa_mbv3_w12`` /
``ofa_resnet50``: the elastic kernel's transform matrices (``7to5_matrix`` → ``transform_7to5``, the same
``F.linear`` orientation), the shared-prefix BatchNorms and the SE layers carry over unchanged, block ``i`` of
OFA's flat block list lands in its stage's slot. ``tests/test_pretrained_ofa.py`` checks the converted weights
against MIT's own code (the ``ofa`` package) on random archs, train and eval mode.

Key spellings differ between OFA versions (``mobile_inverted_conv`` for ``conv``, ``bn.bn`` / ``conv.conv`` /
``linear.linear`` doubled or not); every spelling is reduced to one canonical form before mapping.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from supernets.space import MobileNetV3Space, ResNetSpace

__all__ = [
    "OFA_FILES",
    "convert_ofa_checkpoint",
    "convert_ofa_state_dict",
    "identify_ofa_state_dict",
    "load_ofa_pretrained",
    "read_ofa_state_dict",
]

log = logging.getLogger(__name__)

#: The published file of each supernet (as MIT names it), for messages.
OFA_FILES = {
    "ofa_mbv3_w10": "ofa_mbv3_d234_e346_k357_w1.0",
    "ofa_mbv3_w12": "ofa_mbv3_d234_e346_k357_w1.2",
    "ofa_resnet50": "ofa_resnet50_d=0+1+2_e=0.2+0.25+0.35_w=0.65+0.8+1.0",
}
_BN = r"(?P<bn>weight|bias|running_mean|running_var|num_batches_tracked)"


def _canonical(key: str) -> str:
    """One spelling for every OFA version: no ``module.`` prefix, ``mobile_inverted_conv`` → ``conv``, and no
    segment repeated in a row (``conv.conv.weight`` → ``conv.weight``, ``bn.bn.`` → ``bn.``)."""
    key = key.removeprefix("module.").replace(".mobile_inverted_conv.", ".conv.")
    parts: list[str] = []
    for p in key.split("."):
        if not parts or parts[-1] != p:
            parts.append(p)
    return ".".join(parts)


def _stage_slot(slots: tuple[int, ...], index: int) -> tuple[int, int]:
    """(stage, slot) of OFA's flat block ``index`` (counted over the elastic blocks only)."""
    for s, n in enumerate(slots):
        if index < n:
            return s, index
        index -= n
    raise KeyError(index)


def _mbv3_rules(slots: tuple[int, ...]) -> list[tuple[str, Callable[[re.Match], str]]]:
    def block(m: re.Match) -> str:
        s, j = _stage_slot(slots, int(m["i"]) - 1)
        return f"stages.{s}.{j}."

    layer = {"inverted_bottleneck": ("conv_pw", "bn1"), "depth_conv": ("conv_dw", "bn2"), "point_linear": ("conv_pwl", "bn3")}
    return [
        (r"first_conv\.conv\.weight", lambda m: "conv_stem.weight"),
        (rf"first_conv\.bn\.{_BN}", lambda m: f"bn1.{m['bn']}"),
        (r"blocks\.0\.conv\.depth_conv\.conv\.weight", lambda m: "first_dw.weight"),
        (rf"blocks\.0\.conv\.depth_conv\.bn\.{_BN}", lambda m: f"first_bn1.{m['bn']}"),
        (r"blocks\.0\.conv\.point_linear\.conv\.weight", lambda m: "first_pw.weight"),
        (rf"blocks\.0\.conv\.point_linear\.bn\.{_BN}", lambda m: f"first_bn2.{m['bn']}"),
        (r"blocks\.(?P<i>\d+)\.conv\.(?P<l>inverted_bottleneck|depth_conv|point_linear)\.conv\.weight",
         lambda m: block(m) + f"{layer[m['l']][0]}.weight"),
        (rf"blocks\.(?P<i>\d+)\.conv\.(?P<l>inverted_bottleneck|depth_conv|point_linear)\.bn\.{_BN}",
         lambda m: block(m) + f"{layer[m['l']][1]}.{m['bn']}"),
        (r"blocks\.(?P<i>\d+)\.conv\.depth_conv\.conv\.(?P<a>\d+)to(?P<b>\d+)_matrix",
         lambda m: block(m) + f"conv_dw.transform_{m['a']}to{m['b']}"),
        (r"blocks\.(?P<i>\d+)\.conv\.depth_conv\.se\.fc\.(?P<l>reduce|expand)\.(?P<p>weight|bias)",
         lambda m: block(m) + f"se.conv_{m['l']}.{m['p']}"),
        (r"final_expand_layer\.conv\.weight", lambda m: "final_conv.weight"),
        (rf"final_expand_layer\.bn\.{_BN}", lambda m: f"final_bn.{m['bn']}"),
        (r"feature_mix_layer\.conv\.weight", lambda m: "conv_head.weight"),
        (r"classifier\.linear\.(?P<p>weight|bias)", lambda m: f"classifier.{m['p']}"),
    ]


def _resnet_rules(slots: tuple[int, ...]) -> list[tuple[str, Callable[[re.Match], str]]]:
    # input_stem.1 is a residual block around a conv layer: its conv weight's key collapses to
    # ``input_stem.1.conv.weight``, its BN's to ``input_stem.1.conv.bn.*``.
    stem = {"0": "stem_conv1", "1": "stem_block", "1.conv": "stem_block", "2": "stem_conv2"}

    def block(m: re.Match) -> str:
        s, j = _stage_slot(slots, int(m["i"]))
        return f"stages.{s}.{j}.{m['l']}."

    return [
        (r"input_stem\.(?P<s>0|1|2)\.conv\.weight", lambda m: f"{stem[m['s']]}.conv.weight"),
        (rf"input_stem\.(?P<s>0|1\.conv|2)\.bn\.{_BN}", lambda m: f"{stem[m['s']]}.bn.{m['bn']}"),
        (r"blocks\.(?P<i>\d+)\.(?P<l>conv1|conv2|conv3|downsample)\.conv\.weight", lambda m: block(m) + "conv.weight"),
        (rf"blocks\.(?P<i>\d+)\.(?P<l>conv1|conv2|conv3|downsample)\.bn\.{_BN}", lambda m: block(m) + f"bn.{m['bn']}"),
        (r"classifier\.linear\.(?P<p>weight|bias)", lambda m: f"classifier.{m['p']}"),
    ]


def identify_ofa_state_dict(state: Mapping[str, Any]) -> tuple[str, str]:
    """``(family, description)`` of an OFA state dict: family ``"mbv3"`` or ``"resnet"``, and a description
    naming the supernet it fits (e.g. ``"OFA-MobileNetV3 w1.2 (stem 24 channels): ofa_mbv3_w12"``)."""
    keys = {_canonical(k): v for k, v in state.items()}
    if "first_conv.conv.weight" in keys and "final_expand_layer.conv.weight" in keys:
        stem = int(keys["first_conv.conv.weight"].shape[0])
        n_blocks = len({k.split(".")[1] for k in keys if k.startswith("blocks.")})
        name = {16: "ofa_mbv3_w10", 24: "ofa_mbv3_w12"}.get(stem)
        width = {16: "w1.0", 24: "w1.2"}.get(stem, f"stem {stem}")
        return "mbv3", (f"OFA-MobileNetV3 {width} (stem {stem} channels, {n_blocks} blocks)"
                        + (f": {name}" if name else ": no registered supernet"))
    if "input_stem.0.conv.weight" in keys:
        stem = int(keys["input_stem.2.conv.weight"].shape[0]) if "input_stem.2.conv.weight" in keys else -1
        n_blocks = len({k.split(".")[1] for k in keys if k.startswith("blocks.")})
        return "resnet", f"OFA-ResNet (stem {stem} channels, {n_blocks} blocks): ofa_resnet50"
    sample = sorted(state)[:3]
    raise ValueError(f"not an OFA supernet state dict: no first_conv/final_expand_layer (OFA-MobileNetV3) or "
                     f"input_stem (OFA-ResNet) keys; its keys begin {sample}")


def read_ofa_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an OFA checkpoint file (``{"state_dict": ...}`` as MIT publishes it, or a bare state
    dict), loaded with ``weights_only=True``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained={str(path)!r} does not exist; pass the file downloaded from the OFA "
                                f"model zoo (e.g. {OFA_FILES['ofa_mbv3_w12']}); oncenas downloads nothing")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors come in many types; name the file
        raise ValueError(f"pretrained={str(path)!r} cannot be read as a torch checkpoint: {err}") from None
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"pretrained={str(path)!r} holds no state dict (expected {{'state_dict': {{name: tensor}}}} "
                         f"as the OFA model zoo publishes it); got {type(obj).__name__}")
    return dict(state)


def convert_ofa_state_dict(state: Mapping[str, torch.Tensor], model: torch.nn.Module, *,
                           source: str = "the state dict") -> dict[str, torch.Tensor]:
    """OFA's keys mapped onto ``model``'s (an ``ofa_mbv3_w10``/``_w12`` or ``ofa_resnet50`` supernet).

    Raises ``ValueError`` naming the supernet the file fits when it is of another space (family, width, block
    count or a tensor's shape), and listing the keys that map nowhere.
    """
    target = getattr(model, "name", type(model).__name__)
    family, described = identify_ofa_state_dict(state)
    # the family by its space, so this loader (which the families call) never imports the families back
    space = getattr(model, "space", None)
    want = "mbv3" if isinstance(space, MobileNetV3Space) else "resnet" if isinstance(space, ResNetSpace) else None
    if want is None:
        raise ValueError(f"pretrained OFA weights load into OFA-MobileNetV3 / OFA-ResNet supernets only, not {target!r}")
    if family != want:
        raise ValueError(f"{source} is {described}, not a file for supernet {target!r} "
                         f"(expected {OFA_FILES.get(target, 'its OFA file')}); load it with that supernet")
    space = model.space
    slots = (tuple([space.max_depth] * space.n_stages) if family == "mbv3" else tuple(space.stage_slots))
    rules = [(re.compile(p), f) for p, f in (_mbv3_rules(slots) if family == "mbv3" else _resnet_rules(slots))]
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unmapped, shapes = [], []
    for key, value in state.items():
        canon = _canonical(key)
        for pattern, fn in rules:
            m = pattern.fullmatch(canon)
            if m:
                try:
                    new = fn(m)
                except KeyError:  # a block index beyond the model's slots
                    new = None
                break
        else:
            new = None
        if new is None or new not in own:
            unmapped.append(key)
            continue
        if new in out:
            raise ValueError(f"{source}: keys {key!r} and another one both map to {new!r}")
        if tuple(value.shape) != tuple(own[new].shape):
            shapes.append(f"{key} {tuple(value.shape)} vs {new} {tuple(own[new].shape)}")
        out[new] = value
    missing = [k for k in own if k not in out and k != "_extra_state"]
    if unmapped or missing or shapes:
        parts = [f"{len(v)} {what} (e.g. {', '.join(v[:3])})" for what, v in
                 (("keys of the file fit nowhere", unmapped), ("weights of the model are not in the file", missing),
                  ("shapes differ", shapes)) if v]
        head_only = not unmapped and not missing and all(s.startswith("classifier.") for s in shapes)
        if not head_only:
            raise ValueError(f"{source} is {described} and does not fit supernet {target!r} "
                             f"(space {space!r}): {'; '.join(parts)}")
    return out


def load_ofa_pretrained(model: torch.nn.Module, pretrained: str | os.PathLike | None, *,
                        name: str | None = None) -> torch.nn.Module:
    """Load OFA's published weights from ``pretrained`` into ``model`` (no-op when ``None``); returns ``model``.

    A classifier of another ``num_classes`` than the file's 1000 is left freshly initialised (as timm does for
    ``pretrained=True, num_classes=N``): fine-tune it on the new data; every other tensor must fit.
    """
    if pretrained is None or pretrained == "":
        return model
    if name:
        model.name = name
    state = convert_ofa_state_dict(read_ofa_state_dict(pretrained), model, source=f"pretrained={str(pretrained)!r}")
    own = model.state_dict()
    head = [k for k, v in state.items() if k.startswith("classifier.") and v.shape != own[k].shape]
    if head:
        log.warning("pretrained=%s: classifier has %d classes, the model %d; the classifier stays untrained",
                    pretrained, state["classifier.weight"].shape[0], own["classifier.weight"].shape[0])
        state = {k: v for k, v in state.items() if k not in head}
    missing, unexpected = model.load_state_dict(state, strict=False)
    left = [k for k in missing if k != "_extra_state" and k not in head]
    assert not left and not unexpected, (left, unexpected)  # convert_ofa_state_dict checked both
    model.pretrained_from = str(pretrained)
    return model


def convert_ofa_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, supernet: str | None = None,
                           supernet_kwargs: Mapping[str, Any] | None = None,
                           data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write OFA's published file ``src`` as an oncenas supernet checkpoint ``dst`` (what ``train.py`` writes:
    ``search.py ckpt=<dst>``, ``scripts/build_accuracy_dataset.py ckpt=<dst>`` and ``load_supernet`` read it).

    ``supernet`` defaults to the one the file fits. ``data`` is the data config recorded for BN recalibration and
    accuracy datasets (e.g. ``{"name": "imagefolder", "root": ...}``); without it, consumers ask for ``data.root``.
    Returns the checkpoint's metadata.
    """
    from supernets.checkpoints import save_supernet
    from supernets.registry import create_supernet

    state = read_ofa_state_dict(src)
    if supernet is None:
        described = identify_ofa_state_dict(state)[1]
        supernet = described.rsplit(": ", 1)[-1]
        if supernet not in OFA_FILES:
            raise ValueError(f"{src} is {described}; pass supernet=<name> to choose one")
    kwargs = dict(supernet_kwargs or {})
    model = create_supernet(supernet, **kwargs)
    load_ofa_pretrained(model, src, name=supernet)
    return save_supernet(model, dst, name=supernet, kwargs=kwargs, data=data, converted_from=str(src), phase=None,
                         bn_calibration_required=True)
