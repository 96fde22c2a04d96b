"""A supernet with precision genes: :class:`QuantSupernet` wraps a trained supernet over a
:class:`~supernets.quant_space.QuantSpace`, and :class:`QuantMeasurable` gives the latency layer its measurable
layers with the precision in every key.

Quantization itself happens on the exported ONNX graph (ONNX Runtime's static QDQ quantizer,
:mod:`predictors.latency.quant`), so the static subnet is the base family's FP32 module; what this module adds is
*which* exported nodes belong to which precision group (:func:`precision_group_of_node`, by the node-name scopes
torch's exporter writes, e.g. ``/blocks/blocks.2/blocks.2.0/conv_pw/Conv``) and the per-layer view of a subnet:
every base layer becomes a :class:`QuantLayer` whose key is the base key (FP32, so FP32 tables serve unchanged) or
the base key plus ``-q:int8``.

Precision groups per family (``PRECISION_GROUPS``): OFA-MobileNetV3 (timm ``MobileNetV3`` statics) has
``n_stages + 2``: 0 = stem + first block, ``1..n_stages`` = the elastic stages, last = final expand + head
(quantization practice keeps first and last layers in FP32; here the search decides).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from supernets.measurable import MeasurableLayers, measurable_for
from supernets.quant_space import FP32, INT8, QuantSpace
from supernets.space import Arch

__all__ = ["QuantLayer", "QuantMeasurable", "QuantSupernet", "precision_group_of_node", "precision_groups_of_graph",
           "quant_supernet"]

_TIMM_BLOCK = re.compile(r"^/blocks/blocks\.(\d+)/")


@dataclass(frozen=True)
class _Groups:
    """How one family's subnets split into precision groups."""

    n_groups: int
    #: group of each of the base geometry's fixed layers, in ``fixed_layers(r)`` order
    fixed: tuple[int, ...]
    #: group of each base slot
    slots: tuple[int, ...]


def _mbv3_groups(geometry: Any) -> _Groups:
    n = geometry.space.n_stages
    # fixed layers: stem, first block (group 0), final expand, head (last group)
    return _Groups(n + 2, (0, 0, n + 1, n + 1), tuple(1 + g for g in geometry.slot_group))


#: geometry class name -> its precision groups
PRECISION_GROUPS = {"MBv3Geometry": _mbv3_groups}


def _groups_for(geometry: Any) -> _Groups:
    fn = PRECISION_GROUPS.get(type(geometry).__name__)
    if fn is None:
        raise ValueError(f"precision genes are defined for {sorted(PRECISION_GROUPS)}; {type(geometry).__name__} "
                         f"has none yet (add its precision groups to supernets.quant.PRECISION_GROUPS)")
    return fn(geometry)


def precision_group_of_node(names: Sequence[str], n_groups: int, inputs: Sequence[Sequence[str]] | None = None,
                            outputs: Sequence[Sequence[str]] | None = None) -> list[int]:
    """Precision group of each ONNX node of an exported timm-style static subnet (nodes in graph order).

    A node inside ``blocks.k`` belongs to group ``min(k, n_groups - 1)`` (``blocks.0`` is the first block: group
    0; ``blocks.1..n`` the elastic stages; the final expand block the last group). A node with a scope outside any
    block takes group 0 before the first block (stem) and the last group after it (head, classifier).

    A node without a scope (empty name, or ``Identity_3``: nodes ORT's pre-processing writes, such as the
    ``HardSigmoid`` + ``Mul`` of a decomposed hard-swish, or constant-folding leftovers) belongs where its data comes
    from: the group of the node producing its first input, when ``inputs``/``outputs`` (each node's tensor names)
    are given; else by position as above. Placing a stage's unnamed hard-swish by position put it in the head's
    group, so an INT8 head quantized every FP32 stage's activations too (whole mixed nets 1.7x the table's time).
    """
    out: list[int] = []
    producer: dict[str, int] = {}
    seen_block = False
    for i, name in enumerate(names):
        m = _TIMM_BLOCK.match(name)
        if m:
            seen_block = True
            g = min(int(m.group(1)), n_groups - 1)
        else:
            g = n_groups - 1 if seen_block else 0
            if inputs is not None and not name.startswith("/"):  # unscoped: follow the data
                g = next((producer[t] for t in inputs[i] if t in producer), g)
        out.append(g)
        if outputs is not None:
            producer.update((t, g) for t in outputs[i])
    return out


