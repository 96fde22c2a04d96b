"""Predicted bytes of a subnet's exported ONNX file (FP32 or quantized), vectorised over a population: the search's
``size_mb`` objective (issue 30; SimQ-NAS reports model size beside latency).

Every measurable layer (:mod:`supernets.measurable`) is built once and its weights counted: per Conv/Linear,
``W`` weights and ``C`` output channels. BatchNorm is folded into the conv by the ONNX export, leaving one bias per
output channel. An FP32 layer stores ``4 W + 4 C`` bytes; an INT8 layer in ONNX Runtime's QDQ format (per-channel S8
weights) stores ``W`` bytes of weights plus, per output channel, an INT32 bias, a float scale and an INT8 zero point
for the weights and a float scale for the bias (``13 C``). A subnet's bytes are the sum over its layers (the dense grid
of the latency tables, gathered per slot choice); the graph itself (names, shapes, the Q/DQ nodes) costs a constant
per Conv/Linear and precision, fitted once to real files (``tests/test_quant_search.py`` checks the prediction
against freshly exported ones).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from supernets.measurable import MeasurableLayers

__all__ = ["FP32_BYTES_PER_CONV", "INT8_BYTES_PER_CHANNEL", "INT8_BYTES_PER_CONV", "ModelSize", "layer_bytes", "model_size_fn"]

#: bytes per output channel of a QDQ-quantized conv: INT32 bias + float weight scale + INT8 zero point + bias scale
INT8_BYTES_PER_CHANNEL = 13
#: graph bytes per Conv/Linear (node and tensor names, shapes); an INT8 one also carries its Q/DQ nodes, their
#: scalars and the shape information ORT's pre-processing adds: least squares on 24 exported ofa_mbv3_tiny subnets
#: (8 base archs x FP32 / INT8 / mixed; errors -1.8..+5.6 %)
FP32_BYTES_PER_CONV = 366
INT8_BYTES_PER_CONV = 3761


#: ``(family, layer key) -> (W, C, N)``: a layer key names the layer's shape (the latency tables time one module per
#: key), so every supernet of a family shares the counts; building and running each layer once takes seconds
_COUNTS: dict[tuple[str, str], tuple[int, int, int]] = {}


def _weights_channels(module: Any, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(W, C, N)``: weights, output channels and number of the Conv/Linear modules one forward pass of ``module`` runs (a
    layer's module may wrap a whole net and run part of it, e.g. the MobileNetV3 head)."""
    import torch
    from torch import nn

    used: dict[int, nn.Module] = {}

    def seen(m: nn.Module, _i: Any, _o: Any) -> None:  # a hook returning a value would replace the output
        used[id(m)] = m

    hooks = [m.register_forward_hook(seen) for m in module.modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
    return (sum(m.weight.numel() for m in used.values()), sum(m.weight.shape[0] for m in used.values()),
            len(used))


def layer_bytes(weights: int, channels: int, convs: int, int8: bool) -> float:
    """Bytes one layer adds to the exported file (see the module doc)."""
    if int8:
        return float(weights + INT8_BYTES_PER_CHANNEL * channels + INT8_BYTES_PER_CONV * convs)
    return float(4 * (weights + channels) + FP32_BYTES_PER_CONV * convs)


class ModelSize:
    """``encoded -> bytes`` of the exported ONNX of each subnet of ``geometry``'s space.

    Args:
        geometry: the supernet's measurable layers (:meth:`latency_layers`); a
            :class:`~supernets.quant.QuantMeasurable` prices each layer at its precision.
    """

    def __init__(self, geometry: MeasurableLayers) -> None:
        from supernets.quant import QuantLayer

        self.geometry = geometry
        r = geometry.space.resolutions[0]  # weights do not depend on the input resolution
        family = type(getattr(geometry, "base", geometry)).__name__

        def cost(_r: int, layer: Any) -> float:
            base = layer.base if isinstance(layer, QuantLayer) else layer
            k = (family, base.key)
            if k not in _COUNTS:
                module = geometry.base.build(base) if isinstance(layer, QuantLayer) else geometry.build(base)
                _COUNTS[k] = _weights_channels(module, base.input_shape)
            return layer_bytes(*_COUNTS[k], isinstance(layer, QuantLayer) and layer.int8)

        blocks, fixed = geometry.dense_grid([r], cost)
        self.blocks, self.fixed = blocks[0], float(fixed[0])

    def __call__(self, encoded: np.ndarray) -> np.ndarray:
        ch = self.geometry.slot_choices(np.asarray(encoded, dtype=np.int64))
        slot = np.broadcast_to(np.arange(ch.shape[1]), ch.shape)
        per_slot = np.where(ch >= 0, self.blocks[slot, np.maximum(ch, 0)], 0.0)
        return self.fixed + per_slot.sum(axis=1)


def model_size_fn(supernet: Any) -> ModelSize | None:
    """The supernet's :class:`ModelSize` over its (searched) space; None when it has no measurable layers."""
    from supernets.measurable import NotMeasurableError, measurable_for

    try:
        geometry = measurable_for(supernet)
    except NotMeasurableError:
        return None
    if getattr(supernet, "space", None) is not None and geometry.space != supernet.space:
        geometry = geometry.with_space(supernet.space)
    return ModelSize(geometry)
