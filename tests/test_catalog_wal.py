"""A small ingest stays in the catalog's write-ahead log (issue 16): the first query after a
few thousand new runs does not wait for a checkpoint. The log is part of the catalog: later
openers (read-write, read-only, `replay sql`) see its runs, a process killed with it open
leaves a catalog that answers as a rebuilt one, and a rebuild or a log past its bound is
checkpointed."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from conftest import rows
from test_catalog_ingest import content

import replay
from replay.catalog import index, queries
from replay.catalog.index import Catalog

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _record(store: replay.Store, toy: replay.Pipeline, start: int, n: int = 3) -> None:
    for i in range(start, start + n):
        at = T0 + timedelta(seconds=i)
        replay.record(toy, rows(1, i), store=store, record_key="id", at=at, durable=False)
    store.flush()


def _log(store: replay.Store) -> int:
    """Bytes in the catalog's write-ahead log."""
    wal = Catalog(store).wal
    return wal.stat().st_size if wal.exists() else 0


def _hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.glob("catalog.*")}


def _child(store: replay.Store, code: str) -> None:
    """Run ``code`` in a process that kills itself where the code says: SIGKILL, no cleanup."""
    prelude = (
        "import os, signal, sys, replay\n"
        "from replay.catalog import ingest\n"
        "from replay.catalog.index import Catalog\n"
        "store = replay.Store.open(sys.argv[1])\n"
        "def die(): os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", prelude + code, str(store.root)])
    assert done.returncode == -signal.SIGKILL, "the child was meant to die mid-ingest"


def _answers_as_rebuilt(store: replay.Store, runs: int) -> None:
    """The catalog lists ``runs`` runs and holds the rows a rebuild gives."""
    indexed = content(store)
    assert len(indexed["runs"]) == runs
    queries.reindex(store)
    assert content(store) == indexed


def test_a_small_ingest_is_kept_in_the_log_and_read_back(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    _record(store, toy, 0)
    assert len(queries.runs(store)) == 3
    assert _log(store) > 0
    _record(store, toy, 10)
    assert len(queries.runs(store)) == 6
    assert {f["run_id"] for f in replay.find(store, "R11")}


def test_a_log_past_its_bound_is_checkpointed(
    store: replay.Store, toy: replay.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index, "WAL_KEPT", 0)
    _record(store, toy, 0)
    assert len(queries.runs(store)) == 3
    assert _log(store) == 0


def test_a_reindex_after_small_ingests_leaves_no_log_and_the_same_rows(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    for start in (0, 10, 20):
        _record(store, toy, start)
        content(store)
    refreshed = content(store)
    assert _log(store) > 0
    queries.reindex(store)
    assert _log(store) == 0
    assert content(store) == refreshed


def test_a_process_killed_with_a_small_ingest_committed_leaves_its_runs(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    _record(store, toy, 0)
    _child(store, "with Catalog(store).connect():\n    die()\n")
    assert _log(store) > 0
    _answers_as_rebuilt(store, 3)


def test_a_process_killed_mid_ingest_leaves_a_catalog_equal_to_a_rebuilt_one(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    _record(store, toy, 0)
    content(store)  # the first runs are in the log
    _record(store, toy, 10)
    # Killed after inserting the new runs' rows, before their transaction commits.
    _child(
        store,
        "bulk = ingest._bulk\n"
        "def dying(*args):\n    bulk(*args)\n    die()\n"
        "ingest._bulk = dying\n"
        "with Catalog(store).connect():\n    pass\n",
    )
    _answers_as_rebuilt(store, 6)


def test_a_read_only_opener_sees_the_runs_in_the_log_and_changes_nothing(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    _record(store, toy, 0)
    queries.runs(store)
    before = _hashes(store.root)
    with duckdb.connect(str(Catalog(store).path), read_only=True) as con:
        assert con.execute("select count(*) from runs").fetchall() == [(3,)]
    assert _hashes(store.root) == before


def test_sql_sees_the_runs_in_the_log_and_changes_nothing(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    _record(store, toy, 0)
    queries.runs(store)
    before = _hashes(store.root)
    assert queries.sql(store, "select count(*) as n from runs").to_pylist() == [{"n": 3}]
    assert _hashes(store.root) == before


def test_a_read_only_store_answers_beside_a_log(store: replay.Store, toy: replay.Pipeline) -> None:
    _record(store, toy, 0)
    queries.runs(store)
    assert _log(store) > 0
    assert len(queries.runs(replay.Store.open(store.root, readonly=True))) == 3