def precision_groups_of_graph(graph: Any, n_groups: int) -> list[int]:
    """:func:`precision_group_of_node` of an ONNX ``GraphProto``'s nodes (names, inputs and outputs)."""
    nodes = list(graph.node)
    return precision_group_of_node([n.name for n in nodes], n_groups, [list(n.input) for n in nodes],
                                   [list(n.output) for n in nodes])


@dataclass(frozen=True)
class QuantLayer:
    """A base measurable layer at a precision: the same shape, a key that says the precision."""

    base: Any
    int8: bool

    @property
    def key(self) -> str:
        return f"{self.base.key}-q:int8" if self.int8 else self.base.key

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.base.input_shape

    def features(self) -> dict[str, float]:
        return self.base.features()


class QuantMeasurable(MeasurableLayers):
    """A family's measurable layers with precision genes (see module doc).

    Slots: first the base geometry's fixed layers, one slot each (choice 0 = FP32, 1 = INT8, by their group's
    gene); then the base slots with their choices doubled (``c`` FP32, ``c + n_base_choices`` INT8). No fixed
    layers remain: every layer's precision is a gene.
    """

    def __init__(self, base: MeasurableLayers, space: QuantSpace) -> None:
        self.base = base
        self.space = space
        self.groups = _groups_for(base)
        if self.groups.n_groups != space.n_groups:
            raise ValueError(f"space {space.name!r} has {space.n_groups} precision genes; the family's layers "
                             f"have {self.groups.n_groups} precision groups")
        r0 = space.resolutions[0]
        self.n_fixed = len(base.fixed_layers(r0))
        if self.n_fixed != len(self.groups.fixed):
            raise ValueError(f"{type(base).__name__} has {self.n_fixed} fixed layers, its precision groups name "
                             f"{len(self.groups.fixed)}")
        self.n_base_choices = base.n_choices
        self.slot_group = (*self.groups.fixed, *self.groups.slots)
        self.slot_elastic = (False,) * self.n_fixed + tuple(base.slot_elastic)
        self._slot_group = np.asarray(self.slot_group)

    @property
    def n_choices(self) -> int:
        return 2 * self.n_base_choices

    def input_shape(self, r: int) -> tuple[int, ...]:
        return self.base.input_shape(r)

    def fixed_layers(self, r: int) -> list[QuantLayer]:
        return []

    def slot_layers(self, r: int) -> list[list[QuantLayer | None]]:
        fixed = [[QuantLayer(layer, False), QuantLayer(layer, True)] for layer in self.base.fixed_layers(r)]
        blocks = [[None if layer is None else QuantLayer(layer, q) for q in (False, True) for layer in choices]
                  for choices in self.base.slot_layers(r)]
        return fixed + blocks

    def slot_choices(self, encoded: np.ndarray) -> np.ndarray:
        x = np.asarray(encoded)
        int8 = self.space.int8_mask(x)[:, self._slot_group].astype(np.int64)  # (n, n_slots)
        base = self.base.slot_choices(self.space.base_encoded(x))
        blocks = np.where(base >= 0, base + self.n_base_choices * int8[:, self.n_fixed:], -1)
        return np.concatenate([int8[:, : self.n_fixed], blocks], axis=1)

    def layers(self, arch: Arch) -> list[QuantLayer]:
        """The subnet's layers in network order (the base family's order, each at its group's precision)."""
        base_arch, bits = self.space.split(arch)
        r = arch.r
        fixed = self.base.fixed_layers(r)
        ch = self.base.slot_choices(self.space.encode([arch])[:, : self.space.n_base])[0]
        grid = self.base.slot_layers(r)
        out = []
        for layer in self.base.layers(base_arch):
            if layer in fixed:
                g = self.groups.fixed[fixed.index(layer)]
            else:
                g = next(self.groups.slots[s] for s, c in enumerate(ch) if c >= 0 and grid[s][c] == layer)
            out.append(QuantLayer(layer, bits[g] == INT8))
        return out

    def build(self, layer: QuantLayer) -> Any:
        """The FP32 static module of the layer (an INT8 layer is quantized after export)."""
        return self.base.build(layer.base)

    @property
    def description(self) -> dict[str, Any]:
        return {**self.base.description, "precision_groups": self.space.n_groups,
                "precisions": [int(b) for b in self.space.bits]}


