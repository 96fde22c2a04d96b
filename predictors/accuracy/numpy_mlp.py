"""Inference of a ReLU MLP in numpy: batched float64 matmuls rounded to float32 outputs, chunked so activations
stay in cache."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NumpyMLP"]


class NumpyMLP:
    """``y = W_L relu(... relu(W_1 x + b_1) ...) + b_L`` for float32 weights, computed in float64 and rounded to
    float32.

    Why float64: BLAS libraries pick their kernels by CPU, and kernels sum in different orders. In float32, OpenBLAS's
    AVX2 and AVX-512 kernels gave OFA's predictor outputs that differed in the last bit (up to 6e-8) for 6% of
    2,000 archs. Searches rank by these values, so RESULTS.md's Table 1 came out differently on two hosts
    (``OPENBLAS_CORETYPE=Haswell`` reproduced the other host's rows). In float64 those differences are about 1e-16,
    and rounding to float32 hides them except in the rare case where a value sits right at a rounding boundary.

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
        # the same float32 values held as float64 (exactly): the model is float32, the arithmetic is not
        self._weights64 = [w.astype(np.float64) for w in self.weights]
        self._biases64 = [None if b is None else b.astype(np.float64) for b in self.biases]
        for i in range(1, len(self.weights)):
            if self.weights[i].shape[0] != self.weights[i - 1].shape[1]:
                raise ValueError(f"layer {i} expects {self.weights[i].shape[0]} inputs, previous gives "
                                 f"{self.weights[i - 1].shape[1]}")
        self.chunk = int(chunk)

    @property
    def in_features(self) -> int:
        return self.weights[0].shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 outputs (n, out_last) for inputs (n, in_features) (read as float32, as the model was trained)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"MLP expects inputs of shape (n, {self.in_features}), got {x.shape}")
        out = np.empty((x.shape[0], self.weights[-1].shape[1]), dtype=np.float32)
        for s in range(0, x.shape[0], self.chunk):
            out[s : s + self.chunk] = self._forward(x[s : s + self.chunk].astype(np.float64))  # rounds to float32
        return out

    def _forward(self, h: np.ndarray) -> np.ndarray:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self._weights64, self._biases64)):
            h = h @ w
            if b is not None:
                h += b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h
