"""Inference of a ReLU MLP in numpy: batched float32 matmuls, chunked so activations stay in cache."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NumpyMLP"]


class NumpyMLP:
    """``y = W_L relu(... relu(W_1 x + b_1) ...) + b_L`` with weights stored as (in, out) float32.

    Args:
        weights: per layer a matrix of shape (in, out) (the transpose of ``nn.Linear.weight``).
        biases: per layer a vector of length ``out`` or ``None`` for a layer without bias.
        chunk: rows per block; a block's hidden activations (chunk x width floats) fit in L2 cache,
            which measured faster than one big product on this machine class.
    """

    def __init__(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray | None], *, chunk: int = 1024) -> None:
        if len(weights) != len(biases) or not weights:
            raise ValueError(f"need one bias (or None) per weight matrix, got {len(weights)} and {len(biases)}")
        self.weights = [np.ascontiguousarray(w, dtype=np.float32) for w in weights]
        self.biases = [None if b is None else np.asarray(b, dtype=np.float32).reshape(-1) for b in biases]
        for i in range(1, len(self.weights)):
            if self.weights[i].shape[0] != self.weights[i - 1].shape[1]:
                raise ValueError(f"layer {i} expects {self.weights[i].shape[0]} inputs, previous gives "
                                 f"{self.weights[i - 1].shape[1]}")
        self.chunk = int(chunk)

    @property
    def in_features(self) -> int:
        return self.weights[0].shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs (n, out_last) for inputs (n, in_features)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"MLP expects inputs of shape (n, {self.in_features}), got {x.shape}")
        out = np.empty((x.shape[0], self.weights[-1].shape[1]), dtype=np.float32)
        for s in range(0, x.shape[0], self.chunk):
            out[s : s + self.chunk] = self._forward(x[s : s + self.chunk])
        return out

    def _forward(self, h: np.ndarray) -> np.ndarray:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w
            if b is not None:
                h += b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h
