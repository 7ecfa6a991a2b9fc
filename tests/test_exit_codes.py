"""Ordinary mistakes get their documented exit code and a one-line message, never 70.

Each test reproduces an action that once ended in "internal error" (exit 70).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import rows
from typer.testing import CliRunner

from replay import errors
from replay.catalog import queries
from replay.cli.app import app

MODEL_PIPELINE = """
import pyarrow.compute as pc
import replay

def score(table, *, models):
    return table.append_column("score", pc.multiply(table["x"], models["m"]["k"]))

pipeline = replay.Pipeline("swap-toy", [replay.Step("pd", score, models={"m": {"k": 2.0}})])
"""

MARKUP_PIPELINE = """
import pyarrow as pa
import replay

def tag(table):
    return table.append_column("[bold]", pa.array(["[/x] closes nothing"] * table.num_rows))

pipeline = replay.Pipeline("markup", [replay.Step("tag", tag)])
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "swap_pipeline.py").write_text(MODEL_PIPELINE)
    (tmp_path / "markup_pipeline.py").write_text(MARKUP_PIPELINE)
    pq.write_table(rows(3), tmp_path / "apps.parquet")
    return {"dir": tmp_path, "store": tmp_path / "store"}


def cli(env: dict[str, Path], *args: str) -> Any:
    return CliRunner().invoke(app, ["--store", str(env["store"]), *args])


