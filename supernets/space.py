"""Search spaces and architectures.

A search space is declared once, as a frozen dataclass of choice tuples (OFA kept it in three places).
Everything else reads it: the supernets, the configs, predictor encodings and the search problem.

Encoding. A space lays its genes out as flat *columns* (``r``, then each gene group slot by slot, e.g.
``d[0..4]``, ``ks[0..19]``, ``e[0..19]`` for OFA-MobileNetV3). An arch encodes to one integer row of
choice indices, with ``-1`` for slots the arch does not use (a block beyond its stage's depth). The
encoded form is canonical: two archs are equal exactly when their rows are equal.

String form. ``r=192_d=2-2-3-4-3_ks=5-3-x-x-..._e=3-3-x-x-...``: gene groups joined by ``_``, values
by ``-``, ``x`` for an unused slot. It contains only characters that are safe in file names and CSV
cells, and ``space.parse(str(arch)) == arch``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

__all__ = [
    "UNUSED",
    "Arch",
    "Column",
    "MobileNetV3Space",
    "ResNetSpace",
    "SearchSpace",
    "check_increasing",
    "gene_list",
    "stage_slot_mask",
]

#: Index stored in an encoded matrix for a slot the arch does not use.
UNUSED = -1
_UNUSED_TOKEN = "x"
_GROUP_RE = re.compile(r"^([a-z]+)=(.+)\Z")
_INT_TOKEN = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_FLOAT_TOKEN = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)


@dataclass(frozen=True)
class Column:
    """One column of the encoded matrix: a gene group, the slot inside it, and its choices."""

    group: str
    slot: int
    choices: tuple[Any, ...]

    @property
    def label(self) -> str:
        return self.group if self.slot < 0 else f"{self.group}[{self.slot}]"


class Arch:
    """An immutable, hashable architecture of a given search space.

    Build archs through the space (``space.arch(...)``, ``space.parse(...)``, ``space.from_ofa_dict(...)``,
    ``space.sample(...)``, ``space.decode(...)``); the constructor trusts that ``idx`` is canonical.
    Gene groups read as attributes: ``arch.r``, ``arch.d``, ``arch.ks`` (``None`` marks an unused slot).
    """

    __slots__ = ("_hash", "idx", "space")

    def __init__(self, space: SearchSpace, idx: tuple[int, ...]) -> None:
        object.__setattr__(self, "space", space)
        object.__setattr__(self, "idx", idx)
        object.__setattr__(self, "_hash", hash((space.name, idx)))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Arch is immutable")

    def __getattr__(self, group: str) -> Any:
        space = object.__getattribute__(self, "space")
        if group in space.group_names:
            return space.group_values(self, group)
        raise AttributeError(f"{type(self).__name__} of space {space.name!r} has no gene group {group!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and self.idx == other.idx and self.space == other.space

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return self.space.format(self)

    def __repr__(self) -> str:
        return f"Arch({self.space.name}: {self})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Arch, (self.space, self.idx))

    def to_dict(self) -> dict[str, Any]:
        """Gene groups as plain values: ``{"r": 224, "d": [...], "ks": [..., None, ...]}``."""
        return {g: self.space.group_values(self, g) for g in self.space.group_names}

    def to_ofa_dict(self) -> dict[str, Any]:
        """The OFA reference code's dict form (unused slots filled with the smallest choice)."""
        return self.space.to_ofa_dict(self)


