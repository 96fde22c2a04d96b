"""Shared pytest fixtures (keep generic: other parts add theirs here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from supernets.paths import CONFIG_DIR


@pytest.fixture
def compose_config() -> Callable[..., DictConfig]:
    """``compose_config(config_name, overrides)``: a Hydra config from ``configs/``, composed without a run."""

    def _compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))

    return _compose


@pytest.fixture
def rng():
    """A seeded numpy Generator (seeds are passed, never global)."""
    import numpy as np

    return np.random.default_rng(0)
