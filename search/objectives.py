"""What a search optimises for one device: objectives (all turned into minimisation) and constraints.

Objective names: ``top1`` (maximised; minimised as the error ``1 - top1``), ``latency_ms`` (the device's
latency model), ``macs``, ``params``, ``size_mb`` (the predicted size of the exported ONNX file, quantized where the arch's precision
genes say so: :mod:`supernets.model_size`). Constraints are upper limits on ``latency_ms``/``macs``/``params``/``size_mb``
and a lower limit on ``top1``; a constraint value is its normalised violation (``<= 0`` is feasible),
as pymoo expects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from search.evaluator import ArchEvaluator

__all__ = ["KNOWN_OBJECTIVES", "DeviceObjectives"]

KNOWN_OBJECTIVES = ("top1", "latency_ms", "macs", "params", "size_mb")


@dataclass(frozen=True)
class DeviceObjectives:
    """Objectives and constraints of one device's search.

    Args:
        device: the device whose latency model gives ``latency_ms``.
        names: objective names (``top1`` first by convention).
        constraints: limit per quantity; ``top1`` is a minimum, the others maxima; ``None`` = off.
    """

    device: str
    names: tuple[str, ...] = ("top1", "latency_ms")
    constraints: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [n for n in self.names if n not in KNOWN_OBJECTIVES]
        if bad:
            raise ValueError(f"unknown objective {bad[0]!r} in {list(self.names)}; objectives are {list(KNOWN_OBJECTIVES)}")
        if len(self.names) < 1 or len(set(self.names)) != len(self.names):
            raise ValueError(f"objectives {list(self.names)}: give at least one, without repeats")
        bad = [n for n in self.constraints if n not in KNOWN_OBJECTIVES]
        if bad:
            raise ValueError(f"unknown constraint {bad[0]!r}; constraints can limit {list(KNOWN_OBJECTIVES)}")
        for n, v in self.constraints.items():
            if not np.isfinite(v) or (n != "top1" and v <= 0):
                raise ValueError(f"constraint {n}={v!r} must be a positive finite number")

    @classmethod
    def build(cls, device: str, names: Sequence[str], constraints: Mapping[str, float | None] | None) -> DeviceObjectives:
        active = {k: float(v) for k, v in (constraints or {}).items() if v is not None}
        return cls(device=device, names=tuple(names), constraints=active)

    @property
    def n_obj(self) -> int:
        return len(self.names)

    @property
    def n_constr(self) -> int:
        return len(self.constraints)

    @property
    def needs_latency(self) -> bool:
        """Whether a latency model must be loaded (``accuracy_macs`` and the like need none)."""
        return "latency_ms" in (*self.names, *self.constraints)

    @property
    def needs_size(self) -> bool:
        """Whether the evaluator must predict model sizes (:mod:`supernets.model_size`)."""
        return "size_mb" in (*self.names, *self.constraints)

    @property
    def needs_macs_params(self) -> bool:
        return any(n in ("macs", "params") for n in (*self.names, *self.constraints))

    def values(self, ev: ArchEvaluator, ids: np.ndarray, name: str) -> np.ndarray:
        """Raw value of one quantity (top1 as a fraction) for stored archs."""
        if name == "top1":
            return ev.top1[ids]
        if name == "latency_ms":
            return latency_values(ev, ids, self.device)
        if name == "macs":
            return ev.macs[ids]
        if name == "params":
            return ev.params[ids]
        if name == "size_mb":
            return ev.size_mb(ids)
        raise ValueError(f"unknown quantity {name!r}")

    def F(self, ev: ArchEvaluator, ids: np.ndarray) -> np.ndarray:
        """(n, n_obj) objective matrix to minimise."""
        cols = []
        for n in self.names:
            v = self.values(ev, ids, n)
            cols.append(1.0 - v if n == "top1" else v)
        return np.stack(cols, axis=1)

    def G(self, ev: ArchEvaluator, ids: np.ndarray) -> np.ndarray:
        """(n, n_constr) normalised violations; ``<= 0`` is feasible."""
        if not self.constraints:
            return np.zeros((len(ids), 0))
        cols = []
        for n, limit in self.constraints.items():
            v = self.values(ev, ids, n)
            cols.append((limit - v) / abs(limit) if n == "top1" else (v - limit) / limit)
        return np.stack(cols, axis=1)

    def violation(self, ev: ArchEvaluator, ids: np.ndarray) -> np.ndarray:
        """Total constraint violation per arch (0 when feasible)."""
        return np.maximum(self.G(ev, ids), 0.0).sum(axis=1)

    def describe_constraints(self) -> str:
        return ", ".join(f"{n} {'>=' if n == 'top1' else '<='} {v:g}" for n, v in self.constraints.items())


def latency_values(ev: ArchEvaluator, ids: np.ndarray, device: str) -> np.ndarray:
    """Predicted latency of stored archs on ``device``; NaN when the search loaded no latency model (its
    objectives and constraints need none)."""
    if not ev.devices:
        return np.full(len(np.atleast_1d(ids)), np.nan) if np.ndim(ids) else np.float64(np.nan)
    return ev.lat[ids, ev.device_index(device)]
