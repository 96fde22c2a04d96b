"""Precision genes for any family's space (SimQ-NAS, APQ: search the architecture and the quantization policy
together): :class:`QuantSpace` appends one ``q`` gene per *precision group* (for OFA-MobileNetV3: the stem and first
block, each elastic stage, the final expand and head) to a base space, with choices in bits: ``8`` (INT8, ONNX
Runtime's static QDQ quantization) or ``32`` (FP32).

The arch string is the base string with a ``_q=...`` suffix, e.g. ``r=32_d=2-3-1_ks=..._e=..._q=32-8-8-8-32``; the
base space, its strings, datasets and tables are unchanged (an FP32-only search keeps using the base space), and a
base string without ``q`` parses as all-FP32 in the quant space. Encoding, sampling and decoding are the base
space's, vectorised, with the ``q`` columns appended after the base columns (so column 0 is still ``r``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from supernets.space import Arch, Column, SearchSpace

__all__ = ["FP32", "INT8", "PRECISION_NAMES", "QuantSpace"]

INT8, FP32 = 8, 32
#: bits -> the precision's name in tables and reports
PRECISION_NAMES = {INT8: "int8", FP32: "fp32"}


@dataclass(frozen=True)
class QuantSpace(SearchSpace):
    """A base space plus ``n_groups`` precision genes (see module doc).

    Args:
        base: the family's space (unchanged).
        n_groups: precision genes (the family's precision groups, e.g. ``n_stages + 2`` for OFA-MobileNetV3).
        bits: allowed precisions, increasing: ``(8, 32)`` for mixed precision; ``(8,)`` or ``(32,)`` pin every
            group (INT8-only / FP32-only searches over the same layout).
    """

    base: SearchSpace | None = None
    n_groups: int = 0
    bits: tuple[int, ...] = (INT8, FP32)

    def __post_init__(self) -> None:
        if not isinstance(self.base, SearchSpace) or isinstance(self.base, QuantSpace):
            raise ValueError(f"QuantSpace needs a base SearchSpace (not a QuantSpace), got {self.base!r}")
        if int(self.n_groups) < 1:
            raise ValueError(f"QuantSpace n_groups must be >= 1, got {self.n_groups!r}")
        bad = [b for b in self.bits if b not in PRECISION_NAMES]
        if not self.bits or bad or list(self.bits) != sorted(set(self.bits)):
            raise ValueError(f"QuantSpace bits must be an increasing subset of {sorted(PRECISION_NAMES)}, "
                             f"got {self.bits!r}")
        if self.name == "space":  # the dataclass default: derive a name that says base and precisions
            tag = "q" if len(self.bits) > 1 else PRECISION_NAMES[self.bits[0]]
            object.__setattr__(self, "name", f"{self.base.name}_{tag}")

    def __getattr__(self, item: str) -> Any:
        # the base space's own fields (resolutions, n_stages, kernel_sizes, ...) read through; guarded for unpickling
        if item.startswith("__") or item in ("base", "n_groups", "bits", "name"):
            raise AttributeError(item)
        return getattr(self.base, item)

    # ------------------------------------------------------------------------------------------ layout
    @property
    def n_base(self) -> int:
        return self.base.n_columns

    @cached_property
    def q_slice(self) -> slice:
        return slice(self.n_base, self.n_base + self.n_groups)

    def _build_columns(self) -> tuple[Column, ...]:
        if "q" in self.base.group_names:
            raise ValueError(f"base space {self.base.name!r} already has a gene 'q'")
        return (*self.base.columns, *(Column("q", g, tuple(self.bits)) for g in range(self.n_groups)))

    def _active_mask(self, encoded: np.ndarray) -> np.ndarray:
        base = self.base._active_mask(encoded[:, : self.n_base])
        return np.concatenate([base, np.ones((encoded.shape[0], self.n_groups), dtype=bool)], axis=1)

    def count(self) -> int:
        return self.base.count() * len(self.bits) ** self.n_groups

    # --------------------------------------------------------------------------- base arch + precisions
    def split(self, arch: Arch) -> tuple[Arch, tuple[int, ...]]:
        """``(base arch, bits per group)`` of a quant arch."""
        if arch.space != self:
            raise ValueError(f"arch {arch} belongs to space {arch.space.name!r}, not {self.name!r}")
        return Arch(self.base, arch.idx[: self.n_base]), tuple(self.bits[i] for i in arch.idx[self.q_slice])

    def join(self, base_arch: Arch, bits: Any) -> Arch:
        """The quant arch of a base arch with ``bits`` (one value per group, or one for all)."""
        if base_arch.space != self.base:
            raise ValueError(f"arch {base_arch} belongs to space {base_arch.space.name!r}, not {self.base.name!r}")
        bits = [bits] * self.n_groups if np.isscalar(bits) else list(bits)
        if len(bits) != self.n_groups:
            raise ValueError(f"gene 'q' needs {self.n_groups} values for space {self.name!r}, got {len(bits)}: {bits}")
        q = [self._index_of(self.n_base + g, b) for g, b in enumerate(bits)]
        return Arch(self, (*base_arch.idx, *q))

    def base_encoded(self, encoded: np.ndarray) -> np.ndarray:
        """The base space's columns of an encoded matrix (vectorised)."""
        return np.asarray(encoded)[:, : self.n_base]

    def with_pure_policies(self, encoded: np.ndarray) -> np.ndarray:
        """A copy of encoded rows (or genomes: the same columns) where, with several precisions allowed, every third
        row from the first is all-FP32 and every third from the second all-INT8 (the rest keep their genes).

        Drawn gene by gene a whole-FP32 or whole-INT8 net almost never comes up (2 of 128 policies for
        OFA-MobileNetV3), yet they are the references a mixed policy must beat and what INT8-only and FP32-only
        searches export: latency calibration and a search's initial population start from them."""
        out = np.array(encoded, dtype=np.int64)
        if len(self.bits) > 1:
            out[0::3, self.q_slice] = len(self.bits) - 1  # the widest precision (FP32)
            out[1::3, self.q_slice] = 0  # the narrowest (INT8)
        return out

    def int8_mask(self, encoded: np.ndarray) -> np.ndarray:
        """``(n, n_groups)`` bool: which groups of each encoded row run in INT8 (vectorised)."""
        return np.asarray(self.bits)[np.asarray(encoded)[:, self.q_slice]] == INT8

    def policy(self, arch: Arch) -> str:
        """``fp32``, ``int8`` or ``mixed``: what a whole arch's precision genes say."""
        bits = set(self.split(arch)[1])
        return PRECISION_NAMES[bits.pop()] if len(bits) == 1 else "mixed"

    # ----------------------------------------------------------------------------------- strings, OFA
    def parse(self, text: str) -> Arch:
        """Inverse of ``str(arch)``; a base-space string (no ``q`` group) is all-FP32 where FP32 is allowed."""
        if isinstance(text, str) and text and not any(p.startswith("q=") for p in text.strip().split("_")):
            if FP32 not in self.bits:
                raise ValueError(f"arch string {text!r} has no precision gene 'q' and space {self.name!r} "
                                 f"allows only {[PRECISION_NAMES[b] for b in self.bits]}")
            return self.join(self.base.parse(text), FP32)
        return super().parse(text)

    def from_ofa_dict(self, config: Mapping[str, Any]) -> Arch:
        """The base space's OFA dict plus an optional ``q`` list of bits (default: all FP32, or the only choice)."""
        q = config.get("q", FP32 if FP32 in self.bits else self.bits[0])
        return self.join(self.base.from_ofa_dict({k: v for k, v in config.items() if k != "q"}), q)

    def to_ofa_dict(self, arch: Arch) -> dict[str, Any]:
        base, bits = self.split(arch)
        return {**self.base.to_ofa_dict(base), "q": list(bits)}
