"""The measurable-layer protocol: how a supernet family tells the latency layer what to time and what to sum.

``predictors/latency`` (table builder, calibrated table, layer-cost and few-shot models, learned models,
export/measure/import) knows nothing about any family: it reads a family's :class:`MeasurableLayers`.

A family describes a subnet as a sequence of *measurable layers* (a block, a stem, a head...). Each layer
has a **key**: the table row it is stored under, naming everything its latency depends on (shapes, widths,
kernel, stride, tokens, heads, precision...), so two layers with the same key cost the same; an
**input shape** (batch 1); **cost features** (MACs by operator, activation traffic, ...; names from
:data:`FEATURE_NAMES`, missing ones are 0) for the layer-cost model; and the family can **build** it as a
static ``nn.Module`` to export and time.

For the search's hot path the family also gives a dense, vectorised form: at each resolution, a list of
``fixed_layers(r)`` every subnet runs, and ``n_slots`` *slots*, each with a list of choices
(``slot_layers(r)[slot][choice]``); ``slot_choices(encoded)`` maps an encoded population to the choice of
every slot (``-1`` = slot unused) with numpy alone. A latency model is then one gather and a sum.

How a new family implements it (e.g. a ViT whose blocks depend on tokens, embed dim, heads, MLP width)::

    @dataclass(frozen=True)
    class VitLayer:                                   # any object with key / input_shape / features()
        tokens: int; dim: int; heads: int; mlp: int
        @property
        def key(self) -> str:
            return f"vitblock-tokens:{self.tokens}-dim:{self.dim}-heads:{self.heads}-mlp:{self.mlp}"
        @property
        def input_shape(self) -> tuple[int, ...]:
            return (1, self.tokens, self.dim)
        def features(self) -> dict[str, float]:
            return {"macs_fc": ..., "macs_attn": ..., "act_io": ..., "const": 1.0}

    class VitMeasurable(MeasurableLayers):
        def fixed_layers(self, r): return [patch_embed_layer(r)]            # same for every subnet at r
        def slot_layers(self, r): return [[VitLayer(...) for choice in ...] for slot in ...]
        def slot_choices(self, encoded): ...                                  # (n, n_slots) ints, -1 unused
        def build(self, layer): return StaticVitBlock(...)                     # what gets exported + timed
        ...

    class MyVitSupernet(Supernet):
        def latency_layers(self) -> MeasurableLayers:
            return VitMeasurable(self)

The keys must be stable: a shipped table is only valid while its keys mean the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from supernets.space import Arch, SearchSpace

__all__ = ["FEATURE_NAMES", "Layer", "MeasurableLayers", "NotMeasurableError", "feature_vector", "measurable_for"]

#: The cost-term vocabulary of the layer-cost model (units: millions). A family fills the ones its layers
#: have: MACs by operator (dense k×k conv, 1×1, depthwise 3/5/7, fully connected), activation elements read
#: and written at the layer's boundary (``act_io``) and inside it (``act_mid``), squeeze-excitation work and
#: its per-layer constant, h-swish elements, and a per-layer constant.
FEATURE_NAMES = ("macs_conv", "macs_pw", "macs_dw3", "macs_dw5", "macs_dw7", "macs_fc", "act_io", "act_mid",
                 "se", "se_const", "hswish", "const")


class NotMeasurableError(ValueError):
    """The supernet's family does not implement the measurable-layer protocol."""


@runtime_checkable
class Layer(Protocol):
    """One measurable layer: ``key`` (the table row), ``input_shape`` (batch 1) and ``features()``."""

    @property
    def key(self) -> str: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def features(self) -> dict[str, float]: ...


def feature_vector(layer: Layer) -> np.ndarray:
    """``layer.features()`` in :data:`FEATURE_NAMES` order (absent terms are 0)."""
    f = layer.features()
    unknown = set(f) - set(FEATURE_NAMES)
    if unknown:
        raise ValueError(f"layer {layer.key!r} reports cost features {sorted(unknown)} outside {FEATURE_NAMES}")
    return np.array([float(f.get(n, 0.0)) for n in FEATURE_NAMES])