@dataclass(frozen=True)
class SearchSpace:
    """Base of all search spaces: the flat column layout and everything derived from it.

    Subclasses declare their choice tuples as dataclass fields and implement ``_build_columns``,
    ``_active_mask`` (vectorised: which slots each encoded row uses), ``count`` and the OFA dict form.
    """

    name: str = "space"

    # ----------------------------------------------------------------------------------------- layout
    def _build_columns(self) -> tuple[Column, ...]:
        raise NotImplementedError

    def _active_mask(self, encoded: np.ndarray) -> np.ndarray:
        """Boolean matrix (n, n_columns): True where a row uses the slot. ``encoded`` holds valid
        indices in every column that decides depth."""
        raise NotImplementedError

    def count(self) -> int:
        """Exact number of distinct architectures at one resolution."""
        raise NotImplementedError

    def from_ofa_dict(self, config: Mapping[str, Any]) -> Arch:
        raise NotImplementedError

    def to_ofa_dict(self, arch: Arch) -> dict[str, Any]:
        raise NotImplementedError

    @cached_property
    def columns(self) -> tuple[Column, ...]:
        return self._build_columns()

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @cached_property
    def group_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.group for c in self.columns))

    @cached_property
    def group_slices(self) -> dict[str, slice]:
        """Column range of each gene group in the encoded matrix."""
        out: dict[str, slice] = {}
        for g in self.group_names:
            cols = [i for i, c in enumerate(self.columns) if c.group == g]
            out[g] = slice(cols[0], cols[-1] + 1)
        return out

    @cached_property
    def n_choices(self) -> np.ndarray:
        """Number of choices per column (the upper bound, exclusive, of each encoded gene)."""
        return np.array([len(c.choices) for c in self.columns], dtype=np.int64)

    @cached_property
    def one_hot_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.n_choices)[:-1]]).astype(np.int64)

    @property
    def one_hot_size(self) -> int:
        return int(self.n_choices.sum())

    def count_with_resolutions(self) -> int:
        """Exact number of (architecture, resolution) pairs."""
        return self.count() * len(self.columns[self.group_slices["r"].start].choices)

    # ---------------------------------------------------------------------------- values and archs
    def group_values(self, arch: Arch, group: str) -> Any:
        sl = self.group_slices[group]
        vals = [None if i == UNUSED else self.columns[c].choices[i] for c, i in zip(range(sl.start, sl.stop), arch.idx[sl])]
        if self.columns[sl.start].slot < 0:
            return vals[0]
        return tuple(vals)

    def arch(self, **groups: Any) -> Arch:
        """Build an arch from gene values, e.g. ``space.arch(r=224, d=[...], ks=[...], e=[...])``.

        Values in slots the arch does not use are ignored (they may be ``None``).
        """
        unknown = set(groups) - set(self.group_names)
        if unknown:
            raise ValueError(
                f"unknown gene {sorted(unknown)[0]!r} for space {self.name!r}; genes are {list(self.group_names)}"
            )
        idx = np.full(self.n_columns, UNUSED, dtype=np.int64)
        provided: dict[int, Any] = {}
        for g in self.group_names:
            if g not in groups:
                raise ValueError(f"gene {g!r} missing for space {self.name!r}; genes are {list(self.group_names)}")
            sl = self.group_slices[g]
            n = sl.stop - sl.start
            val = groups[g]
            if self.columns[sl.start].slot < 0:
                if isinstance(val, (list, tuple)) and len(val) == 1:  # DyNAS-T writes r as [224]
                    val = val[0]
                provided[sl.start] = val
            else:
                if isinstance(val, (str, bytes)) or (not isinstance(val, Sequence) and not isinstance(val, np.ndarray)):
                    raise ValueError(f"gene {g!r} needs a sequence of {n} values, got {val!r}")
                if len(val) != n:
                    raise ValueError(f"gene {g!r} needs {n} values for space {self.name!r}, got {len(val)}: {list(val)}")
                for k, v in enumerate(val):
                    provided[sl.start + k] = v
        # The depth-deciding columns are never masked: encode them first, then the mask tells the rest.
        for c in self._always_active_columns:
            idx[c] = self._index_of(c, provided[c])
        active = self._active_mask(idx[None, :])[0]
        for c in range(self.n_columns):
            if active[c] and idx[c] == UNUSED:
                idx[c] = self._index_of(c, provided[c])
        return Arch(self, tuple(int(i) for i in idx))

    @cached_property
    def _always_active_columns(self) -> tuple[int, ...]:
        full = np.zeros((1, self.n_columns), dtype=np.int64)
        mins = self._active_mask(full)[0]
        maxs = self._active_mask((self.n_choices - 1)[None, :])[0]
        return tuple(int(c) for c in np.flatnonzero(mins & maxs))

    @cached_property
    def _always_active_array(self) -> np.ndarray:
        return np.asarray(self._always_active_columns, dtype=np.int64)

    @cached_property
    def _value_to_index(self) -> tuple[dict[Any, int], ...]:
        return tuple({v: i for i, v in enumerate(c.choices)} for c in self.columns)

    def _index_of(self, column: int, value: Any) -> int:
        col = self.columns[column]
        if isinstance(value, np.generic):
            value = value.item()
        try:
            return self._value_to_index[column][value]
        except (KeyError, TypeError):
            raise ValueError(
                f"gene {col.label} of space {self.name!r}: value {value!r} is not one of the allowed choices "
                f"{list(col.choices)}"
            ) from None

    # ------------------------------------------------------------------------------ string form
    def format(self, arch: Arch) -> str:
        parts = []
        for g in self.group_names:
            sl = self.group_slices[g]
            toks = [
                _UNUSED_TOKEN if i == UNUSED else _fmt(self.columns[c].choices[i])
                for c, i in zip(range(sl.start, sl.stop), arch.idx[sl])
            ]
            parts.append(f"{g}={'-'.join(toks)}")
        return "_".join(parts)

    def parse(self, text: str) -> Arch:
        """Inverse of ``str(arch)``; raises ValueError naming what is wrong."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"cannot parse arch string {text!r} for space {self.name!r}")
        groups: dict[str, Any] = {}
        for part in text.strip().split("_"):
            m = _GROUP_RE.match(part)
            if not m:
                raise ValueError(
                    f"malformed arch string {text!r}: group {part!r} is not 'name=v1-v2-...' "
                    f"(expected groups {list(self.group_names)})"
                )
            name, body = m.groups()
            if name not in self.group_names:
                raise ValueError(f"unknown gene {name!r} in arch string {text!r}; genes are {list(self.group_names)}")
            if name in groups:
                raise ValueError(f"gene {name!r} appears more than once in arch string {text!r}")
            col0 = self.columns[self.group_slices[name].start]
            vals = [None if t == _UNUSED_TOKEN else _parse_number(t, col0.choices, name, text) for t in body.split("-")]
            groups[name] = vals[0] if col0.slot < 0 and len(vals) == 1 else vals
        return self.arch(**groups)

    # -------------------------------------------------------------------------------- encoding
    def encode(self, archs: Iterable[Arch] | Arch) -> np.ndarray:
        """Integer matrix (n, n_columns) of choice indices; ``-1`` marks unused slots."""
        if isinstance(archs, Arch):
            archs = [archs]
        archs = list(archs)
        for a in archs:
            if not isinstance(a, Arch) or a.space != self:
                raise ValueError(f"cannot encode {a!r} with space {self.name!r}: it belongs to another space")
        if not archs:
            return np.zeros((0, self.n_columns), dtype=np.int64)
        return np.array([a.idx for a in archs], dtype=np.int64)

    def normalize(self, encoded: np.ndarray) -> np.ndarray:
        """Canonical form of any valid index matrix: unused slots set to ``-1`` (vectorised)."""
        x = self.validate_encoded(encoded, allow_unused=True)
        filled = np.maximum(x, 0)
        return np.where(self._active_mask(filled), filled, UNUSED)

    def validate_encoded(self, encoded: np.ndarray, *, allow_unused: bool = True) -> np.ndarray:
        x = np.asarray(encoded)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_columns:
            raise ValueError(
                f"encoded archs for space {self.name!r} must have shape (n, {self.n_columns}), got {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.integer):
            if not np.all(np.mod(x, 1) == 0):
                raise ValueError("encoded archs must hold integer choice indices")
            x = x.astype(np.int64)
        low = -1 if allow_unused else 0
        # fast check first (normalising is on the search's hot path); the masks only to name the bad gene
        if x.size and (x.min() < low or (x >= self.n_choices[None, :]).any()):
            bad = (x < low) | (x >= self.n_choices[None, :])
            r, c = np.argwhere(bad)[0]
            col = self.columns[c]
            raise ValueError(
                f"encoded gene {col.label} of space {self.name!r}: index {x[r, c]} out of range "
                f"[0, {len(col.choices)}) for choices {list(col.choices)}"
            )
        if allow_unused and x.size and len(self._always_active_array) and x[:, self._always_active_array].min() < 0:
            bad_depth = x[:, self._always_active_array] < 0
            r, c = np.argwhere(bad_depth)[0]
            raise ValueError(f"encoded gene {self.columns[self._always_active_columns[c]].label} cannot be unused")
        return x.astype(np.int64, copy=False)

    def decode(self, encoded: np.ndarray) -> list[Arch]:
        """Archs from an index matrix; values in unused slots are ignored."""
        x = self.normalize(encoded)
        return [Arch(self, tuple(row)) for row in x.tolist()]

    def active_mask(self, encoded: np.ndarray) -> np.ndarray:
        return self._active_mask(np.where(np.asarray(encoded) < 0, 0, encoded))

    def one_hot(self, archs: Iterable[Arch] | np.ndarray) -> np.ndarray:
        """Float32 one-hot features (n, one_hot_size): one block per column, zeros for unused slots."""
        x = archs if isinstance(archs, np.ndarray) else self.encode(archs)
        x = self.normalize(x)
        n = x.shape[0]
        out = np.zeros((n, self.one_hot_size), dtype=np.float32)
        rows, cols = np.nonzero(x >= 0)
        out[rows, self.one_hot_offsets[cols] + x[rows, cols]] = 1.0
        return out

    def values(self, encoded: np.ndarray, group: str) -> np.ndarray:
        """Gene values of one group as a float matrix (NaN where unused), vectorised."""
        x = np.asarray(encoded)
        sl = self.group_slices[group]
        table = np.full((sl.stop - sl.start, int(self.n_choices[sl].max())), np.nan)
        for k, c in enumerate(range(sl.start, sl.stop)):
            table[k, : len(self.columns[c].choices)] = self.columns[c].choices
        sub = x[:, sl]
        out = table[np.arange(sl.stop - sl.start)[None, :], np.where(sub < 0, 0, sub)]
        return np.where(sub < 0, np.nan, out)

    # -------------------------------------------------------------------------------- sampling
    def sample_encoded(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` archs drawn uniformly gene by gene (as OFA samples), normalised."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError("pass a numpy.random.Generator (np.random.default_rng(seed)); seeds are not global")
        x = rng.integers(0, self.n_choices[None, :], size=(n, self.n_columns))
        return self.normalize(x)

    def sample(self, rng: np.random.Generator, n: int | None = None) -> Arch | list[Arch]:
        """One arch (``n=None``) or a list of ``n`` archs."""
        archs = self.decode(self.sample_encoded(rng, 1 if n is None else n))
        return archs[0] if n is None else archs

    def max_arch(self, resolution: int | None = None) -> Arch:
        return self._extreme(self.n_choices - 1, resolution)

    def min_arch(self, resolution: int | None = None) -> Arch:
        return self._extreme(np.zeros(self.n_columns, dtype=np.int64), resolution)

    def _extreme(self, idx: np.ndarray, resolution: int | None) -> Arch:
        idx = idx.copy()
        if resolution is not None:
            c = self.group_slices["r"].start
            idx[c] = self._index_of(c, resolution)
        return self.decode(idx[None, :])[0]

    def with_resolution(self, arch: Arch, resolution: int) -> Arch:
        c = self.group_slices["r"].start
        idx = list(arch.idx)
        idx[c] = self._index_of(c, resolution)
        return Arch(self, tuple(idx))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _parse_number(token: str, choices: tuple[Any, ...], group: str, text: str) -> Any:
    # ASCII digits only, integers without sign or leading zeros: int() also takes '٣', '+3', ' 3' and '03', and
    # an arch that does not print back as the string given is another row, another cache key, another file name
    is_float = isinstance(choices[0], float)
    if not (_FLOAT_TOKEN if is_float else _INT_TOKEN).fullmatch(token):
        raise ValueError(
            f"malformed arch string {text!r}: gene {group!r} value {token!r} is not a number written in ASCII "
            f"digits{'' if is_float else ' without sign or leading zero'} (allowed choices {list(choices)})"
        )
    return float(token) if is_float else int(token)


def stage_slot_mask(depth: np.ndarray, slots_per_stage: Sequence[int]) -> np.ndarray:
    """(n, sum(slots)) mask: slot j of stage s is used when j < depth[:, s]."""
    pos, stage = _slot_positions(tuple(int(k) for k in slots_per_stage))
    return pos[None, :] < depth[:, stage]


@functools.lru_cache(maxsize=64)
def _slot_positions(slots_per_stage: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each slot's position within its stage, and its stage (cached: normalising is on the search's hot path)."""
    pos = np.concatenate([np.arange(k) for k in slots_per_stage])
    stage = np.repeat(np.arange(len(slots_per_stage)), slots_per_stage)
    return pos, stage


