"""The scripts under scripts/ as the tests use them: loaded by path (scripts/ is not a package) and configured
the way their ``@hydra.main`` is, from configs/scripts/<name>.yaml and ``key=value`` overrides."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from supernets.paths import CONFIG_DIR, REPO_ROOT

SCRIPT_CONFIGS = CONFIG_DIR / "scripts"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_config(name: str, *overrides: str) -> DictConfig:
    """What ``python scripts/<name>.py *overrides`` hands its main (a decorated main also takes it directly)."""
    with initialize_config_dir(config_dir=str(SCRIPT_CONFIGS), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))