class MeasurableLayers:
    """A family's description of its subnets' measurable layers over one search space (see module doc).

    Subclasses set ``space`` and implement the methods that raise :class:`NotImplementedError`.

    Attributes:
        space: the search space whose archs (and encoded rows) this describes.
        slot_elastic: per slot, whether it counts as an elastic block in the calibration's ``n_blocks`` term.
        slot_group: per slot, its stage (the learned model sums cost features per group).
        choice_tags: for the learned model's per-slot one-hots: ``[(tag labels, choice -> label index)]``,
            e.g. MobileNetV3's ``[(("k3","k5","k7"), [0,0,0,1,1,1,2,2,2]), (("e3","e4","e6"), [...])]``.
    """

    space: SearchSpace
    slot_elastic: tuple[bool, ...]
    slot_group: tuple[int, ...]

    @property
    def n_slots(self) -> int:
        return len(self.slot_group)

    @property
    def n_choices(self) -> int:
        """Choices of the widest slot (the dense grid's last axis)."""
        return max(len(c) for c in self.slot_layers(self.space.resolutions[0]))

    @property
    def choice_tags(self) -> list[tuple[tuple[str, ...], np.ndarray]]:
        n = self.n_choices
        return [(tuple(f"c{i}" for i in range(n)), np.arange(n))]

    def input_shape(self, r: int) -> tuple[int, ...]:
        """Batch-1 input of a whole subnet at resolution ``r`` (NCHW for images)."""
        raise NotImplementedError

    def fixed_layers(self, r: int) -> list[Layer]:
        """Layers every subnet runs at resolution ``r`` (independent of the other genes)."""
        raise NotImplementedError

    def slot_layers(self, r: int) -> list[list[Layer | None]]:
        """``[slot][choice]`` layers at resolution ``r`` (``None`` for a choice the slot cannot take)."""
        raise NotImplementedError

    def slot_choices(self, encoded: np.ndarray) -> np.ndarray:
        """``(n, n_slots)`` choice index of every slot for a normalised encoded matrix; ``-1`` if unused.
        Numpy only: this is on the search's hot path."""
        raise NotImplementedError

    def layers(self, arch: Arch) -> list[Layer]:
        """All layers of one subnet in network order (default: fixed layers, then the used slots)."""
        r = arch.r
        ch = self.slot_choices(self.space.encode([arch]))[0]
        grid = self.slot_layers(r)
        return [*self.fixed_layers(r), *(grid[s][c] for s, c in enumerate(ch) if c >= 0)]

    def build(self, layer: Any) -> Any:
        """The static ``nn.Module`` of ``layer`` (exported to ONNX with ``layer.input_shape`` and timed)."""
        raise NotImplementedError

    def with_space(self, space: SearchSpace) -> MeasurableLayers:
        """The same network over another space of the same shape (e.g. more resolutions)."""
        raise NotImplementedError

    @property
    def description(self) -> dict[str, Any]:
        """What ``meta.yaml`` records about the network shape (``geometry:``)."""
        return {}

    # ------------------------------------------------------------------------------ helpers
    def distinct_layers(self, resolutions: Sequence[int] | None = None) -> dict[tuple[int, str], Any]:
        """Every ``(resolution, key) -> layer`` a subnet can use (what a full table holds), in build order."""
        out: dict[tuple[int, str], Any] = {}
        for r in resolutions if resolutions is not None else self.space.resolutions:
            for layer in self.fixed_layers(r):
                out.setdefault((r, layer.key), layer)
            for choices in self.slot_layers(r):
                for layer in choices:
                    if layer is not None:
                        out.setdefault((r, layer.key), layer)
        return out

    def dense_grid(self, resolutions: Sequence[int], cost: Any) -> tuple[np.ndarray, np.ndarray]:
        """``blocks[r_i, slot, choice]`` and ``fixed[r_i]`` filled with ``cost(r, layer) -> ms`` (0 where a
        slot has no such choice; such cells are never gathered)."""
        blocks = np.zeros((len(resolutions), self.n_slots, self.n_choices))
        fixed = np.zeros(len(resolutions))
        for i, r in enumerate(resolutions):
            fixed[i] = sum(cost(r, layer) for layer in self.fixed_layers(r))
            for s, choices in enumerate(self.slot_layers(r)):
                for c, layer in enumerate(choices):
                    if layer is not None:
                        blocks[i, s, c] = cost(r, layer)
        return blocks, fixed


def measurable_for(supernet: Any) -> MeasurableLayers:
    """The supernet's :class:`MeasurableLayers` (``supernet.latency_layers()``)."""
    fn = getattr(supernet, "latency_layers", None)
    m = fn() if fn is not None else None
    if not isinstance(m, MeasurableLayers):
        raise NotMeasurableError(
            f"supernet {getattr(supernet, 'name', type(supernet).__name__)!r} ({type(supernet).__name__}) does not "
            f"implement the measurable-layer protocol: give it a latency_layers() returning a "
            f"supernets.measurable.MeasurableLayers (see that module's docstring)"
        )
    return m
