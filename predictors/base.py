"""The interface shared by accuracy predictors and latency models.

``predict(archs)`` takes a list of :class:`~supernets.space.Arch` or an encoded matrix (as the search
passes a whole population) and returns one float per arch. It validates and normalises once, then calls
the subclass's vectorised ``_predict(encoded)`` (template method, as in pymoo and timm).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from supernets.space import Arch, SearchSpace

__all__ = ["ArchModel", "as_encoded"]


def as_encoded(space: SearchSpace, archs: Sequence[Arch] | np.ndarray | Arch) -> np.ndarray:
    """Canonical index matrix (n, n_columns) for a list of archs or a (possibly unnormalised) matrix."""
    if isinstance(archs, np.ndarray):
        return space.normalize(archs)
    if isinstance(archs, Arch):
        archs = [archs]
    return space.encode(archs)


class ArchModel:
    """Maps archs of one space (and, usually, one supernet) to one number each."""

    #: what the number is, e.g. ``"top1"`` (a fraction) or ``"latency_ms"``.
    target: str = "value"

    def __init__(self, space: SearchSpace, *, supernet: str | None = None) -> None:
        self.space = space
        self.supernet = supernet

    def predict(self, archs: Sequence[Arch] | np.ndarray | Arch) -> np.ndarray:
        """One prediction per arch, as a float64 vector."""
        x = as_encoded(self.space, archs)
        if x.shape[0] == 0:
            return np.zeros(0)
        return np.asarray(self._predict(x), dtype=np.float64).reshape(-1)

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        raise NotImplementedError
