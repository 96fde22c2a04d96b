"""The repository stands alone: nothing the product, its tests or scripts read lies beside the checkout."""

from __future__ import annotations

import re
import subprocess

from supernets.paths import REPO_ROOT

# Ways code has reached for data next to the checkout (../shared, a SHARED_DATA_DIR, its environment variable).
_BESIDE = re.compile(r"\.\./shared|parent\s*/\s*[\"']shared[\"']|SHARED_DATA|ONCENAS_SHARED")


def _tracked(*patterns: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (REPO_ROOT / p).is_file()]


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
