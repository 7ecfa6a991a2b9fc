"""Inputs that must not break a store (issue 13): a record key is a scalar that names a
record as text, refused before anything is written otherwise; and a store that already holds
a run keyed by something the catalog cannot index still answers every catalog command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import replay
from replay.capture import record as capture
from replay.catalog.blocks import CatalogWarning
from replay.cli.app import app
from replay.errors import InputError

AT = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
HINT = (
    "key the records by a column of strings, integers, dates, timestamps or decimals "
    "(cast this one, or join its parts into a string)"
)
PIPELINE_MODULE = """
import pyarrow.compute as pc
import replay

def scale(table):
    return table.append_column("score", pc.multiply(table["x"], 2.0))

pipeline = replay.Pipeline("keyed", [replay.Step("scale", scale)])
"""


def _not_utf8(kind: pa.DataType) -> pa.Array:
    """Two values, the second bytes that are not UTF-8 (a string array built from buffers
    holds whatever it is given)."""
    return pa.Array.from_buffers(
        kind,
        2,
        [
            None,
            pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00"),
            pa.py_buffer(b"A1\xff\xfe"),
        ],
    )


# Key columns that cannot name a record, and the type each is reported as.
REFUSED = {
    "struct": (pa.array([{"a": 1}, {"a": 2}]), "struct<a: int64>"),
    "list": (pa.array([[1], [2]]), "list<item: int64>"),
    "map": (
        pa.array([[("a", 1)], [("b", 2)]], pa.map_(pa.string(), pa.int64())),
        "map<string, int64>",
    ),
    "float": (pa.array([float("nan"), 1.0]), "double"),
    "bool": (pa.array([True, False]), "bool"),
    "null": (pa.nulls(2), "null"),
    "dictionary of integers": (
        pa.array([1, 2]).dictionary_encode(),
        "dictionary<values=int64, indices=int32, ordered=0>",
    ),
}
NOT_UTF8 = {"binary": _not_utf8(pa.binary()), "string": _not_utf8(pa.string())}


def _input(key: pa.Array) -> pa.Table:
    return pa.table({"k": key, "x": [1.0, 2.0]})


def _pipeline() -> replay.Pipeline:
    return replay.Pipeline(
        "keyed",
        [replay.Step("scale", lambda t: t.append_column("score", pc.multiply(t["x"], 2.0)))],
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _a_store_with_one_run(store: replay.Store) -> dict[str, bytes]:
    replay.record(
        _pipeline(), pa.table({"k": ["A1"], "x": [1.0]}), store=store, record_key="k", at=AT
    )
    return _files(store.root)


@pytest.mark.parametrize("kind", REFUSED)
def test_a_key_of_a_type_that_cannot_name_a_record_is_refused(store, kind) -> None:
    before = _a_store_with_one_run(store)
    column, shown = REFUSED[kind]
    with pytest.raises(InputError) as caught:
        replay.record(_pipeline(), _input(column), store=store, record_key="k", at=AT)
    assert (
        caught.value.message
        == f"record key column 'k' is of type {shown}, which cannot name a record"
    )
    assert caught.value.hint == HINT
    assert _files(store.root) == before


@pytest.mark.parametrize("kind", NOT_UTF8)
def test_a_key_of_bytes_that_are_not_utf8_is_refused(store, kind) -> None:
    before = _a_store_with_one_run(store)
    with pytest.raises(InputError) as caught:
        replay.record(_pipeline(), _input(NOT_UTF8[kind]), store=store, record_key="k", at=AT)
    assert (
        caught.value.message
        == f"record key column 'k' ({kind}) holds bytes that are not UTF-8 (row 1)"
    )
    assert caught.value.hint == "decode them into strings, or hex-encode them"
    assert _files(store.root) == before


def test_a_key_column_named_twice_is_refused(store) -> None:
    table = pa.Table.from_arrays(
        [pa.array(["A1"]), pa.array(["B1"]), pa.array([1.0])], names=["k", "k", "x"]
    )
    with pytest.raises(InputError, match="record key column 'k' appears 2 times in the input"):
        replay.record(_pipeline(), table, store=store, record_key="k", at=AT)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "keyed_pipeline.py").write_text(PIPELINE_MODULE)
    pq.write_table(pa.table({"k": ["A1"], "x": [1.0]}), tmp_path / "good.parquet")
    pq.write_table(_input(pa.array([{"a": 1}, {"a": 2}])), tmp_path / "struct.parquet")
    return {"dir": tmp_path, "store": tmp_path / "store"}


def _cli(env: dict[str, Path], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--store", str(env["store"]), *args])


def _record(env: dict[str, Path], source: str):  # type: ignore[no-untyped-def]
    return _cli(
        env,
        "record",
        "--create",
        f"{env['dir']}/keyed_pipeline.py:pipeline",
        "--input",
        str(env["dir"] / source),
        "--record-key",
        "k",
        "--json",
    )


def test_the_cli_refuses_a_struct_key_with_exit_5_and_writes_nothing(env) -> None:
    assert _record(env, "good.parquet").exit_code == 0
    before = _files(env["store"])
    result = _record(env, "struct.parquet")
    assert result.exit_code == 5, result.output
    err = json.loads(result.stderr)  # with --json, the error is one JSON object
    assert err["exit_code"] == 5 and f"{err['error']} {err['hint']}" == (
        f"record key column 'k' is of type struct<a: int64>, which cannot name a record {HINT}"
    )
    assert _files(env["store"]) == before


def _store_keyed_by(store: replay.Store, key: pa.Array, monkeypatch: pytest.MonkeyPatch) -> str:
    """An old store: a run keyed by a column recorded before keys were checked."""
    monkeypatch.setattr(capture, "_check_record_key", lambda table, name: None)
    run_id = replay.record(_pipeline(), _input(key), store=store, record_key="k", at=AT).run_id
    monkeypatch.undo()
    replay.record(
        _pipeline(), pa.table({"k": ["A1"], "x": [1.0]}), store=store, record_key="k", at=AT
    )
    return run_id


OLD_KEYS = {
    "struct": (pa.array([{"a": 1}, {"a": 2}]), "its type struct<a: int64> has no text form"),
    "binary": (_not_utf8(pa.binary()), "its bytes are not UTF-8"),
}


@pytest.mark.parametrize("kind", OLD_KEYS)
@pytest.mark.parametrize("command", ["runs", "find", "show"])
def test_catalog_commands_skip_a_key_they_cannot_index_and_warn(
    store, monkeypatch, kind, command
) -> None:
    key, why = OLD_KEYS[kind]
    run_id = _store_keyed_by(store, key, monkeypatch)
    args = {
        "runs": ["runs", "--json"],
        "find": ["find", "A1", "--json"],
        "show": ["show", run_id, "--json"],
    }[command]
    with pytest.warns(CatalogWarning) as seen:
        result = CliRunner().invoke(app, ["--store", str(store.root), *args])
    assert result.exit_code == 0, result.output
    assert [str(w.message) for w in seen] == [
        f"run {run_id}: record key 'k' not indexed ({why}); `replay find` will not find its records"
    ]
    if command == "runs":
        assert json.loads(result.stdout)["total"] == 2  # the run itself is listed


def test_the_warning_reaches_stderr(store, monkeypatch) -> None:
    run_id = _store_keyed_by(store, pa.array([{"a": 1}, {"a": 2}]), monkeypatch)
    done = subprocess.run(
        [sys.executable, "-m", "replay", "--store", str(store.root), "runs"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"CatalogWarning: run {run_id}: record key 'k' not indexed" in done.stderr
