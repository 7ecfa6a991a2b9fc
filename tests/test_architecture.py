"""The architecture is visible and held (issue 15): every subpackage says what it owns, and
the import graph has no cycle. The layering itself is import-linter's contract in
pyproject.toml, checked by `.ci/run` (`lint-imports`)."""

from __future__ import annotations

import importlib
import pkgutil

import grimp
import pytest

import replay

PACKAGES = ["core", "store", "catalog", "capture", "engine", "docker", "evidence", "cli"]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_subpackage_says_what_it_owns_and_may_import(name: str) -> None:
    doc = importlib.import_module(f"replay.{name}").__doc__ or ""
    assert "import" in doc.lower() and len(doc.split()) > 25


def test_the_subpackages_are_all_there_is() -> None:
    found = {m.name for m in pkgutil.iter_modules(replay.__path__)}
    assert found == {*PACKAGES, "errors", "__main__"}


def test_the_import_graph_has_no_cycle() -> None:
    graph = grimp.build_graph("replay", exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in graph.find_modules_directly_imported_by(m):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                component.append(n)
                if n == m:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    assert cycles == []
