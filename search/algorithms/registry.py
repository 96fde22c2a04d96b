"""A timm-style registry of search algorithms (as :mod:`supernets.registry` is of supernets): ``@register_algorithm``
on a class (under its ``name``) or a one-line entry function (under its own name), ``create_algorithm(name,
**kwargs)``, ``list_algorithms(pattern)``. Configs build algorithms with ``_target_``; the registry serves callers
that name one (``algorithm="random"`` or ``{"name": "random", "n_gen": 5}`` in a hand-built search config)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from search.algorithms.base import SearchAlgorithm

__all__ = ["create_algorithm", "is_algorithm", "list_algorithms", "register_algorithm"]

# Filled as the algorithm modules are imported: importing this module imports its package first, whose
# __init__ imports every algorithm module (no import back into the package, which would be a cycle).
_REGISTRY: dict[str, Callable[..., SearchAlgorithm]] = {}
F = TypeVar("F", bound=Callable[..., Any])


def register_algorithm(fn: F) -> F:
    """Register a class under its ``name`` attribute, or an entry function under its own name."""
    name = fn.name if isinstance(fn, type) else fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"algorithm {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def list_algorithms(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def is_algorithm(name: str) -> bool:
    return name in _REGISTRY


def create_algorithm(name: str, **kwargs: Any) -> SearchAlgorithm:
    """A registered algorithm, e.g. ``create_algorithm("nsga2", pop_size=60, n_gen=3)``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {list_algorithms()}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"algorithm {name!r}: bad option ({e}); see configs/algorithm/{name}.yaml") from None
