"""Where the repository's data lives (configs, latency tables, bundled artefacts)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CONFIG_DIR", "LATENCY_TABLES_DIR", "REPO_ROOT", "SHARED_DATA_DIR"]

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
LATENCY_TABLES_DIR = REPO_ROOT / "latency_tables"
#: Published reference data beside the repository (used by tests and benchmarks, never at import time).
SHARED_DATA_DIR = Path(os.environ.get("ONCENAS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
