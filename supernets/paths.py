"""Where the repository's data lives (configs, latency tables, bundled artefacts).

Everything the product, its tests and ``scripts/reproduce.py`` read is inside the repository (published data
compressed, with its attribution in the README beside it); nothing is read from beside the checkout.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

__all__ = ["CONFIG_DIR", "LATENCY_TABLES_DIR", "REPO_ROOT", "archive_texts"]

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
LATENCY_TABLES_DIR = REPO_ROOT / "latency_tables"


def archive_texts(path: Path | str) -> dict[str, str]:
    """``{member name: UTF-8 text}`` of every regular file in a bundled ``.tar.xz`` (read in memory, never
    extracted: member names cannot write anywhere). A missing or damaged archive is an error naming it."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as tar:
            return {m.name: tar.extractfile(m).read().decode("utf-8") for m in tar.getmembers() if m.isfile()}
    except (OSError, tarfile.TarError, EOFError, UnicodeDecodeError) as exc:
        raise FileNotFoundError(f"bundled archive {path} is missing or unreadable ({exc}); it ships with the "
                                f"repository (git checkout -- {path.name} restores it)") from None
