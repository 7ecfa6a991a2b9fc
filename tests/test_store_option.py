"""`--store` anywhere on the line, and a store that does not exist is never made by a typo
(issue 14)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import rows
from typer.testing import CliRunner, Result

import replay
from replay.cli.app import app, hoist_store

AT = datetime(2026, 3, 14, 9, tzinfo=UTC)


@pytest.fixture
def recorded(tmp_path: Path, toy: replay.Pipeline) -> Path:
    store = replay.Store.open(tmp_path / "store")
    replay.record(toy, rows(2), store=store, record_key="id", at=AT)
    return store.root


def invoke(*args: str, cwd: Path) -> Result:
    with pytest.MonkeyPatch.context() as env:
        env.chdir(cwd)
        env.delenv("REPLAY_STORE", raising=False)
        return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("spelling", [["--store", "{}"], ["-s", "{}"], ["--store={}"]])
def test_store_after_the_command_chooses_the_store(recorded, tmp_path, spelling) -> None:
    where = [a.format(recorded) for a in spelling]
    result = invoke("runs", "--json", *where, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"] == 1


def test_verify_store_path_verifies_that_store(recorded, tmp_path) -> None:
    result = invoke("verify", "--store", str(recorded), "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"] == 1
    assert not (tmp_path / "snapshots").exists()


def test_a_store_flag_followed_by_an_option_stays_verifys_flag() -> None:
    assert hoist_store(["verify", "--store", "--key", "k.pub"]) == [
        "verify",
        "--store",
        "--key",
        "k.pub",
    ]
    assert hoist_store(["--store", "a", "verify", "--store"]) == [
        "--store",
        "a",
        "verify",
        "--store",
    ]


def test_only_options_after_the_command_move_and_never_past_a_double_dash() -> None:
    assert hoist_store(["sql", "select 1", "-s", "x"]) == ["--store", "x", "sql", "select 1"]
    assert hoist_store(["run", "--", "--store", "x"]) == ["run", "--", "--store", "x"]


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    (tmp_path / "pipe.py").write_text(
        "import replay\n\n"
        "def score(table):\n    return table\n\n"
        "pipeline = replay.Pipeline('desk', [replay.Step('score', score)])\n"
    )
    pq.write_table(rows(2), tmp_path / "in.parquet")
    return tmp_path / "pipe.py"


def record_into(store: Path, pipeline_file: Path, *extra: str) -> Result:
    """``replay --store STORE record pipe.py:pipeline --input in.parquet EXTRA…``."""
    folder = pipeline_file.parent
    return invoke(
        "--store",
        str(store),
        "record",
        f"{pipeline_file}:pipeline",
        "--input",
        str(folder / "in.parquet"),
        *extra,
        cwd=folder,
    )


def test_record_refuses_a_store_that_does_not_exist(pipeline_file, tmp_path) -> None:
    result = record_into(tmp_path / "stroe", pipeline_file, "--record-key", "id")
    assert result.exit_code == 4
    assert "no store at" in result.stderr and "--create" in result.stderr
    assert not (tmp_path / "stroe").exists()


def test_record_create_makes_the_store(pipeline_file, tmp_path) -> None:
    result = record_into(tmp_path / "new", pipeline_file, "--record-key", "id", "--create")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "FORMAT").exists()


def test_record_without_a_record_key_warns_that_find_will_not_find_it(
    pipeline_file, tmp_path
) -> None:
    result = record_into(tmp_path / "new", pipeline_file, "--create")
    assert result.exit_code == 0, result.output
    assert "warning: no --record-key" in result.stderr
