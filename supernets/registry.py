"""A timm-style registry of supernets: ``@register_supernet`` on one-line entry functions,
``create_supernet(name, **kwargs)``, ``list_supernets(pattern)``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from supernets.base import Supernet

__all__ = ["checked_supernet_kwargs", "create_supernet", "is_supernet", "list_supernets", "register_supernet",
           "register_supernet_prefix"]

_REGISTRY: dict[str, Callable[..., Supernet]] = {}
F = TypeVar("F", bound=Callable[..., "Supernet"])
#: Name prefixes whose builders take the rest of the name (``timm/<model>``), with a check of that rest.
_PREFIXES: dict[str, tuple[Callable[..., Supernet], Callable[[str], bool]]] = {}


def register_supernet(fn: F) -> F:
    """Register an entry function under its own name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"supernet {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def register_supernet_prefix(prefix: str, builder: Callable[..., Supernet], is_valid: Callable[[str], bool]) -> None:
    """Route every name ``<prefix><rest>`` to ``builder(rest, **kwargs)`` (families that wrap a model zoo)."""
    if prefix in _PREFIXES:
        raise ValueError(f"supernet prefix {prefix!r} is registered twice")
    _PREFIXES[prefix] = (builder, is_valid)


def _prefixed(name: str) -> tuple[Callable[..., Supernet], str] | None:
    for prefix, (builder, is_valid) in _PREFIXES.items():
        if name.startswith(prefix) and is_valid(name[len(prefix):]):
            return builder, name[len(prefix):]
    return None


def list_supernets(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def is_supernet(name: str) -> bool:
    return name in _REGISTRY or _prefixed(name) is not None


def create_supernet(name: str, **kwargs) -> Supernet:
    """Build a registered supernet, e.g. ``create_supernet("ofa_mbv3_w10", num_classes=10)``."""
    routed = None if name in _REGISTRY else _prefixed(name)
    if name not in _REGISTRY and routed is None:
        prefixes = "".join(f", or {p}<name>" for p in _PREFIXES)
        raise ValueError(f"unknown supernet {name!r}; registered supernets: {list_supernets()}{prefixes}")
    kwargs = checked_supernet_kwargs(name, kwargs)
    try:
        model = routed[0](routed[1], **kwargs) if routed else _REGISTRY[name](**kwargs)
    except TypeError as e:  # an option the family does not take: name it instead of a constructor's traceback
        if "unexpected keyword argument" not in str(e):
            raise
        where = f"configs/supernet/{name}.yaml" if name in _REGISTRY else "configs/supernet/"
        raise ValueError(f"supernet {name!r}: {e}; see {where} for its options") from None
    model.name = name
    return model


def checked_supernet_kwargs(name: str, kwargs: dict) -> dict:
    """Counts and image sizes every family takes, checked by name (``num_classes=0`` or ``resolutions=[-32]``
    would otherwise build a network that fails on its first batch, or never)."""
    from supernets.config_checks import ConfigError, check_int

    kwargs = dict(kwargs)
    for key in ("num_classes", "in_chans"):
        if kwargs.get(key) is not None:
            kwargs[key] = check_int(f"supernet.{key}", kwargs[key], min=1)
    res = kwargs.get("resolutions")
    if res is not None:
        if isinstance(res, (str, int)) or not list(res):
            raise ConfigError(f"supernet.resolutions of {name!r} must be a non-empty list of image sizes, got {res!r}")
        # below 8 pixels a stride-32 network has no spatial extent left
        kwargs["resolutions"] = [check_int("supernet.resolutions[]", r, min=8) for r in res]
    return kwargs
