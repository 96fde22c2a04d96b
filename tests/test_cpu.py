"""The glibc malloc tuning keeps freed memory in the heap, so repeated steps stop faulting in fresh pages."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from supernets.cpu import tune_malloc
ok = tune_malloc() if sys.argv[1] == "tuned" else False
x = torch.randn(64, 96, 40, 40)  # 39 MB, above glibc's largest mmap threshold (32 MiB)
for _ in range(3):
    (x * 2).sum()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    (x * 2).sum()
print(ok, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={"ONCENAS_TUNE_MALLOC": "1", "OMP_NUM_THREADS": "1", "PATH": ""}).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_malloc_reuses_freed_memory_instead_of_faulting_new_pages() -> None:
    ok, tuned = _faults("tuned")
    if not ok:
        pytest.skip("mallopt unavailable (not glibc)")
    _, plain = _faults("plain")
    pages = 64 * 96 * 40 * 40 * 4 // resource.getpagesize()
    assert plain >= 9 * pages  # each of the 10 fresh 39 MB temporaries faults its pages in again
    # Reused from the heap: usually no fault at all; in some runs (address-space layout) a few blocks still come
    # from fresh mappings, so the test asks that most steps reuse memory.
    assert tuned <= 0.4 * plain
