"""Block-level helpers for timm CNNs made elastic (:mod:`supernets.timm_supernet`) that the family and its
measurable layers (:mod:`supernets.timm_measurable`) share: where the stages live, a block's elastic convs, its
costs, and cutting a block to a width (so neither module imports the other)."""

from __future__ import annotations

import numpy as np
import torch
from timm.layers.conv2d_same import Conv2dSame
from timm.models._efficientnet_blocks import InvertedResidual
from timm.models.efficientnet import EfficientNet
from timm.models.mobilenetv3 import MobileNetV3
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

__all__ = ["block_costs", "conv_padding", "cut_bottleneck", "cut_ir", "mid_layers", "stage_slots"]


def conv_padding(conv: nn.Conv2d, k: int) -> tuple[int, int]:
    shift = (conv.weight.shape[-1] - k) // 2
    return (conv.padding[0] - shift * conv.dilation[0], conv.padding[1] - shift * conv.dilation[1])


def mid_layers(blk: nn.Module, kind: str) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The conv producing a block's elastic middle channels and the conv reading them."""
    return (blk.conv_pw, blk.conv_pwl) if kind == "ir" else (blk.conv1, blk.conv3)


def stage_slots(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Where each stage of a supported timm model lives: ``(parent, attribute)``."""
    if isinstance(model, (EfficientNet, MobileNetV3)):
        return [(model.blocks, str(i)) for i in range(len(model.blocks))]
    if isinstance(model, ResNet):
        return [(model, f"layer{i}") for i in range(1, 5)]
    raise ValueError(f"timm model class {type(model).__name__} is not supported as a supernet; supported: "
                     f"EfficientNet (efficientnet_*, tf_efficientnet_*, efficientnet_lite*, mnasnet_*), MobileNetV3 "
                     f"(mobilenetv3_*), ResNet with bottleneck blocks (resnet50, resnet101, ...)")


def block_costs(blk: nn.Module, kind: str, mid: np.ndarray, k: np.ndarray, h_in: np.ndarray,
                 h_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MACs (convs, SE included) and parameters (convs, BN affine, SE biases) of an elastic block."""
    cin, cout = mid_layers(blk, kind)[0].in_channels, mid_layers(blk, kind)[1].out_channels
    if kind == "ir":
        macs = h_in * h_in * cin * mid + h_out * h_out * mid * (k * k + cout)
        params = cin * mid + mid * k * k + mid * cout + 4 * mid + 2 * cout
        if not isinstance(blk.se, nn.Identity):
            rd = blk.se.conv_reduce.out_channels
            macs = macs + 2 * mid * rd
            params = params + 2 * mid * rd + rd + mid
        return macs, params
    k2 = blk.conv2.kernel_size[0] * blk.conv2.kernel_size[1]
    macs = h_in * h_in * cin * mid + h_out * h_out * mid * (mid * k2 + cout)
    params = cin * mid + mid * mid * k2 + mid * cout + 4 * mid + 2 * cout
    return macs, params


def _cut_conv(conv: nn.Conv2d, weight: torch.Tensor, groups: int | None = None) -> None:
    groups = conv.groups if groups is None else groups
    k = weight.shape[-1]
    if not isinstance(conv, Conv2dSame):
        conv.padding = conv_padding(conv, k)
    conv.weight = nn.Parameter(weight.detach().clone().contiguous(), requires_grad=conv.weight.requires_grad)
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias[: weight.shape[0]].detach().clone())
    conv.out_channels, conv.in_channels = weight.shape[0], weight.shape[1] * groups
    conv.kernel_size, conv.groups = (k, k), groups


def _cut_bn(bn: nn.BatchNorm2d, n: int) -> None:
    for name in ("weight", "bias"):
        setattr(bn, name, nn.Parameter(getattr(bn, name)[:n].detach().clone()))
    for name in ("running_mean", "running_var"):
        setattr(bn, name, getattr(bn, name)[:n].clone())
    bn.num_features = n


def cut_ir(blk: InvertedResidual, mid: int, dw: torch.Tensor) -> None:
    _cut_conv(blk.conv_pw, blk.conv_pw.weight[:mid])
    _cut_bn(blk.bn1, mid)
    _cut_conv(blk.conv_dw, dw, groups=mid)
    _cut_bn(blk.bn2, mid)
    if not isinstance(blk.se, nn.Identity):
        _cut_conv(blk.se.conv_reduce, blk.se.conv_reduce.weight[:, :mid])
        _cut_conv(blk.se.conv_expand, blk.se.conv_expand.weight[:mid])
    _cut_conv(blk.conv_pwl, blk.conv_pwl.weight[:, :mid])


def cut_bottleneck(blk: Bottleneck, mid: int) -> None:
    _cut_conv(blk.conv1, blk.conv1.weight[:mid])
    _cut_bn(blk.bn1, mid)
    _cut_conv(blk.conv2, blk.conv2.weight[:mid, :mid])
    _cut_bn(blk.bn2, mid)
    _cut_conv(blk.conv3, blk.conv3.weight[:, :mid])
