"""Every arch the search evaluates, evaluated once.

:class:`ArchEvaluator` sits between the search algorithms and the models. It normalises a population
(unused slots = -1), looks each row up in a store keyed on the normalised row, and sends only the rows
it has never seen to the models: one accuracy-predictor call and one call per device latency model per
batch. A multi-device search therefore computes an arch's accuracy once and shares it across devices,
and the store doubles as the record of every evaluated arch (the Pareto archive is read from it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from predictors.base import ArchModel
from supernets.space import SearchSpace

__all__ = ["ArchEvaluator", "MacsParamsFn"]

#: ``encoded -> (macs, params)``, vectorised (``Supernet.macs_params``).
MacsParamsFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _predict_canonical(model: ArchModel, x: np.ndarray) -> np.ndarray:
    """``model.predict(x)`` for rows already normalised by the space (the template method would
    validate and normalise them again, per model, every generation)."""
    if len(x) == 0:
        return np.zeros(0)
    return np.asarray(model._predict(x), dtype=np.float64).reshape(-1)


class ArchEvaluator:
    """Accuracy, latency on every device and (optionally) MACs/params of archs, each computed once.

    Args:
        space: the search space of the encoded rows.
        accuracy: predicts top-1 (a fraction) from archs or an encoded matrix.
        latency: device name -> latency model (milliseconds).
        macs_params: vectorised MACs/params counter; when given, every new arch is counted as well.
        model_size: vectorised ``encoded -> bytes`` of the exported ONNX (:class:`supernets.model_size.ModelSize`);
            sizes are computed when asked for (numpy gathers, cheaper than a cache lookup), never stored.
    """

    def __init__(
        self,
        space: SearchSpace,
        accuracy: ArchModel,
        latency: Mapping[str, ArchModel],
        *,
        macs_params: MacsParamsFn | None = None,
        model_size: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        for name, model in [("accuracy predictor", accuracy), *((f"latency model {d!r}", m) for d, m in latency.items())]:
            if not isinstance(model, ArchModel):
                raise TypeError(f"{name} must be a predictors.base.ArchModel, got {type(model).__name__}")
            if model.space.n_columns != space.n_columns or model.space.columns != space.columns:
                raise ValueError(
                    f"{name} ({type(model).__name__}) is for space {model.space.name!r} with "
                    f"{model.space.n_columns} columns, but the search space is {space.name!r} with "
                    f"{space.n_columns} columns; use a predictor built for this supernet"
                )
        self.space = space
        self.accuracy = accuracy
        self.latency = dict(latency)
        self.devices: tuple[str, ...] = tuple(self.latency)
        self.macs_params = macs_params
        self.model_size = model_size
        self._index: dict[bytes, int] = {}
        self._cap = 0
        self.n = 0
        self.n_requested = 0
        self._alloc(1024)

    # ------------------------------------------------------------------------------ storage
    def _alloc(self, cap: int) -> None:
        def grow(old: np.ndarray | None, shape: tuple[int, ...], dtype: type, fill: float) -> np.ndarray:
            new = np.full(shape, fill, dtype=dtype)
            if old is not None:
                new[: self.n] = old[: self.n]
            return new

        c, nd = self.space.n_columns, len(self.devices)
        self.X = grow(getattr(self, "X", None), (cap, c), np.int16, -1)
        self.top1 = grow(getattr(self, "top1", None), (cap,), np.float64, np.nan)
        self.lat = grow(getattr(self, "lat", None), (cap, nd), np.float64, np.nan)
        self.macs = grow(getattr(self, "macs", None), (cap,), np.float64, np.nan)
        self.params = grow(getattr(self, "params", None), (cap,), np.float64, np.nan)
        self._cap = cap

    @staticmethod
    def keys(normalized: np.ndarray) -> list[bytes]:
        """Cache keys of normalised rows."""
        x = np.ascontiguousarray(normalized, dtype=np.int16)
        if x.ndim != 2 or x.shape[1] == 0:
            return [r.tobytes() for r in x]
        # one tobytes() and slicing: ~5x faster than a tobytes() per row (the search's hottest Python loop)
        b, w = x.tobytes(), 2 * x.shape[1]
        return [b[i : i + w] for i in range(0, len(b), w)]

    # ----------------------------------------------------------------------------- evaluation
    def evaluate(self, encoded: np.ndarray) -> np.ndarray:
        """Store ids of the rows of ``encoded`` (any valid index matrix), evaluating unseen archs."""
        x = self.space.normalize(encoded)
        self.n_requested += len(x)
        keys = self.keys(x)
        ids = self.lookup(keys)
        new = np.flatnonzero(ids < 0)
        if len(new):
            new_keys = [keys[i] for i in new]
            # first occurrence of each new arch (zip reversed: an earlier duplicate overwrites a later one)
            first = dict(zip(reversed(new_keys), range(len(new_keys) - 1, -1, -1)))
            if len(first) == len(new_keys):  # all distinct (a search's offspring): stored in order
                ids[new] = self.n + np.arange(len(new))
                self._add(x[new], new_keys)
            else:  # stored in order of first occurrence; repeats get the first one's id
                uniq = sorted(first.values())
                slot = {p: self.n + r for r, p in enumerate(uniq)}
                ids[new] = [slot[first[k]] for k in new_keys]
                self._add(x[new[uniq]], [new_keys[p] for p in uniq])
        return ids

    def _add(self, x: np.ndarray, keys: Sequence[bytes]) -> None:
        m = len(x)
        if self.n + m > self._cap:
            self._alloc(max(2 * self._cap, self.n + m))
        sl = slice(self.n, self.n + m)
        top1 = _predict_canonical(self.accuracy, x)
        lat = np.stack([_predict_canonical(self.latency[d], x) for d in self.devices], axis=1) if self.devices else None
        if not np.all(np.isfinite(top1)):
            raise ValueError(f"accuracy predictor {type(self.accuracy).__name__} returned non-finite top-1 values")
        # a NaN would pass silently into the fronts (pymoo keeps the NaN row and drops the real front)
        for k, d in enumerate(self.devices):
            self._check_finite(f"latency model {type(self.latency[d]).__name__} of device {d!r}", "latency_ms",
                               lat[:, k], x)
        if self.macs_params is not None:
            macs, params = self._costs(self.macs_params, x)
        self.X[sl] = x
        self.top1[sl] = top1
        if lat is not None:
            self.lat[sl] = lat
        if self.macs_params is not None:
            self.macs[sl] = macs
            self.params[sl] = params
        self._index.update(zip(keys, range(self.n, self.n + m)))
        self.n += m

    def _costs(self, fn: MacsParamsFn, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``fn(x)``'s MACs and parameter counts, checked finite."""
        macs, params = (np.asarray(v, dtype=np.float64) for v in fn(x))
        self._check_finite("macs_params", "macs", macs, x)
        self._check_finite("macs_params", "params", params, x)
        return macs, params

    def _check_finite(self, source: str, what: str, values: np.ndarray, x: np.ndarray) -> None:
        """Raise naming ``source`` and the first arch of ``x`` whose ``what`` is NaN or infinite."""
        bad = ~np.isfinite(values)
        if not bad.any():
            return
        i = int(np.flatnonzero(bad)[0])
        arch = self.space.decode(np.asarray(x[i : i + 1], dtype=np.int64))[0]
        raise ValueError(f"{source} returned {what} {values[i]} for arch {arch} ({int(bad.sum())} of {len(x)} archs in "
                         f"this batch); it must give a finite {what} for every arch of space {self.space.name!r}: "
                         "check that its table or model covers these choices (e.g. the resolution)")

    def predict_latency(self, normalized: np.ndarray, device: str) -> np.ndarray:
        """Latency (ms) on ``device`` of normalised rows, computed and not stored (a cheap look before evaluating)."""
        return _predict_canonical(self.latency[device], normalized)

    def lookup(self, keys: Sequence[bytes]) -> np.ndarray:
        """Store id per cache key, -1 for archs never evaluated."""
        get = self._index.get
        return np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))

    def ensure_macs_params(self, ids: np.ndarray, fn: MacsParamsFn | None) -> None:
        """Fill MACs/params of some stored archs (when they were not counted during the search)."""
        fn = fn or self.macs_params
        ids = np.asarray(ids, dtype=np.int64)
        todo = ids[np.isnan(self.macs[ids])]
        if fn is None or len(todo) == 0:
            return
        macs, params = self._costs(fn, self.X[todo].astype(np.int64))
        self.macs[todo] = macs
        self.params[todo] = params

    def size_mb(self, ids: np.ndarray) -> np.ndarray:
        """Predicted size (MB, 1e6 bytes) of the exported ONNX of stored archs."""
        if self.model_size is None:
            raise ValueError(f"objective/constraint size_mb needs a model-size predictor; space {self.space.name!r}'s "
                             "supernet offers none (supernets.model_size needs its measurable layers)")
        scalar = np.ndim(ids) == 0
        x = self.X[np.atleast_1d(np.asarray(ids, dtype=np.int64))].astype(np.int64)
        out = np.asarray(self.model_size(x), dtype=np.float64) / 1e6
        return out[0] if scalar else out

    def device_index(self, device: str) -> int:
        try:
            return self.devices.index(device)
        except ValueError:
            raise ValueError(f"device {device!r} is not evaluated by this search; devices: {list(self.devices)}") from None

    def encoded(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Normalised encoded rows (int64) of stored archs (all when ``ids`` is None)."""
        x = self.X[: self.n] if ids is None else self.X[np.asarray(ids, dtype=np.int64)]
        return x.astype(np.int64)

    # ------------------------------------------------------------------------------ persistence
    def state(self) -> dict[str, np.ndarray]:
        n = self.n
        return {
            "X": self.X[:n].copy(), "top1": self.top1[:n].copy(), "lat": self.lat[:n].copy(),
            "macs": self.macs[:n].copy(), "params": self.params[:n].copy(),
            "devices": np.array(self.devices), "n_requested": np.array(self.n_requested),
        }

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore stored evaluations (so a resumed search never re-evaluates nor loses them)."""
        devices = tuple(str(d) for d in state["devices"])
        if devices != self.devices:
            raise ValueError(f"saved search evaluated devices {list(devices)}, this one {list(self.devices)}")
        x = np.asarray(state["X"])
        if x.ndim != 2 or x.shape[1] != self.space.n_columns:
            raise ValueError(f"saved search state holds archs with {x.shape} columns, not of space {self.space.name!r}")
        m = len(x)
        self.n = 0
        self._index.clear()
        self._alloc(max(1024, 2 * m))
        self.X[:m] = x
        self.top1[:m] = state["top1"]
        self.lat[:m] = state["lat"]
        self.macs[:m] = state["macs"]
        self.params[:m] = state["params"]
        for j, k in enumerate(self.keys(x)):
            self._index[k] = j
        self.n = m
        self.n_requested = int(state["n_requested"])
