"""Inference of a ReLU MLP in numpy: fast float32 matmuls, outputs rounded to 17 significant bits and, where float32's
error could change that rounding, recomputed in float64; chunked so activations stay in cache."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NumpyMLP"]

#: significant bits kept of every output (a top-1 in [0.5, 1) lands on a grid of 2**-17 ~ 7.6e-6, so it moves by at most
#: 3.8e-6)
SIGNIFICANT_BITS = 17
_U32 = 2.0**-24  # float32's unit roundoff


def round_bits(y: np.ndarray, bits: int = SIGNIFICANT_BITS) -> tuple[np.ndarray, np.ndarray]:
    """``y`` rounded to ``bits`` significant bits (half to even), and each value's distance to the nearest place
    where that rounding flips (a midpoint between two grid values, or a power of two, where the grid changes)."""
    mant, exp = np.frexp(y)  # |mant| in [0.5, 1)
    scaled = np.ldexp(mant, bits)  # |scaled| in [2**(bits-1), 2**bits)
    q = np.ldexp(np.rint(scaled), exp - bits)
    to_mid = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5)
    to_binade = np.abs(np.abs(mant) - 0.5) * 2.0**bits  # how close |y| is to the power of two below it
    dist = np.ldexp(np.minimum(to_mid, to_binade), exp - bits)
    return q, dist


class NumpyMLP:
    """``y = W_L relu(... relu(W_1 x + b_1) ...) + b_L`` for float32 weights, with outputs that do not depend on the
    CPU's BLAS kernels.

    BLAS libraries pick their kernels by CPU, and kernels sum in different orders: in float32, OpenBLAS's AVX2 and
    AVX-512 kernels gave OFA's predictor outputs that differed in the last bit (up to 6e-8) for 6% of 2,000 archs.
    Searches rank by these values, so RESULTS.md's Table 1 came out differently on two hosts
    (``OPENBLAS_CORETYPE=Haswell`` reproduced the other host's rows). All in float64 those differences are ~1e-16, but
    float64 matmuls cost twice float32's, and this MLP is most of a search's time (issue #31).

    So the hidden layers run in float32 and the last layer in float64, and every output is rounded to
    ``SIGNIFICANT_BITS`` bits. That rounding is the one of the exact value unless float32's error moves the value across
    a rounding boundary, so outputs closer to one than a bound on that error are recomputed in float64 (in one pass with
    the checked rows: 64 per block until 256 have been checked, then ``check_rows``). The bound is ``margin`` times the
    largest float32 error seen in the checked rows, at least 2 float32 units of the value. Measured on OFA's predictor
    over 200k archs (random and ladder-sampled): the largest float32 error was 1.9e-8, 4.8x the 1st percentile of 16-row
    maxima; under three OpenBLAS kernels (SkylakeX, Haswell, Prescott) every output equalled the float64 one rounded to
    17 bits, with ~7% of the outputs of 200-row blocks computed in float64.

    Args:
        weights: per layer a matrix of shape (in, out) (the transpose of ``nn.Linear.weight``).
        biases: per layer a vector of length ``out`` or ``None`` for a layer without bias.
        chunk: rows per block; a block's hidden activations (chunk x width floats) fit in L2 cache,
            which measured faster than one big product on this machine class.
    """

    def __init__(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray | None], *, chunk: int = 1024,
                 check_rows: int = 8, margin: float = 8.0) -> None:
        if len(weights) != len(biases) or not weights:
            raise ValueError(f"need one bias (or None) per weight matrix, got {len(weights)} and {len(biases)}")
        self.weights = [np.ascontiguousarray(w, dtype=np.float32) for w in weights]
        self.biases = [None if b is None else np.asarray(b, dtype=np.float32).reshape(-1) for b in biases]
        # the same float32 values held as float64 (exactly): the model is float32, the exact arithmetic is not
        self._weights64 = [w.astype(np.float64) for w in self.weights]
        self._biases64 = [None if b is None else b.astype(np.float64) for b in self.biases]
        for i in range(1, len(self.weights)):
            if self.weights[i].shape[0] != self.weights[i - 1].shape[1]:
                raise ValueError(f"layer {i} expects {self.weights[i].shape[0]} inputs, previous gives "
                                 f"{self.weights[i - 1].shape[1]}")
        self.chunk = int(chunk)
        self.check_rows = int(check_rows)
        self.margin = float(margin)
        self._err = 0.0  # largest float32 error seen in the checked rows
        self._n_checked = 0
        self.n_exact = 0  # outputs computed in float64 (checked or near a rounding boundary), for benchmarks

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
            out[s : s + self.chunk] = self._block(x[s : s + self.chunk])
        return out

    def _block(self, x: np.ndarray) -> np.ndarray:
        y = self._forward32(x)
        q, dist = round_bits(y)
        floor = 2.0 * _U32 * np.abs(y)
        near = (dist <= np.maximum(self.margin * self._err, floor)).any(axis=1)
        # more checked rows until the bound rests on a few hundred (a search's first batch), then a few per block
        k = min(len(x), self.check_rows if self._n_checked >= 256 else 64)
        self._n_checked += k
        near[:k] = True  # the checked rows: their float32 errors update the bound
        redo = np.flatnonzero(near)
        exact = self._forward(x[redo].astype(np.float64))  # one float64 pass: weights are read once
        err = float(np.abs(y[:k] - exact[:k]).max()) if k else 0.0
        if err > self._err:  # a larger bound: rows it newly puts near a boundary (rare once the bound has settled)
            self._err = err
            more = np.flatnonzero(~near & (dist <= np.maximum(self.margin * err, floor)).any(axis=1))
            if len(more):
                redo = np.concatenate([redo, more])
                exact = np.concatenate([exact, self._forward(x[more].astype(np.float64))])
        q[redo] = round_bits(exact)[0]
        self.n_exact += len(redo)
        return q  # exactly representable in float32 (16 <= 24 bits)

    def _forward32(self, h: np.ndarray) -> np.ndarray:
        """Hidden layers in float32, the last in float64 (a vector per row: cheap, and no float32 rounding of the
        outputs themselves)."""
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = h @ w
            if b is not None:
                h += b
            np.maximum(h, 0.0, out=h)
        y = h.astype(np.float64) @ self._weights64[-1]
        if self._biases64[-1] is not None:
            y += self._biases64[-1]
        return y

    def _forward(self, h: np.ndarray) -> np.ndarray:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self._weights64, self._biases64)):
            h = h @ w
            if b is not None:
                h += b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h
