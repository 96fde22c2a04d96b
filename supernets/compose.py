"""Config-group options by name, composed by Hydra (never by reading ``configs/<group>/<name>.yaml`` ourselves).

Library functions take built objects or composed configs; a caller that only has a name (``load_latency_model(
"note10", ...)``, ``load_predictor("ofa_pretrained")``) gets the option composed here, so a config's defaults list
(an alias is ``defaults: [<target>@_here_]``), interpolations and package header mean what they mean under
``search.py``. Inside a running Hydra app its own search path is asked first (a ``hydra.searchpath`` the user
added holds their devices, predictors and algorithms); the repository's ``configs/`` otherwise.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supernets.paths import CONFIG_DIR

__all__ = ["UnknownOptionError", "build", "compose_config", "compose_file", "compose_option", "group_options",
           "hydra_on", "override_value"]


def override_value(value: Any) -> str:
    """``value`` (dicts, lists, scalars) in Hydra's override grammar, for a child command line:
    ``{num_classes:10,resolutions:[32]}``."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return "null" if value is None else str(value)


class UnknownOptionError(ValueError):
    """No option of that name in the config group."""


def build(key: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)`` (``_convert_="all"``) for the config at ``key``: a builder's
    own ``ValueError`` (it names the option and what is allowed) reaches the caller as raised, not wrapped in
    Hydra's ``InstantiationException``; anything else (a ``_target_`` that does not import, an argument the
    builder does not take) becomes a ``ValueError`` naming ``key`` and the target."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, ValueError):
            raise e.__cause__ from None
        target = node.get("_target_") if hasattr(node, "get") else None
        raise ValueError(f"{key}: cannot build _target_ {target!r}: {e.__cause__ or e}") from None


@contextmanager
def hydra_on(config_dir: Path = CONFIG_DIR) -> Iterator[Any]:
    """Hydra initialised on ``config_dir`` (for ``hydra.compose`` inside the block); a running app's GlobalHydra
    (``search.py``, ``scripts/reproduce.py``) is put back afterwards."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    outer = gh.hydra
    gh.clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            yield GlobalHydra.instance()
    finally:
        GlobalHydra.instance().hydra = outer


def _running_app_has(group: str, name: str) -> bool:
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    return gh.is_initialized() and name in gh.config_loader().get_group_options(group)


def group_options(group: str, config_dir: Path | None = None) -> list[str]:
    """The option names of ``group`` (sorted), the running app's included."""
    from hydra.core.global_hydra import GlobalHydra

    names: set[str] = set()
    gh = GlobalHydra.instance()
    if config_dir is None and gh.is_initialized():
        names.update(gh.config_loader().get_group_options(group))
    with hydra_on(CONFIG_DIR if config_dir is None else config_dir) as h:
        names.update(h.config_loader().get_group_options(group))
    return sorted(names)


def compose_option(group: str, name: str) -> dict[str, Any]:
    """The ``group`` node of a config that selects ``group=name`` (a plain dict, interpolations resolved).

    Raises:
        UnknownOptionError: no such option (the message lists the group's options).
    """
    from hydra import compose

    if not isinstance(name, str) or not name or "/" in name:
        raise UnknownOptionError(f"{group} must be an option name of configs/{group}/, got {name!r}; "
                                 f"options: {group_options(group)}")
    if _running_app_has(group, name):
        return _node(compose(overrides=[f"+{group}={name}"]), group)
    return copy.deepcopy(_compose_repo(group, name))


@functools.lru_cache(maxsize=256)
def _compose_repo(group: str, name: str) -> dict[str, Any]:
    from hydra import compose

    with hydra_on(CONFIG_DIR) as h:
        if name not in h.config_loader().get_group_options(group):
            raise UnknownOptionError(f"unknown {group} {name!r}; options: {group_options(group)}")
        return _node(compose(overrides=[f"+{group}={name}"]), group)


def compose_config(config_name: str) -> dict[str, Any]:
    """The repository's primary config ``configs/<config_name>.yaml`` with its defaults list applied (a plain
    dict without the ``hydra`` node): what a Hydra app gets with no override, for callers that build a config
    by hand over it."""
    return copy.deepcopy(_compose_primary(config_name))


@functools.lru_cache(maxsize=16)
def _compose_primary(config_name: str) -> dict[str, Any]:
    from hydra import compose
    from omegaconf import OmegaConf

    with hydra_on(CONFIG_DIR):
        return OmegaConf.to_container(compose(config_name=config_name), resolve=True)  # type: ignore[return-value]


def compose_file(config_dir: Path | str, name: str) -> dict[str, Any]:
    """``<config_dir>/<name>.yaml`` composed as a primary config (a folder of options outside ``configs/``)."""
    from hydra import compose
    from omegaconf import OmegaConf

    with hydra_on(Path(config_dir)) as h:
        if name not in h.config_loader().get_group_options(""):
            raise UnknownOptionError(f"no {name}.yaml in {config_dir}")
        cfg = compose(config_name=name)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _node(cfg: Any, group: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg[group], resolve=True)  # type: ignore[return-value]
