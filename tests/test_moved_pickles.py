"""Pickles survive the move into subpackages (issue 15): a recorded pickle names our modules
by their old paths, and the one unpickling door finds each where it is now."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from replay.core.digest import sha256
from replay.core.unpickle import MOVED, unpickle_trusted

ASSETS = Path(__file__).parent / "assets"


def _defined_in(module: str) -> str:
    """A name the module itself defines (a class or function), to look up by its old path."""
    mod = importlib.import_module(module)
    return next(
        name
        for name, value in sorted(vars(mod).items())
        if not name.startswith("_") and getattr(value, "__module__", None) == module
    )


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_module_path_in_a_pickle_finds_the_moved_module(old: str, new: str) -> None:
    name = _defined_in(new)
    data = f"c{old}\n{name}\n.".encode()  # protocol 0: GLOBAL old.path name
    assert unpickle_trusted(data, sha256(data)) is getattr(importlib.import_module(new), name)


def _pickles(store: Path) -> list[Path]:
    return [
        p
        for p in sorted((store / "objects").rglob("*"))
        if p.is_file() and p.read_bytes()[:1] == b"\x80"
    ]


@pytest.mark.parametrize("store", sorted(ASSETS.glob("store-*")), ids=lambda p: p.name)
def test_every_pickle_of_every_golden_store_loads(store: Path) -> None:
    found = _pickles(store)
    assert found
    for path in found:
        data = path.read_bytes()
        unpickle_trusted(data, sha256(data))