class QuantSupernet(nn.Module):
    """A trained supernet searched with precision genes (``space``: a :class:`QuantSpace` over its space).

    ``set_active_subnet(arch)`` activates the base arch and records the precisions; ``get_active_subnet()`` is the
    base family's FP32 static module (the exporter quantizes its INT8 groups); the forward pass is FP32.
    """

    def __init__(self, base: nn.Module, *, bits: tuple[int, ...] = (INT8, FP32),
                 resolutions: Sequence[int] | None = None) -> None:
        super().__init__()
        self.base = base
        geometry = measurable_for(base)
        space = base.space
        if resolutions is not None:  # a search over some of the trained resolutions (e.g. those a table covers)
            bad = [r for r in resolutions if r not in space.resolutions]
            if bad or not resolutions:
                raise ValueError(f"resolutions {list(resolutions)} must be a non-empty subset of supernet "
                                 f"{base.name!r}'s {list(space.resolutions)}")
            space = dataclasses.replace(space, resolutions=tuple(sorted(int(r) for r in resolutions)))
        self.space = QuantSpace(base=space, n_groups=_groups_for(geometry).n_groups, bits=tuple(bits))
        self.name = base.name
        self.precision: tuple[int, ...] = (max(bits),) * self.space.n_groups

    def base_arch_of(self, base_arch: Arch) -> Arch:
        """``base_arch`` (of the searched, possibly narrower base space) as an arch of the supernet's own space."""
        return base_arch if base_arch.space == self.base.space else self.base.space.parse(str(base_arch))

    def set_active_subnet(self, arch: Arch) -> None:
        base_arch, self.precision = self.space.split(arch)
        self.base.set_active_subnet(self.base_arch_of(base_arch))

    def get_active_subnet(self) -> nn.Module:
        return self.base.get_active_subnet()

    def forward(self, x: Any) -> Any:
        return self.base(x)

    def latency_layers(self) -> QuantMeasurable:
        geometry = measurable_for(self.base)
        if self.space.base != self.base.space:
            geometry = geometry.with_space(self.space.base)
        return QuantMeasurable(geometry, self.space)

    def macs_params(self, archs: Any) -> tuple[np.ndarray, np.ndarray]:
        archs = self.space.decode(archs) if isinstance(archs, np.ndarray) else list(archs)
        return self.base.macs_params([self.base_arch_of(self.space.split(a)[0]) for a in archs])

    @property
    def config(self) -> Any:  # export helpers read in_chans from here
        return getattr(self.base, "config", None)


def quant_supernet(base: nn.Module, precisions: str = "mixed", *,
                   resolutions: Sequence[int] | None = None) -> QuantSupernet:
    """``base`` with precision genes: ``mixed`` ({int8, fp32} per group), ``int8`` or ``fp32`` (pinned); optionally
    over some of its resolutions only."""
    bits = {"mixed": (INT8, FP32), "int8": (INT8,), "fp32": (FP32,)}
    if precisions not in bits:
        raise ValueError(f"precisions {precisions!r} is not one of {sorted(bits)}")
    return QuantSupernet(base, bits=bits[precisions], resolutions=resolutions)