def record(env: dict[str, Path], target: str) -> str:
    result = cli(
        env,
        "record",
        "--create",
        f"{env['dir']}/{target}",
        "--input",
        str(env["dir"] / "apps.parquet"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["run_id"])


def model_digest(env: dict[str, Path], run_id: str) -> str:
    info = json.loads(cli(env, "show", run_id, "--json").stdout)
    return next(c["digest"] for c in info["components"] if c["kind"] == "model")


# --swap with the short digest the tables print


def test_swap_accepts_the_short_digest_the_tables_print(env) -> None:
    run_id = record(env, "swap_pipeline.py:pipeline")
    short = "sha256:" + model_digest(env, run_id)[7:19]  # the 12 hex `replay run` prints
    result = cli(env, "run", run_id, "--swap", f"pd={short}")
    assert result.exit_code == 0, result.output
    assert "counterfactual" in result.stdout


def test_swap_with_an_unknown_digest_prefix_is_not_found(env) -> None:
    run_id = record(env, "swap_pipeline.py:pipeline")
    result = cli(env, "run", run_id, "--swap", "pd=sha256:00000000dead")
    assert result.exit_code == 4
    assert "no object in the store starts with sha256:00000000dead" in result.stderr
    assert "replay show RUN --json" in result.stderr


def test_swap_with_a_too_short_or_non_hex_digest_is_a_usage_error(env) -> None:
    run_id = record(env, "swap_pipeline.py:pipeline")
    for bad in ("sha256:7f9", "sha256:not-hex!"):
        result = cli(env, "run", run_id, "--swap", f"pd={bad}")
        assert result.exit_code == 2, result.output
        assert f"--swap pd={bad}: not a digest or a prefix of 8+ hex digits" in result.stderr


# Markup in data is data


def test_markup_in_recorded_data_is_printed_as_is(env) -> None:
    result = cli(
        env,
        "record",
        "--create",
        f"{env['dir']}/markup_pipeline.py:pipeline",
        "--input",
        str(env["dir"] / "apps.parquet"),
    )
    assert result.exit_code == 0, result.output
    assert "[/x] closes nothing" in result.stdout and "[bold]" in result.stdout
    run_id = json.loads(cli(env, "runs", "--json").stdout)["runs"][0]["run_id"]
    replayed = cli(env, "run", run_id)
    assert replayed.exit_code == 0, replayed.output
    queried = cli(env, "sql", 'SELECT "[bold]" FROM markup.tag')
    assert queried.exit_code == 0, queried.output
    assert "[/x] closes nothing" in queried.stdout


def test_markup_in_a_step_name_is_printed_as_is(env) -> None:
    step_named = MARKUP_PIPELINE.replace('"tag", tag', '"[/x]", tag')
    (env["dir"] / "step_pipeline.py").write_text(step_named)
    result = cli(
        env,
        "record",
        "--create",
        f"{env['dir']}/step_pipeline.py:pipeline",
        "--input",
        str(env["dir"] / "apps.parquet"),
    )
    assert result.exit_code == 6
    assert result.stderr.startswith("error: step name '[/x]' is not usable")


def test_an_error_message_with_markup_is_printed_as_is(env) -> None:
    result = cli(
        env,
        "record",
        "--create",
        f"{env['dir']}/[bold]x[/x].py:pipeline",
        "--input",
        str(env["dir"] / "apps.parquet"),
    )
    assert result.exit_code == 6
    assert "error: pipeline file" in result.stderr and "[bold]x[/x].py" in result.stderr


# Input, pipeline module and key files


def test_a_column_name_that_is_not_utf8_is_bad_input(env) -> None:
    path = env["dir"] / "bad.parquet"
    pq.write_table(pa.table({"id": ["a"], "x": [1.0], "ZZZZ": [1]}), path, store_schema=False)
    path.write_bytes(path.read_bytes().replace(b"ZZZZ", b"Z\xffZZ"))
    result = cli(
        env, "record", "--create", f"{env['dir']}/swap_pipeline.py:pipeline", "--input", str(path)
    )
    assert result.exit_code == 5, result.output
    assert f"{path}: a column name is not UTF-8" in result.stderr
    assert "rename the column" in result.stderr


@pytest.mark.parametrize("name", ["json", "random"])
def test_a_pipeline_file_named_like_a_stdlib_module_is_refused(env, name: str) -> None:
    (env["dir"] / f"{name}.py").write_text(MODEL_PIPELINE)
    result = cli(
        env,
        "record",
        "--create",
        f"{env['dir']}/{name}.py:pipeline",
        "--input",
        str(env["dir"] / "apps.parquet"),
    )
    assert result.exit_code == 6, result.output
    assert f"has the name of the standard-library module {name!r}" in result.stderr
    assert f"rename it, e.g. {name}_pipeline.py" in result.stderr


def test_a_key_that_is_a_folder_is_a_usage_error(env) -> None:
    run_id = record(env, "swap_pipeline.py:pipeline")
    result = cli(
        env, "export", run_id, "--out", str(env["dir"] / "e.bundle"), "--key", str(env["dir"])
    )
    assert result.exit_code == 2, result.output
    assert f"error: cannot use {env['dir']}: Is a directory" in result.stderr


def test_a_key_file_of_garbage_is_a_usage_error(env) -> None:
    run_id = record(env, "swap_pipeline.py:pipeline")
    garbage = env["dir"] / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\n\xff\x00garbage\n")
    garbage.chmod(0o600)
    result = cli(
        env, "export", run_id, "--out", str(env["dir"] / "e.bundle"), "--key", str(garbage)
    )
    assert result.exit_code == 2, result.output
    assert f"{garbage} is not a PEM private key" in result.stderr


# One error tree, one boundary


def test_tape_mismatch_and_image_tar_errors_are_in_the_tree() -> None:
    from replay.core.context import TapeMismatch
    from replay.docker.imagetar import ImageTarError

    assert issubclass(TapeMismatch, errors.PipelineError) and TapeMismatch.exit_code == 6
    assert issubclass(ImageTarError, errors.ReplayError) and ImageTarError.exit_code == 15
    assert errors.EXIT_CODES["TapeMismatch"] == 6 and errors.EXIT_CODES["ImageTarError"] == 15
    assert "TapeMismatch" in (errors.__doc__ or "") and "ImageTarError" in (errors.__doc__ or "")


def test_json_errors_are_one_object_on_stderr(env) -> None:
    cli(env, "init")
    result = cli(env, "runs", "--since", "yesterday", "--json")
    assert result.exit_code == 2 and result.stdout == ""
    err = json.loads(result.stderr)
    assert err["exit_code"] == 2 and err["error"].startswith("'yesterday'")
    assert set(err) == {"error", "hint", "exit_code"}


def test_text_errors_stay_text(env) -> None:
    cli(env, "init")
    result = cli(env, "runs", "--since", "yesterday")
    assert result.exit_code == 2 and result.stderr.startswith("error: 'yesterday'")


def _raise(exc: BaseException) -> Any:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return boom


# Third-party exceptions that reach the boundary: the code each maps to. Only a JSON
# decoding error of our own files is truly unexpected there (every reader translates it).
LEAKS = [
    (pa.ArrowInvalid("bad cast"), 5, "error: Arrow refused the data: bad cast"),
    (duckdb.Error("catalog.duckdb is locked"), 10, "error: DuckDB: catalog.duckdb is locked"),
    (
        PermissionError(13, "Permission denied", "/x/key.pem"),
        2,
        "error: cannot use /x/key.pem: Permission denied",
    ),
    (
        OSError(28, "No space left on device", "/x/store"),
        8,
        "error: cannot use /x/store: No space left on device",
    ),
    (
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        5,
        "error: bytes that are not UTF-8",
    ),
    (
        json.JSONDecodeError("Expecting value", "x", 0),
        70,
        "internal error: JSONDecodeError: Expecting value",
    ),
]


@pytest.mark.parametrize(
    ("exc", "code", "text"), LEAKS, ids=[type(e).__name__ for e, _, _ in LEAKS]
)
def test_no_third_party_error_reaches_the_user_as_a_traceback(
    env, monkeypatch: pytest.MonkeyPatch, exc: BaseException, code: int, text: str
) -> None:
    cli(env, "init")
    monkeypatch.setattr(queries, "runs", _raise(exc))
    result = cli(env, "runs")
    assert result.exit_code == code, result.output
    assert result.stderr.startswith(text) and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 2  # the message and its hint
