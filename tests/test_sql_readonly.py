"""`replay sql` only reads: issue 13, where it was a read-write session with the filesystem.

Each refused statement gets exit 10 with one line of reason and one of hint, and leaves every
file of the store as it was; the reads users rely on still answer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import rows
from test_cli import PIPELINE_MODULE
from typer.testing import CliRunner

from replay.catalog import queries
from replay.cli.app import app
from replay.errors import CatalogError
from replay.store.store import Store

READ_HINT = "ask with SELECT, WITH, FROM, VALUES, SHOW, DESCRIBE, SUMMARIZE or EXPLAIN"
KEEP_HINT = "to keep a result, print it with --json and redirect it"
PRAGMA_HINT = (
    "read metadata with table functions instead, e.g. select * from pragma_table_info('runs')"
)
NO_FILES_HINT = (
    "replay sql reads only the catalog and the row-data views: no files, extensions or settings"
)


def no_files(path: str) -> str:
    return (
        f'Permission Error: Cannot access file "{path}" - file system operations are '
        "disabled by configuration"
    )


# (query, message, hint); {tmp} is a folder outside the store, {store} the store itself.
REFUSED = [
    ("COPY runs TO '{tmp}/x.csv'", "replay sql only reads: refused COPY", KEEP_HINT),
    ("COPY (select 1) TO '{store}/FORMAT'", "replay sql only reads: refused COPY", KEEP_HINT),
    ("EXPORT DATABASE '{tmp}/exported'", "replay sql only reads: refused EXPORT", KEEP_HINT),
    ("SELECT * FROM read_text('/etc/passwd')", no_files("/etc/passwd"), NO_FILES_HINT),
    ("SELECT * FROM read_csv('/etc/passwd')", no_files("/etc/passwd"), NO_FILES_HINT),
    ("SELECT * FROM glob('/*')", no_files("/*"), NO_FILES_HINT),
    ("ATTACH '{tmp}/other.duckdb'", "replay sql only reads: refused ATTACH", READ_HINT),
    ("INSTALL httpfs", "replay sql only reads: refused INSTALL", READ_HINT),
    ("LOAD httpfs", "replay sql only reads: refused LOAD", READ_HINT),
    ("UPDATE EXTENSIONS", "replay sql only reads: refused UPDATE", READ_HINT),
    ("SET threads=1", "replay sql only reads: refused SET", READ_HINT),
    ("USE memory", "replay sql only reads: refused USE", READ_HINT),
    ("DELETE FROM records", "replay sql only reads: refused DELETE", READ_HINT),
    ("DROP TABLE runs", "replay sql only reads: refused DROP", READ_HINT),
    ("CREATE TABLE t AS SELECT 1", "replay sql only reads: refused CREATE", READ_HINT),
    (
        "INSERT INTO runs (run_id) VALUES ('forged')",
        "replay sql only reads: refused INSERT",
        READ_HINT,
    ),
    ("UPDATE runs SET status = 'forged'", "replay sql only reads: refused UPDATE", READ_HINT),
    ("PRAGMA force_checkpoint", "replay sql only reads: refused PRAGMA", PRAGMA_HINT),
    ("PRAGMA enable_profiling", "replay sql only reads: refused PRAGMA", PRAGMA_HINT),
    ("CALL force_checkpoint()", "replay sql only reads: refused CALL", READ_HINT),
    ("CHECKPOINT", "replay sql only reads: refused CHECKPOINT", READ_HINT),
    ("VACUUM", "replay sql only reads: refused VACUUM", READ_HINT),
    (
        "PIVOT runs ON status USING count(*)",
        "replay sql only reads: refused PIVOT",
        "list the values a PIVOT spreads: PIVOT t ON col IN ('a', 'b')",
    ),
    ("EXPLAIN ANALYZE DELETE FROM records", "replay sql only reads: refused DELETE", READ_HINT),
    (
        "select 1; drop table runs",
        "replay sql only reads: refused DROP (statement 2 of 2)",
        READ_HINT,
    ),
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "toy_pipeline.py").write_text(PIPELINE_MODULE)
    pq.write_table(rows(3), tmp_path / "apps.parquet")
    (tmp_path / "outside").mkdir()
    return {"dir": tmp_path, "store": tmp_path / "store", "outside": tmp_path / "outside"}


def run(env: dict[str, Path], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--store", str(env["store"]), *args])


def record(env: dict[str, Path]) -> str:
    result = run(
        env,
        "record",
        "--create",
        f"{env['dir']}/toy_pipeline.py:pipeline",
        "--input",
        str(env["dir"] / "apps.parquet"),
        "--record-key",
        "id",
        "--json",
    )
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["run_id"])


def sql_json(env: dict[str, Path], query: str) -> list[dict[str, object]]:
    result = run(env, "sql", query, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("query", "message", "hint"), REFUSED, ids=[q.split("'")[0].strip() for q, _, _ in REFUSED]
)
def test_a_statement_that_is_not_a_read_is_refused_and_changes_nothing(
    env, query, message, hint
) -> None:
    record(env)
    sql_json(env, "select 1 as n")  # the catalog has caught up with the ledger
    before = hashes(env["store"])
    query = query.format(tmp=env["outside"], store=env["store"])
    result = run(env, "sql", query)
    assert result.exit_code == 10, result.output
    assert result.stderr.splitlines() == [f"error: {message}", f"  {hint}"]
    assert hashes(env["store"]) == before
    assert list(env["outside"].iterdir()) == []


def test_after_a_refused_delete_every_run_is_still_found(env) -> None:
    ids = {record(env), record(env)}
    assert run(env, "sql", "DELETE FROM records").exit_code == 10
    assert run(env, "sql", "DROP TABLE runs").exit_code == 10
    assert sql_json(env, "select count(*) as n from runs") == [{"n": 2}]
    found = json.loads(run(env, "find", "R1", "--json").stdout)
    assert {f["run_id"] for f in found} == ids


def test_catalog_tables_join_the_row_data_views(env) -> None:
    run_id = record(env)
    joined = sql_json(
        env,
        "select r.run_id, d.id, d.decision from runs r "
        "join cli_toy.decide d using (run_id) "
        "join records k on k.run_id = r.run_id and k.row = d.row "
        "where k.key = 'R2'",
    )
    assert joined == [{"run_id": run_id, "id": "R2", "decision": "approve"}]


@pytest.mark.parametrize(
    "query",
    [
        "with n as (select count(*) as c from runs) select c from n",
        "from runs select run_id",
        "table runs",
        "values (1, 'a')",
        "show tables",
        "show all tables",
        "describe runs",
        "summarize runs",
        "explain select * from runs",
        "explain analyze select count(*) from records",
        "select * from pragma_table_info('runs')",
        "select 1 as a; select count(*) from cli_toy.input",
        "/* a comment first */ select 1",
        "pivot runs on status in ('ok', 'failed') using count(*)",
    ],
)
def test_reads_still_answer(env, query) -> None:
    record(env)
    result = run(env, "sql", query, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)


def test_a_torn_catalog_is_rebuilt_for_sql_too(env) -> None:
    record(env)
    sql_json(env, "select 1 as n")
    (env["store"] / "catalog.duckdb").write_bytes(b"garbage" * 100)
    assert sql_json(env, "select count(*) as n from runs") == [{"n": 1}]


def test_a_read_only_store_refuses_writes_and_answers_reads(env) -> None:
    record(env)
    store = Store.open(env["store"], readonly=True)
    with pytest.raises(CatalogError) as refused:
        queries.sql(store, "delete from records")
    assert refused.value.message == "replay sql only reads: refused DELETE"
    with pytest.raises(CatalogError) as unreadable:
        queries.sql(store, "select * from read_text('/etc/passwd')")
    assert unreadable.value.message == no_files("/etc/passwd")
    assert queries.sql(store, "select count(*) as n from records").to_pylist() == [{"n": 3}]
