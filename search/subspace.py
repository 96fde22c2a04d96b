"""Use a model built for a space on a sub-space of it (fewer choices per gene, e.g. fewer resolutions).

``supernet.resolutions=[160,176,192,208,224]`` searches OFA's tutorial resolutions while the latency table
and predictor were built for the full 128..224 space: the encoded indices differ, the archs do not.
:func:`adapt` re-indexes each column by value, vectorised, and refuses spaces that are not sub-spaces.
"""

from __future__ import annotations

import numpy as np

from predictors.base import ArchModel
from supernets.space import SearchSpace

__all__ = ["SubspaceModel", "adapt"]


class SubspaceModel(ArchModel):
    """``model`` (over ``model.space``) seen from ``space``, whose choices are a subset per column."""

    def __init__(self, model: ArchModel, space: SearchSpace) -> None:
        super().__init__(space, supernet=model.supernet)
        self.model = model
        self.target = model.target
        outer = model.space
        if type(outer) is not type(space) or [c.label for c in outer.columns] != [c.label for c in space.columns]:
            raise ValueError(f"{type(model).__name__} is for space {outer.name!r} ({outer.n_columns} columns: "
                             f"{type(outer).__name__}); the search space {space.name!r} has other genes "
                             f"({space.n_columns} columns: {type(space).__name__}); use a model built for this supernet")
        width = int(space.n_choices.max())
        self.table = np.full((space.n_columns, width + 1), -1, dtype=np.int64)  # last entry: unused (-1) -> -1
        for c, (mine, theirs) in enumerate(zip(space.columns, outer.columns)):
            missing = [v for v in mine.choices if v not in theirs.choices]
            if missing:
                raise ValueError(f"{type(model).__name__} does not cover gene {mine.label}={missing[0]!r} of the search "
                                 f"space (it knows {list(theirs.choices)}); use a model built for these choices")
            self.table[c, : len(mine.choices)] = [theirs.choices.index(v) for v in mine.choices]
        # only the columns whose indices change are re-indexed (a resolution subset: one column of 46), on the
        # search's hot path for every latency and accuracy call
        same = [np.array_equal(self.table[c, : len(col.choices)], np.arange(len(col.choices)))
                for c, col in enumerate(space.columns)]
        self._remap = np.flatnonzero(~np.asarray(same, dtype=bool))

    def _predict(self, encoded: np.ndarray) -> np.ndarray:
        # re-indexing a canonical row gives a canonical row of the outer space: skip its re-validation
        x = np.array(encoded, dtype=np.int64)
        if len(self._remap):
            x[:, self._remap] = self.table[self._remap[None, :], encoded[:, self._remap]]  # -1 (unused) -> -1
        return self.model._predict(x)


def adapt(model: ArchModel, space: SearchSpace) -> ArchModel:
    """``model`` itself when it is for ``space``'s columns, else a re-indexing :class:`SubspaceModel`."""
    if model.space.columns == space.columns:
        return model
    return SubspaceModel(model, space)
