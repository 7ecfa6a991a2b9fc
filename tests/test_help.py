"""Every command and option explains itself: help text on each, values named by what they are
(issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import typer
from conftest import rows
from typer.testing import CliRunner

import replay
from replay.cli.app import app


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    group = group or typer.main.get_command(app)
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        yield (*path, name)
        if hasattr(command, "commands"):  # a group (typer may bundle its own click)
            yield from commands(command, (*path, name))


def command_at(path: tuple[str, ...]) -> Any:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


ALL = list(commands())


def test_the_walk_finds_every_family() -> None:
    assert {
        ("trust", "add"),
        ("keys", "init"),
        ("witness", "cosign"),
        ("run",),
        ("verify",),
    } <= set(ALL)


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_help_names_values_by_what_they_are(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for marker in ("<bool>", "<str>", "<int>", "<float>", "<list"):
        assert marker not in result.output, f"{' '.join(path)}: {marker}"


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_every_option_has_help(path: tuple[str, ...]) -> None:
    command = command_at(path)
    assert command.help, f"{' '.join(path)} has no help"
    bare = [
        p.name
        for p in command.params
        if isinstance(p, typer.core.TyperOption) and not p.hidden and not p.help
    ]
    assert bare == [], f"{' '.join(path)}: options without help: {bare}"


HEAVY = (
    "pyarrow",
    "duckdb",
    "numpy",
    "pandas",
    "cryptography",
    "docker",
    "dvc",
    "cloudpickle",
    "jinja2",
    "fpdf",
    "sklearn",
    # what typer would render help and parse values with (replay.cli.app.PLAIN, .params)
    "rich",
    "markdown_it",
    "pydantic",
)


def imported(*args: str) -> set[str]:
    """The top-level packages a fresh ``replay`` process imports (this one has imported
    everything already)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["runs", "--help"], ["trust", "add", "--help"]],
    ids=" ".join,
)
def test_help_starts_without_the_heavy_libraries(args: list[str]) -> None:
    assert set() == imported(*args) & set(HEAVY)


def test_a_piped_find_imports_neither_pydantic_nor_rich(store: replay.Store, toy) -> None:
    # typer validates each parameter with pydantic unless told otherwise (replay.cli.params);
    # TSV needs no rich (replay.cli.render).
    replay.record(toy, rows(2), store=store, record_key="id", at=datetime(2026, 3, 1, tzinfo=UTC))
    packages = imported("--store", str(store.root), "find", "R1", "--kind", "production")
    assert "duckdb" in packages  # it did query the catalog
    assert set() == packages & {"pydantic", "rich"}
