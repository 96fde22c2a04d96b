"""The package layers hold: no import cycle among the project's modules.

The graph is read from the source with ``ast`` (nothing is imported), and it counts every import a module
makes, at the top or inside a function: a lazy import that closes a loop is still a loop in the layering
(``help_gpu`` and ``help_noise`` imported each other that way). Imports under ``if TYPE_CHECKING:`` do not run
and are left out. Importing ``a.b.c`` counts as an edge to ``a.b.c`` only, not to the packages above it (Python
runs their ``__init__`` first, which every package does by design).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Top-level folders that hold the product's packages (every folder with an ``__init__.py`` but the tests).
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests")


def _modules(root: Path, packages: list[str]) -> dict[str, Path]:
    out = {}
    for pkg in packages:
        for f in (root / pkg).rglob("*.py"):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(c) for c in ast.walk(node))
    return skip


def import_graph(root: Path, packages: list[str]) -> dict[str, set[str]]:
    """``{module: {project modules it imports}}`` for every module of ``packages`` under ``root``."""
    mods = _modules(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skip = _type_checking_nodes(tree)
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
                # ``from pkg import mod`` imports the module ``pkg.mod``; ``from mod import name`` imports ``mod``
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (iterative depth-first search, modules in sorted order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_import_graph_covers_every_package_and_sees_lazy_imports():
    graph = import_graph(ROOT, PACKAGES)
    assert {"supernets", "predictors", "search"} <= set(PACKAGES)
    assert len(graph) > 100
    # a function-level import counts (stages.py imports the calibration helpers inside import_timings)
    assert "predictors.latency.calibration" in graph["predictors.latency.stages"]
    assert "predictors.latency.help_gpu" in graph["predictors.latency.help_noise"]


def test_no_import_cycle_among_the_projects_modules():
    cycle = find_cycle(import_graph(ROOT, PACKAGES))
    assert cycle is None, ("import cycle: " + " -> ".join(cycle) + " (move what both need into a lower module, "
                           "the README's Layout)")


@pytest.mark.parametrize("sources, cycle", [
    ({"a/__init__.py": "", "a/x.py": "def f():\n    from a.y import g\n", "a/y.py": "from a import x\n"},
     ["a.x", "a.y", "a.x"]),
    ({"a/__init__.py": "", "a/x.py": "from .y import g\n", "a/y.py": "from . import z\n", "a/z.py": "import a.x\n"},
     ["a.x", "a.y", "a.z", "a.x"]),
    ({"a/__init__.py": "", "a/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a.y import g\n",
      "a/y.py": "from a.x import f\n"}, None),
], ids=["lazy_import", "relative_imports", "type_checking_only"])
def test_find_cycle_reports_lazy_and_relative_cycles_but_not_type_checking_ones(tmp_path, sources, cycle):
    for rel, text in sources.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert find_cycle(import_graph(tmp_path, ["a"])) == cycle