# ------------------------------------------------------------------------------------- families
def _default_resolutions() -> tuple[int, ...]:
    return tuple(range(128, 225, 4))


def gene_list(config: Mapping[str, Any], key: str) -> list:
    """An OFA dict's per-slot gene as a list; a scalar or string gets the contract's ValueError, not a TypeError."""
    v = config[key]
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
        raise ValueError(f"gene {key!r} of an OFA dict must be a list of per-slot values, got {v!r}")
    return list(v)


def check_increasing(**choices: Sequence[float]) -> None:
    """Every gene's choices non-empty and strictly increasing (min/max archs and encodings rely on it)."""
    for label, ch in choices.items():
        if not ch or list(ch) != sorted(set(ch)):
            raise ValueError(f"{label} must be a non-empty strictly increasing tuple, got {ch}")


@dataclass(frozen=True)
class MobileNetV3Space(SearchSpace):
    """OFA-MobileNetV3 space (Cai et al., *Once-for-All*, ICLR 2020): per elastic stage a depth, per
    block slot a kernel size and an expand ratio, and an input resolution.

    Columns: ``r``, ``d[0..n_stages)``, ``ks[0..n_slots)``, ``e[0..n_slots)`` with
    ``n_slots = n_stages * max(depths)``.
    """

    name: str = "ofa_mbv3"
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[int, ...] = (3, 4, 6)
    depths: tuple[int, ...] = (2, 3, 4)
    n_stages: int = 5
    resolutions: tuple[int, ...] = field(default_factory=_default_resolutions)

    def __post_init__(self) -> None:
        check_increasing(kernel_sizes=self.kernel_sizes, expand_ratios=self.expand_ratios, depths=self.depths,
                          resolutions=self.resolutions)
        if min(self.depths) < 1:
            raise ValueError(f"depths must be >= 1, got {self.depths}")

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def n_slots(self) -> int:
        return self.n_stages * self.max_depth

    def _build_columns(self) -> tuple[Column, ...]:
        cols = [Column("r", -1, tuple(self.resolutions))]
        cols += [Column("d", s, tuple(self.depths)) for s in range(self.n_stages)]
        cols += [Column("ks", i, tuple(self.kernel_sizes)) for i in range(self.n_slots)]
        cols += [Column("e", i, tuple(self.expand_ratios)) for i in range(self.n_slots)]
        return tuple(cols)

    def _active_mask(self, encoded: np.ndarray) -> np.ndarray:
        depth = np.asarray(self.depths)[encoded[:, 1 : 1 + self.n_stages]]
        slot = stage_slot_mask(depth, [self.max_depth] * self.n_stages)
        head = np.ones((encoded.shape[0], 1 + self.n_stages), dtype=bool)
        return np.concatenate([head, slot, slot], axis=1)

    def count(self) -> int:
        per_block = len(self.kernel_sizes) * len(self.expand_ratios)
        return sum(per_block**d for d in self.depths) ** self.n_stages

    def from_ofa_dict(self, config: Mapping[str, Any]) -> Arch:
        """From ``{"ks": [20], "e": [20], "d": [5], "r": int or [int]}`` (extra keys like ``wid`` ignored)."""
        missing = [k for k in ("ks", "e", "d", "r") if k not in config]
        if missing:
            raise ValueError(f"OFA MobileNetV3 dict needs keys ks, e, d, r; missing {missing}")
        return self.arch(r=config["r"], d=gene_list(config, "d"), ks=gene_list(config, "ks"), e=gene_list(config, "e"))

    def to_ofa_dict(self, arch: Arch) -> dict[str, Any]:
        fill = {"ks": self.kernel_sizes[0], "e": self.expand_ratios[0]}
        out: dict[str, Any] = {g: [fill[g] if v is None else v for v in self.group_values(arch, g)] for g in ("ks", "e")}
        out["d"] = list(arch.d)
        out["r"] = arch.r
        return out


