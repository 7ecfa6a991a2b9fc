"""The catalog is an index of the files: a tampered catalog never decides an answer (issue 13)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb
import pytest
from conftest import rows
from typer.testing import CliRunner

import replay
from replay.catalog import queries
from replay.cli.app import app
from replay.core import keys, trust
from replay.store import checkpoint

T1 = datetime(2026, 3, 14, 9, tzinfo=UTC)
T2 = datetime(2026, 3, 14, 10, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("no_trust")


def _cli(store: replay.Store, *args: str) -> Any:
    return CliRunner().invoke(app, ["--store", str(store.root), *args])


def _two_runs(store: replay.Store, toy: replay.Pipeline) -> tuple[str, str]:
    """R0, R1 decided by the first run; R5, R6 by the second (and the catalog built)."""
    first = replay.record(toy, rows(2), store=store, record_key="id", at=T1).run_id
    second = replay.record(toy, rows(2, 5), store=store, record_key="id", at=T2).run_id
    store.flush()
    queries.reindex(store)
    return first, second


def _tamper(store: replay.Store, sql: str, params: list[Any]) -> None:
    con = duckdb.connect(str(store.root / "catalog.duckdb"))
    try:
        con.execute(sql, params)
    finally:
        con.close()


def test_a_records_row_redirected_to_another_run_still_finds_the_right_run(store, toy) -> None:
    first, second = _two_runs(store, toy)
    _tamper(store, "update records set run_id = ? where key = 'R1'", [second])
    result = _cli(store, "find", "R1", "--json")
    assert result.exit_code == 0, result.output
    assert [r["run_id"] for r in json.loads(result.stdout)] == [first]
    assert "catalog disagreed with the ledger; rebuilt" in result.stderr
    again = _cli(store, "find", "R1", "--json")  # rebuilt: no warning the second time
    assert [r["run_id"] for r in json.loads(again.stdout)] == [first]
    assert "disagreed" not in again.stderr


def test_a_deleted_records_row_is_found_after_the_rebuild(store, toy) -> None:
    first, _ = _two_runs(store, toy)
    _tamper(store, "delete from records where key = 'R0'", [])
    result = _cli(store, "find", "R0", "--json")
    assert result.exit_code == 0, result.output
    assert [r["run_id"] for r in json.loads(result.stdout)] == [first]
    assert "catalog disagreed with the ledger; rebuilt" in result.stderr


def test_at_record_confirms_its_run_in_the_ledger(store, toy) -> None:
    first, second = _two_runs(store, toy)
    _tamper(store, "update records set run_id = ? where key = 'R0'", [second])
    when = "2100-01-01T00:00:00Z"
    result = _cli(store, "at", when, "--pipeline", "toy", "--record", "R0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["found"]["run_id"] == first
    assert "catalog disagreed with the ledger; rebuilt" in result.stderr


def test_at_record_finds_a_deleted_records_row(store, toy) -> None:
    _, second = _two_runs(store, toy)
    _tamper(store, "delete from records where key = 'R6'", [])
    result = _cli(
        store, "at", "2100-01-01T00:00:00Z", "--pipeline", "toy", "--record", "R6", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["found"]["run_id"] == second


def test_verify_store_reports_a_tampered_catalog(store, toy) -> None:
    first, second = _two_runs(store, toy)
    assert _cli(store, "verify", "--store", "--insecure-any-signer").exit_code == 0
    _tamper(store, "update records set run_id = ? where key = 'R1'", [second])
    result = _cli(store, "verify", "--store", "--insecure-any-signer")
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "FAIL" in text and "catalog.duckdb" in text.replace(" ", "")
    assert f"records of run {first} disagree with its block at input row 1" in text
    assert "`replay reindex` rebuilds it" in text  # what to do: the catalog is only an index
    # A check reports, it does not repair: the tampered row is still there to be examined.
    con = duckdb.connect(str(store.root / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("select run_id from records where key = 'R1'").fetchall() == [(second,)]
    finally:
        con.close()


def test_verify_store_says_to_restore_a_damaged_block_not_to_run_itself(store, toy) -> None:
    _two_runs(store, toy)
    segment = next((store.root / "segments").iterdir())
    data = bytearray(segment.read_bytes())
    data[len(data) // 3] ^= 0xFF
    segment.write_bytes(bytes(data))
    result = _cli(store, "verify", "--store", "--insecure-any-signer")
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "FAIL" in text, text
    assert "restore it from a backup or replica of the store" in text
    assert "to list every damaged file" not in text


def test_verify_store_names_a_runs_row_that_disagrees(store, toy) -> None:
    first, _ = _two_runs(store, toy)
    _tamper(store, "update runs set pipeline = 'other' where run_id = ?", [first])
    result = _cli(store, "verify", "--store", "--insecure-any-signer")
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "FAIL" in text and "runs row seq 1" in text, text


def test_export_right_after_recording_in_a_pinned_checkpointed_store(
    store, toy, tmp_path, monkeypatch
) -> None:
    key = keys.init_key(tmp_path / "signer" / "signing-key.pem")
    replay.record(toy, rows(2), store=store, record_key="id", at=T1)
    checkpoint.sign(store, keys.load_private(key))
    trust.add(keys.public_path(key), "signer")
    fresh = replay.record(toy, rows(2, 3), store=store, record_key="id", at=T2).run_id
    store.flush()
    out = tmp_path / "fresh.bundle"
    result = _cli(store, "export", fresh, "--out", str(out), "--key", str(key))
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_export_still_refuses_a_broken_chain(store, toy, tmp_path) -> None:
    key = keys.init_key(tmp_path / "signer" / "signing-key.pem")
    run_ids = [replay.record(toy, rows(1, i), store=store, at=T1).run_id for i in range(3)]
    store.flush()
    queries.reindex(store)
    ledger = store.ledger.path
    lines = ledger.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["prev"] = "sha256:" + "0" * 64
    lines[1] = json.dumps(entry, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    ledger.write_bytes(b"".join(lines))
    result = _cli(
        replay.Store.open(store.root),
        "export",
        run_ids[2],
        "--out",
        str(tmp_path / "x.bundle"),
        "--key",
        str(key),
    )
    text = "".join(result.output.split())
    assert result.exit_code == 9, result.output
    assert (
        str(ledger).replace(" ", "") in text
        and "entry2" in text
        and "breakthechain" in text.replace("breaks", "break")
    ), result.output
    assert not (tmp_path / "x.bundle").exists()


def test_a_row_moved_onto_a_run_holding_the_same_key_is_caught(store, toy) -> None:
    first = replay.record(toy, rows(2), store=store, record_key="id", at=T1).run_id
    second = replay.record(toy, rows(2), store=store, record_key="id", at=T2).run_id
    store.flush()
    queries.reindex(store)
    _tamper(store, "update records set run_id = ? where key = 'R1' and run_id = ?", [second, first])
    result = _cli(store, "find", "R1", "--json")
    assert result.exit_code == 0, result.output
    assert [r["run_id"] for r in json.loads(result.stdout)] == [second, first]
    assert "catalog disagreed with the ledger; rebuilt" in result.stderr
