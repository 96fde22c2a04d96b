"""OFA-ResNet: the elastic bottleneck ResNet of Cai et al., *Once-for-All: Train One Network and Specialize
it for Efficient Deployment*, ICLR 2020 (``OFAResNets`` in the reference code), and a tiny variant for CPU.

Genes (see :class:`~supernets.space.ResNetSpace`): ``d[0]`` keeps or skips the stem's residual block,
``d[1..4]`` add 0–2 blocks to each stage's base depth, ``e`` sets each bottleneck's middle width
(``make_divisible(round(out * e), 8)``), ``w[0]``/``w[1]`` scale the stem widths and ``w[2..5]`` the stage
widths (``make_divisible(base * w, 8)``). Layout, widths and shortcuts follow OFA exactly:

    stem: conv3×3/s (in → mid) · [x + conv3×3 (mid → mid)] · conv3×3 (mid → input) · maxpool 3/2
    stages of bottlenecks (first block strided; shortcut avgpool + conv1×1 + BN when the width choices change)
    global average pool · dropout · linear
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from supernets.base import Supernet
from supernets.layers.dynamic import DynamicLinear, sliced_weights
from supernets.layers.resnet import (
    ConvBnUnit,
    DynamicBottleneck,
    DynamicConvBnAct,
    ResidualConvBnAct,
    ResNetSubnet,
    static_linear,
)
from supernets.registry import register_supernet
from supernets.space import Arch, ResNetSpace
from supernets.utils import make_divisible, make_divisible_np

__all__ = ["OFAResNet", "ofa_resnet50", "ofa_resnet_tiny"]


class OFAResNet(Supernet):
    """Elastic bottleneck ResNet over a :class:`ResNetSpace`.

    Args:
        space: the search space (base depths, extra depths, expand ratios, width multipliers, resolutions).
        stem_width: width of the stem output at multiplier 1.0 (the stem's first convs use half of it).
        stage_widths: output width of each stage at multiplier 1.0.
        stage_strides: stride of each stage's first block.
        stem_stride: stride of the stem's first conv.
        stem_pool: whether a 3×3/2 max-pool follows the stem.
        num_classes: classifier outputs.
        in_chans: input image channels.
        dropout: dropout rate before the classifier.
        divisor: channel counts are rounded to multiples of this.
    """

    name = "ofa_resnet"

    def __init__(self, space: ResNetSpace, *, stem_width: int = 64,
                 stage_widths: Sequence[int] = (256, 512, 1024, 2048), stage_strides: Sequence[int] = (1, 2, 2, 2),
                 stem_stride: int = 2, stem_pool: bool = True, num_classes: int = 1000, in_chans: int = 3,
                 dropout: float = 0.0, divisor: int = 8) -> None:
        if not isinstance(space, ResNetSpace):
            raise ValueError(f"OFAResNet needs a ResNetSpace, got {type(space).__name__}")
        if len(stage_widths) != space.n_stages or len(stage_strides) != space.n_stages:
            raise ValueError(
                f"space {space.name!r} has {space.n_stages} stages (base depths {space.base_depths}); got "
                f"{len(stage_widths)} stage widths {tuple(stage_widths)} and {len(stage_strides)} strides"
            )
        if min(space.base_depths) + min(space.depths) < 1:
            raise ValueError(f"every stage needs at least one block; base depths {space.base_depths}, "
                             f"extra depths {space.depths}")
        super().__init__(space)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem_stride = stem_stride
        self.stage_strides = tuple(stage_strides)
        self.divisor = divisor
        mults = space.width_mults
        self.input_widths = tuple(make_divisible(stem_width * m, divisor) for m in mults)
        self.mid_input_widths = tuple(make_divisible(c // 2, divisor) for c in self.input_widths)
        self.stage_widths = tuple(tuple(make_divisible(b * m, divisor) for m in mults) for b in stage_widths)

        max_mid_in, max_in = max(self.mid_input_widths), max(self.input_widths)
        self.stem_conv1 = DynamicConvBnAct(in_chans, max_mid_in, 3, stem_stride)
        self.stem_block = DynamicConvBnAct(max_mid_in, max_mid_in, 3, 1)  # residual: x + stem_block(x)
        self.stem_conv2 = DynamicConvBnAct(max_mid_in, max_in, 3, 1)
        self.stem_pool = nn.MaxPool2d(3, 2, padding=1) if stem_pool else nn.Identity()
        stages = []
        in_choices = self.input_widths
        for s, (widths, stride, n_slots) in enumerate(zip(self.stage_widths, self.stage_strides, space.stage_slots)):
            if stride == 1 and widths == in_choices:
                # OFA would give this block an identity shortcut, but its input and output widths follow
                # different width genes, so they can differ at run time.
                raise ValueError(
                    f"stage {s} has stride 1 and the same width choices {widths} as its input; OFA-ResNet needs "
                    f"them to differ (choose other stage_widths or a stride of 2)"
                )
            blocks = []
            for j in range(n_slots):
                blocks.append(DynamicBottleneck(in_choices, widths, space.expand_ratios, stride if j == 0 else 1,
                                                divisor))
                in_choices = widths
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(dropout)
        self.classifier = DynamicLinear(max(in_choices), num_classes)
        self._stem_skip = False
        self._stage_depths = list(space.stage_slots)
        self._init_weights()
        self.set_max_net()

    def _init_weights(self) -> None:
        # OFA's 'he_fout': N(0, sqrt(2 / (k*k*out))) convs, unit BN, uniform linear with zero bias.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.in_features**0.5
                nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------ elastic state
    def _apply_arch(self, arch: Arch) -> None:
        space: ResNetSpace = self.space  # type: ignore[assignment]
        w = [space.width_mults.index(v) for v in arch.w]
        self.stem_conv1.active_out_channels = self.mid_input_widths[w[0]]
        self.stem_block.active_out_channels = self.mid_input_widths[w[0]]
        self.stem_conv2.active_out_channels = self.input_widths[w[1]]
        self._stem_skip = arch.d[0] != max(space.depths)
        e = arch.e
        offset = 0
        for s, stage in enumerate(self.stages):
            depth = space.base_depths[s] + arch.d[s + 1]
            self._stage_depths[s] = depth
            for j in range(depth):
                stage[j].set_active(self.stage_widths[s][w[2 + s]], e[offset + j])
            offset += len(stage)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self._forward_features_train(x)
        x = self.stem_conv1(x)
        if not self._stem_skip:
            x = x + self.stem_block(x)
        x = self.stem_pool(self.stem_conv2(x))
        for stage, depth in zip(self.stages, self._stage_depths):
            for j in range(depth):  # indexing, not stage[:depth], which builds a new ModuleList per call
                x = stage[j](x)
        return x

    def _forward_features_train(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_features` with every active conv-BN weight sliced in one autograd node
        (:func:`sliced_weights`)."""
        stem = [self.stem_conv1, *(() if self._stem_skip else (self.stem_block,)), self.stem_conv2]
        units: list[ConvBnUnit] = []
        cin = x.shape[1]
        for layer in stem:
            layer.unit.active_in_channels = cin
            units.append(layer.unit)
            cin = layer.active_out_channels
        blocks = [stage[j] for stage, depth in zip(self.stages, self._stage_depths) for j in range(depth)]
        bounds = [len(units)]
        for block in blocks:
            units += block.units(cin)
            bounds.append(len(units))
            cin = block.active_out_channels
        weights = sliced_weights(units)
        it = iter(weights)
        x = self.stem_conv1.run(x, next(it))
        if not self._stem_skip:
            x = x + self.stem_block.run(x, next(it))
        x = self.stem_pool(self.stem_conv2.run(x, next(it)))
        for block, start, stop in zip(blocks, bounds, bounds[1:]):
            x = block(x, weights[start:stop])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3))
        return self.classifier(self.dropout(x))

    # ------------------------------------------------------------------------------ extraction
    @torch.no_grad()
    def get_active_subnet(self) -> ResNetSubnet:
        """A static :class:`ResNetSubnet` (plain convs, contiguous copied weights) of the active arch, on the
        supernet's device and in its dtype.

        Its parameter names mirror the supernet's (``stages.2.1.conv2.conv.weight``), each holding the
        leading slice of the supernet parameter of that name.
        """
        self.active_arch  # noqa: B018 - makes sure an arch is set
        mid = self.stem_conv1.active_out_channels
        in_c = self.stem_conv2.active_out_channels
        stages = nn.Sequential()
        for s, (stage, depth) in enumerate(zip(self.stages, self._stage_depths)):
            blocks = nn.Sequential()
            for j in range(depth):
                blocks.add_module(str(j), stage[j].get_static(in_c))
                in_c = stage[j].active_out_channels
            stages.add_module(str(s), blocks)
        subnet = ResNetSubnet(
            stem_conv1=self.stem_conv1.get_static(self.in_chans),
            stem_block=None if self._stem_skip else self.stem_block.get_static(mid, ResidualConvBnAct),
            stem_conv2=self.stem_conv2.get_static(mid),
            stem_pool=_copy_pool(self.stem_pool),
            stages=stages,
            classifier=static_linear(self.classifier, in_c),
            dropout=self.dropout.p,
        )
        p = self.classifier.weight  # the static layers are built in torch's defaults: follow the supernet's
        return subnet.to(device=p.device, dtype=p.dtype).train(self.training)

    def latency_layers(self) -> Any:
        """Its measurable layers for latency tables (:mod:`supernets.measurable`)."""
        from supernets.measurable_resnet import ResNetMeasurable

        return ResNetMeasurable(self)

    @torch.no_grad()
    def sort_channels(self, expand_stage: int = 0) -> None:
        """Re-sort every bottleneck's middle channels by importance (OFA's ``re_organize_middle_weights``).

        The function the max net computes is unchanged; smaller expand ratios then keep the most
        important channels. Block output widths are not re-sorted (OFA does not either).

        Args:
            expand_stage: 0 sorts freely; k ≥ 1 (the k-th expand phase of progressive shrinking) keeps the
                channel sets of the k+1 largest expand ratios in place, see ``DynamicBottleneck.sort_channels``.
        """
        for stage in self.stages:
            for block in stage:
                block.sort_channels(expand_stage)

    # ------------------------------------------------------------------------------ costs
    def macs_params(self, archs: Arch | Iterable[Arch] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Analytic MACs (convs and linear, at each arch's resolution) and parameter counts (all parameters
        of the extracted subnet, BN affine included) of a batch of archs, vectorised with numpy.

        Args:
            archs: an arch of ``self.space``, a list of them, or their encoded matrix ``(n, n_columns)``.

        Returns:
            ``(macs, params)``, two int64 arrays of length n; equal to ``count_macs``/``count_params`` of
            the extracted subnets.
        """
        space: ResNetSpace = self.space  # type: ignore[assignment]
        x = space.normalize(archs if isinstance(archs, np.ndarray) else space.encode(archs))
        n = x.shape[0]
        macs = np.zeros(n, dtype=np.int64)
        params = np.zeros(n, dtype=np.int64)

        def conv(cin: Any, cout: Any, k: int, h: Any, on: Any = True) -> None:
            nonlocal macs, params
            p = np.asarray(cin * cout * k * k, dtype=np.int64) * on
            macs = macs + p * h * h  # square inputs
            params = params + p + 2 * cout * on  # + the BN's affine weight and bias

        def out_size(h: np.ndarray, k: int, stride: int) -> np.ndarray:
            return (h + 2 * (k // 2) - k) // stride + 1

        h = space.values(x, "r")[:, 0].astype(np.int64)
        widx = x[:, space.group_slices["w"]]
        mid_in = np.asarray(self.mid_input_widths)[widx[:, 0]]
        inp = np.asarray(self.input_widths)[widx[:, 1]]
        stem_on = space.values(x, "d")[:, 0] == max(space.depths)

        h = out_size(h, 3, self.stem_stride)
        conv(self.in_chans, mid_in, 3, h)
        conv(mid_in, mid_in, 3, h, on=stem_on)
        conv(mid_in, inp, 3, h)
        if isinstance(self.stem_pool, nn.MaxPool2d):
            h = out_size(h, 3, 2)

        depth = np.asarray(space.base_depths)[None, :] + space.values(x, "d")[:, 1:].astype(np.int64)
        expand = np.nan_to_num(space.values(x, "e"), nan=0.0)
        cin, offset = inp, 0
        for s, stage in enumerate(self.stages):
            out_c = np.asarray(self.stage_widths[s])[widx[:, 2 + s]]
            for j, block in enumerate(stage):
                on = j < depth[:, s]
                mid = make_divisible_np(np.rint(out_c * expand[:, offset + j]), self.divisor)
                h_out = out_size(h, 3, block.stride)
                conv(cin, mid, 1, h, on)
                conv(mid, mid, 3, h_out, on)
                conv(mid, out_c, 1, h_out, on)
                if not block.identity_shortcut:
                    conv(cin, out_c, 1, h_out, on)
                h = h_out  # only the first block (always on) is strided
                cin = np.where(on, out_c, cin)
            offset += len(stage)
        macs = macs + cin * self.num_classes
        params = params + cin * self.num_classes + self.num_classes
        return macs.astype(np.int64), params.astype(np.int64)


def _copy_pool(pool: nn.Module) -> nn.Module:
    if isinstance(pool, nn.MaxPool2d):
        return nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding)
    return nn.Identity()


def _space(name: str, resolutions: Sequence[int] | None, **kwargs: Any) -> ResNetSpace:
    if resolutions is not None:
        kwargs["resolutions"] = tuple(int(r) for r in resolutions)
    return ResNetSpace(name=name, **kwargs)


# ------------------------------------------------------------------------------------ entry points
@register_supernet
def ofa_resnet50(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0,
                 resolutions: Sequence[int] | None = None, pretrained: str | None = None) -> OFAResNet:
    """OFA-ResNet50: base depths 2/2/4/2 (+0–2), expand 0.2/0.25/0.35, width ×0.65/0.8/1.0, 128–224 px.
    ``pretrained``: MIT's published ``ofa_resnet50_d=0+1+2_e=0.2+0.25+0.35_w=0.65+0.8+1.0`` file."""
    model = OFAResNet(_space("ofa_resnet", resolutions), num_classes=num_classes, in_chans=in_chans,
                      dropout=dropout)
    if pretrained is None:
        return model
    from supernets.pretrained import load_ofa_pretrained  # imports this module

    return load_ofa_pretrained(model, pretrained, name="ofa_resnet50")


@register_supernet
def ofa_resnet_tiny(*, num_classes: int = 10, in_chans: int = 1, dropout: float = 0.0,
                    resolutions: Sequence[int] | None = (28, 32)) -> OFAResNet:
    """A CPU-sized OFA-ResNet for 28–32 px inputs (MNIST): base depths 1/1/1/1 (+0–2), stage widths
    48/96/192/384 and stem 40 at ×1.0, stem stride 2 and no max-pool (28 px → 14/7/4/2 px stages; 2–18 M
    MACs); same genes as OFA-ResNet50."""
    return OFAResNet(_space("ofa_resnet_tiny", resolutions, base_depths=(1, 1, 1, 1)), stem_width=40,
                     stage_widths=(48, 96, 192, 384), stem_stride=2, stem_pool=False, num_classes=num_classes,
                     in_chans=in_chans, dropout=dropout)