@dataclass(frozen=True)
class ResNetSpace(SearchSpace):
    """OFA-ResNet space (Cai et al., *Once-for-All*): stem skip, extra depth per stage, expand ratio
    per bottleneck, width multiplier per width slot, and an input resolution.

    Columns: ``r``, ``d[0]`` (stem: 0 skips the stem's residual block, ``max(depths)`` keeps it),
    ``d[1..n_stages]`` (extra blocks over ``base_depths``), ``e[0..n_slots)``, ``w[0..n_stages+2)``
    (stem conv 1+2, stem conv 3, then one per stage). ``w`` holds multipliers; the OFA dict holds indices.
    """

    name: str = "ofa_resnet"
    base_depths: tuple[int, ...] = (2, 2, 4, 2)
    depths: tuple[int, ...] = (0, 1, 2)
    expand_ratios: tuple[float, ...] = (0.2, 0.25, 0.35)
    width_mults: tuple[float, ...] = (0.65, 0.8, 1.0)
    resolutions: tuple[int, ...] = field(default_factory=_default_resolutions)

    def __post_init__(self) -> None:
        check_increasing(depths=self.depths, expand_ratios=self.expand_ratios, width_mults=self.width_mults,
                          resolutions=self.resolutions)
        if min(self.depths) < 0 or len(self.depths) < 2:
            raise ValueError(f"depths (extra blocks per stage) must hold at least two values >= 0, got {self.depths}: "
                             "the stem gene d[0] chooses between the smallest and the largest")
        if not self.base_depths or min(self.base_depths) < 1:
            raise ValueError(f"base_depths must be a non-empty tuple of values >= 1, got {self.base_depths}")

    @property
    def n_stages(self) -> int:
        return len(self.base_depths)

    @property
    def stage_slots(self) -> tuple[int, ...]:
        return tuple(b + max(self.depths) for b in self.base_depths)

    @property
    def n_slots(self) -> int:
        return sum(self.stage_slots)

    def _build_columns(self) -> tuple[Column, ...]:
        cols = [Column("r", -1, tuple(self.resolutions))]
        cols.append(Column("d", 0, (min(self.depths), max(self.depths))))
        cols += [Column("d", s + 1, tuple(self.depths)) for s in range(self.n_stages)]
        cols += [Column("e", i, tuple(self.expand_ratios)) for i in range(self.n_slots)]
        cols += [Column("w", i, tuple(self.width_mults)) for i in range(self.n_stages + 2)]
        return tuple(cols)

    def _active_mask(self, encoded: np.ndarray) -> np.ndarray:
        n = encoded.shape[0]
        depth = np.asarray(self.base_depths)[None, :] + np.asarray(self.depths)[encoded[:, 2 : 2 + self.n_stages]]
        slot = stage_slot_mask(depth, self.stage_slots)
        head = np.ones((n, 2 + self.n_stages), dtype=bool)
        tail = np.ones((n, self.n_stages + 2), dtype=bool)
        return np.concatenate([head, slot, tail], axis=1)

    def count(self) -> int:
        """Distinct gene assignments at one resolution, as OFA counts them. Two can build the same network
        where rounding to a multiple of 8 maps two width multipliers to one width (OFA-ResNet50's first stem
        width: 0.65 and 0.8 both give 24 channels)."""
        ne = len(self.expand_ratios)
        stages = math.prod(sum(ne ** (b + d) for d in self.depths) for b in self.base_depths)
        return 2 * len(self.width_mults) ** (self.n_stages + 2) * stages

    def from_ofa_dict(self, config: Mapping[str, Any]) -> Arch:
        """From ``{"d": [5], "e": [18], "w": [6] (indices), "r": int}``. A stem depth other than the
        maximum skips the stem block, as in OFA's ``set_active_subnet``."""
        missing = [k for k in ("d", "e", "w", "r") if k not in config]
        if missing:
            raise ValueError(f"OFA ResNet dict needs keys d, e, w, r; missing {missing}")
        d = gene_list(config, "d")
        if len(d) != self.n_stages + 1:
            raise ValueError(f"gene 'd' needs {self.n_stages + 1} values, got {len(d)}: {d}")
        if d[0] not in self.depths:
            raise ValueError(f"gene d[0] value {d[0]!r} is not one of the allowed choices {list(self.depths)}")
        d[0] = max(self.depths) if d[0] == max(self.depths) else min(self.depths)
        w_idx = gene_list(config, "w")
        w = []
        for i, k in enumerate(w_idx):
            if not isinstance(k, (int, np.integer)) or not 0 <= k < len(self.width_mults):
                raise ValueError(
                    f"gene w[{i}] (OFA width index) value {k!r} is not one of the allowed choices "
                    f"{list(range(len(self.width_mults)))}"
                )
            w.append(self.width_mults[k])
        return self.arch(r=config["r"], d=d, e=gene_list(config, "e"), w=w)

    def to_ofa_dict(self, arch: Arch) -> dict[str, Any]:
        e = [self.expand_ratios[0] if v is None else v for v in arch.e]
        w = [self.width_mults.index(v) for v in arch.w]
        return {"d": list(arch.d), "e": e, "w": w, "r": arch.r}

