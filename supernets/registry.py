"""A timm-style registry of supernets: ``@register_supernet`` on one-line entry functions,
``create_supernet(name, **kwargs)``, ``list_supernets(pattern)``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from supernets.base import Supernet

__all__ = ["create_supernet", "is_supernet", "list_supernets", "register_supernet"]

_REGISTRY: dict[str, Callable[..., Supernet]] = {}
F = TypeVar("F", bound=Callable[..., "Supernet"])


def register_supernet(fn: F) -> F:
    """Register an entry function under its own name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"supernet {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def _ensure_families_imported() -> None:
    # Families register on import; importing the package imports them all.
    import supernets  # noqa: F401


def list_supernets(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, sorted."""
    _ensure_families_imported()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def is_supernet(name: str) -> bool:
    _ensure_families_imported()
    return name in _REGISTRY


def create_supernet(name: str, **kwargs) -> Supernet:
    """Build a registered supernet, e.g. ``create_supernet("ofa_mbv3_w10", num_classes=10)``."""
    _ensure_families_imported()
    if name not in _REGISTRY:
        raise ValueError(f"unknown supernet {name!r}; registered supernets: {list_supernets()}")
    model = _REGISTRY[name](**kwargs)
    model.name = name
    return model
