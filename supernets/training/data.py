"""Moved to :mod:`supernets.data.modules` (below training, so search and predictors build data modules without
importing it); these names stay importable from here for callers above training."""

from __future__ import annotations

from supernets.data.modules import *  # noqa: F403
from supernets.data.modules import __all__  # noqa: F401
