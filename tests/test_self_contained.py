"""The repository stands alone: nothing the product, its tests or scripts read lies beside the checkout."""

from __future__ import annotations

import re
import subprocess

from supernets.paths import REPO_ROOT

# Ways code has reached for data next to the checkout (../shared, a SHARED_DATA_DIR, its environment variable).
_BESIDE = re.compile(r"\.\./shared|parent\s*/\s*[\"']shared[\"']|SHARED_DATA|ONCENAS_SHARED")


# Folders that are not the repository's own files (environments, caches, run outputs).
_NOT_OURS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis", "outputs",
             "multirun", "lightning_logs", "wandb", "runs", "build", "dist"}


def _tracked(*patterns: str) -> list[str]:
    """The repository's files matching ``patterns``: git's list in a clone, else a walk of the folder (CI runs
    from a plain copy, and a user may have unpacked an archive)."""
    if (REPO_ROOT / ".git").exists():
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
        return [p for p in out.splitlines() if (REPO_ROOT / p).is_file()]
    found = set()
    for pattern in patterns:
        paths = (REPO_ROOT / "scripts").glob("*") if pattern == "scripts/*" else REPO_ROOT.rglob(pattern)
        for path in paths:
            rel = path.relative_to(REPO_ROOT)
            if path.is_file() and not (set(rel.parts[:-1]) & _NOT_OURS or any(p.endswith(".egg-info") for p in rel.parts)):
                found.add(rel.as_posix())
    return sorted(found)


def test_no_code_config_or_script_reads_data_beside_the_repository() -> None:
    files = _tracked("*.py", "*.yaml", "*.yml", "*.toml", "scripts/*")
    assert len(files) > 100 and "supernets/paths.py" in files
    this = "tests/test_self_contained.py"  # (and .ci/run, which checks that no ../shared is there)
    hits = [f"{f}:{n}: {line.strip()}" for f in files if f != this
            for n, line in enumerate((REPO_ROOT / f).read_text(encoding="utf-8").splitlines(), 1)
            if _BESIDE.search(line)]
    assert not hits, "reads data from beside the checkout:\n" + "\n".join(hits)


def test_ci_runs_the_suite_from_a_copy_with_nothing_beside_it() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    copy, run = ci.index('cd "$work/oncenas"'), ci.rindex("\npytest")
    assert "mktemp -d" in ci and copy < run and "git ls-files" in ci[:copy]
