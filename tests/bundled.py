"""The published reference data the tests compare against, read from the archives the repository bundles."""

from __future__ import annotations

from functools import cache
from pathlib import PurePosixPath

from supernets.paths import REPO_ROOT, archive_texts

#: OFA's model zoo ``specialized/`` folder (50 subnets' ``net.config`` + ``run.config``, and ``_summary.csv``),
#: byte-identical (supernets/data/README.md).
SPECIALIZED_ARCHIVE = REPO_ROOT / "supernets" / "data" / "ofa_specialized.tar.xz"


@cache
def specialized_zoo() -> dict[str, dict[str, str]]:
    """``{folder name: {file name: text}}`` of the bundled model zoo (``_summary.csv`` under the key ``""``)."""
    out: dict[str, dict[str, str]] = {}
    for name, text in archive_texts(SPECIALIZED_ARCHIVE).items():
        parts = PurePosixPath(name).parts  # specialized/<subnet>/<file> or specialized/_summary.csv
        folder = parts[1] if len(parts) == 3 else ""
        out.setdefault(folder, {})[parts[-1]] = text
    return out
