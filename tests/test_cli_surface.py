"""The CLI's surface, command by command, walked from the typer app so that a new command is
covered the day it is registered: each is the library function of the same name, offers
``--json``, and fails through the one error handler (a one-line message and its hint, the
documented exit code, no traceback). Help text on each: tests/test_help.py walks the same
list."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from test_help import ALL, command_at
from typer.testing import CliRunner

import replay
from replay.cli.app import app, handled

COMMANDS = [path for path in ALL if not hasattr(command_at(path), "commands")]  # no groups

# A command without a library function must say why here. The demo is a guided tour of the
# commands told on the terminal (it lives in replay.cli and prints), not an operation.
NOT_A_FUNCTION = {("demo",)}


def function_name(path: tuple[str, ...]) -> str:
    """The rule: a command's name; a group's subcommand joined to it by an underscore;
    hyphens read as underscores (``trust allow-store`` is ``replay.trust_allow_store``)."""
    return "_".join(path).replace("-", "_")


def test_the_walk_finds_the_subcommands_of_every_group() -> None:
    assert {("trust", "allow-store"), ("keys", "init"), ("witness", "cosign")} <= set(COMMANDS)
    assert ("trust",) not in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_the_library_function_of_the_same_name(path: tuple[str, ...]) -> None:
    name = function_name(path)
    if path in NOT_A_FUNCTION:
        assert name not in replay.__all__
        return
    assert name in replay.__all__, f"`replay {' '.join(path)}` has no replay.{name}"
    assert callable(getattr(replay, name))


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_offers_json(path: tuple[str, ...]) -> None:
    options = {opt for param in command_at(path).params for opt in getattr(param, "opts", ())}
    assert "--json" in options, f"`replay {' '.join(path)}` has no --json"


HANDLER = handled(lambda: None).__code__


def _handled(fn: Callable[..., Any] | None) -> bool:
    while fn is not None:  # typer wraps what the app registered; that wraps the command
        if fn.__code__ is HANDLER:
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_wrapped_by_the_error_handler(path: tuple[str, ...]) -> None:
    assert _handled(command_at(path).callback), f"`replay {' '.join(path)}` is not @handled"


NO_STORE = "no store at {store}"
# One failing call per command, run against a store that does not exist unless the command
# needs none: (arguments, exit code, the message's first words). {dir} is a fresh folder,
# {store} a store path inside it that does not exist, {file} a file in it.
FAILING: dict[tuple[str, ...], tuple[list[str], int, str]] = {
    ("init",): (["--store", "{file}/store", "init"], 8, "cannot create a store at {file}/store"),
    ("record",): (["record", "p.py:pipe", "--input", "in.parquet"], 4, NO_STORE),
    ("runs",): (["runs"], 4, NO_STORE),
    ("show",): (["show", "0190a1b2"], 4, NO_STORE),
    ("find",): (["find", "A-1"], 4, NO_STORE),
    ("sql",): (["sql", "select 1"], 4, NO_STORE),
    ("reindex",): (["reindex"], 4, NO_STORE),
    ("compact",): (["compact"], 4, NO_STORE),
    ("run",): (["run", "0190a1b2"], 4, NO_STORE),
    ("at",): (["at", "2026-03-14T12:00Z", "--pipeline", "p"], 4, NO_STORE),
    ("batch",): (["batch", "--pipeline", "p"], 4, NO_STORE),
    ("diff",): (["diff", "0190a1b2", "0190a1b3"], 4, NO_STORE),
    ("lineage",): (["lineage", "0190a1b2"], 4, NO_STORE),
    ("doctor",): (["doctor"], 4, NO_STORE),
    ("checkpoint",): (["checkpoint"], 4, NO_STORE),
    ("seal",): (["seal"], 4, NO_STORE),
    ("export",): (["export", "0190a1b2"], 4, NO_STORE),
    ("verify",): (["verify"], 2, "nothing to verify"),
    ("demo",): (
        ["demo", "--workdir", "{dir}/a", "--workspace", "{dir}/b"],
        2,
        "give --workdir or --workspace, not both",
    ),
    ("keys", "init"): (
        ["keys", "init", "--out", "{file}"],
        2,
        "a signing key already exists at {file}",
    ),
    ("trust", "add"): (
        ["trust", "add", "{dir}/missing.pem", "--name", "bank"],
        2,
        "cannot read key {dir}/missing.pem",
    ),
    ("trust", "list"): (  # with REPLAY_TRUSTED_KEYS naming {dir}/missing.pem
        ["trust", "list"],
        2,
        "REPLAY_TRUSTED_KEYS names {dir}/missing.pem, which does not exist",
    ),
    ("trust", "remove"): (
        ["trust", "remove", "bank"],
        4,
        "no trusted key is named 'bank' or has that id",
    ),
    ("trust", "allow-store"): (["trust", "allow-store", "{store}"], 4, "no folder at {store}"),
    ("witness", "cosign"): (
        ["witness", "cosign", "{store}", "--key", "{dir}/witness.pem"],
        4,
        NO_STORE,
    ),
}


def test_every_command_has_a_failing_call_here() -> None:
    assert set(FAILING) == set(COMMANDS)


def _fail(tmp_path: Path, path: tuple[str, ...], *extra: str) -> tuple[Any, int, str]:
    args, code, message = FAILING[path]
    names = {"dir": str(tmp_path), "store": str(tmp_path / "store"), "file": str(tmp_path / "f")}
    (tmp_path / "f").write_text("a file, not a folder\n")
    env = (
        {"REPLAY_TRUSTED_KEYS": str(tmp_path / "missing.pem")} if path == ("trust", "list") else {}
    )
    argv = ["--store", names["store"], *(a.format(**names) for a in args), *extra]
    return CliRunner().invoke(app, argv, env=env), code, message.format(**names)


@pytest.mark.parametrize("path", sorted(FAILING), ids=" ".join)
def test_every_command_fails_with_one_line_and_its_exit_code(
    tmp_path: Path, path: tuple[str, ...]
) -> None:
    result, code, message = _fail(tmp_path, path)
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()  # nothing before the message, not even a blank line
    assert lines[0].startswith(f"error: {message}")
    assert len(lines) <= 2  # the message, and the hint when there is one
    assert result.stdout == "" and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # an exit, not an escaped exception


@pytest.mark.parametrize("path", sorted(FAILING), ids=" ".join)
def test_every_command_fails_as_one_json_object_with_json(
    tmp_path: Path, path: tuple[str, ...]
) -> None:
    result, code, message = _fail(tmp_path, path, "--json")
    assert result.exit_code == code, result.output
    err = json.loads(result.stderr)
    assert err["exit_code"] == code and err["error"].startswith(message)
    assert set(err) == {"error", "hint", "exit_code"} and result.stdout == ""


def test_no_command_hides_from_the_walk() -> None:
    # The walk skips hidden commands: there must be none, or they would escape every check.
    def every(group: Any) -> list[Any]:
        subs = list(group.commands.values())
        return subs + [c for sub in subs if hasattr(sub, "commands") for c in every(sub)]

    assert not [c.name for c in every(typer.main.get_command(app)) if c.hidden]
