"""Search spaces as plain dicts, so a dataset or predictor artefact can name the exact space it belongs to."""

from __future__ import annotations

import dataclasses
from typing import Any

import supernets.space as space_module
from supernets.space import SearchSpace

__all__ = ["space_from_dict", "space_to_dict"]


def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    """``{"family": "MobileNetV3Space", "name": ..., <choice tuples as lists>}`` (YAML-safe)."""
    out: dict[str, Any] = {"family": type(space).__name__}
    for f in dataclasses.fields(space):
        v = getattr(space, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def space_from_dict(spec: dict[str, Any]) -> SearchSpace:
    """Inverse of :func:`space_to_dict`; raises ValueError for an unknown family or field."""
    if not isinstance(spec, dict):
        raise ValueError(f"a search-space spec must be a mapping with 'family' and the space's fields (as "
                         f"space_to_dict writes it), got {type(spec).__name__} {spec!r}")
    spec = dict(spec)
    family = spec.pop("family", None)
    cls = getattr(space_module, str(family), None) or _subclass(str(family))
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace)):
        raise ValueError(
            f"unknown search-space family {family!r}; expected a SearchSpace class of supernets.space "
            f"(e.g. 'MobileNetV3Space', 'ResNetSpace')"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(spec) - names
    if unknown:
        raise ValueError(f"space {family}: unknown fields {sorted(unknown)}; fields are {sorted(names)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    return cls(**kwargs)


def _subclass(name: str) -> type | None:
    """A SearchSpace subclass defined outside ``supernets.space`` (e.g. ``TimmSpace``), by class name."""
    import supernets  # noqa: F401  (families define their spaces on import)

    todo, seen = list(SearchSpace.__subclasses__()), set()
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            if cls.__name__ == name:
                return cls
            todo += cls.__subclasses__()
    return None
