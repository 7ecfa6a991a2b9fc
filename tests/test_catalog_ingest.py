"""The catalog holds the same rows however its ingest was cut up (issue 16): refreshed after
every few runs, in batches that split a block, or rebuilt at once."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from conftest import rows

import replay
from replay.catalog import blocks, keys, queries
from replay.catalog.index import Catalog

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TABLES = ("runs", "steps", "components", "environments", "records", "meta")
WHERE = {"meta": " where key not like 'vacuum:%'"}


def _record_mixed(store: replay.Store, toy: replay.Pipeline, start: int) -> None:
    """One-row runs grouped in blocks, a tagged batch, a run too big to join, integer keys."""
    for i in range(7):
        at = T0 + timedelta(seconds=start + i)
        replay.record(toy, rows(1, start + i), store=store, record_key="id", at=at, durable=False)
    replay.record(
        toy, rows(5, start + 100), store=store, record_key="id", at=T0, tags={"team": "risk"}
    )
    replay.record(toy, rows(6000, start + 1000), store=store, record_key="id", at=T0)
    numbered = pa.table({"n": [start, start + 1], "x": [1.0, 2.0]})
    replay.record(toy, numbered, store=store, record_key="n", at=T0, durable=False)
    store.flush()


def content(store: replay.Store) -> dict[str, list[str]]:
    """Every row the catalog indexes (not when its checkpoints merged row groups: meta's
    vacuum keys)."""
    with Catalog(store).connect() as con:
        return {
            t: sorted(map(repr, con.execute(f"select * from {t}{WHERE.get(t, '')}").fetchall()))
            for t in TABLES
        }


def test_a_catalog_refreshed_after_every_few_runs_equals_one_rebuilt_at_once(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    for start in (0, 10_000, 20_000):
        _record_mixed(store, toy, start)
        content(store)  # each refresh ingests the runs since the last one
    refreshed = content(store)
    queries.reindex(store)
    assert content(store) == refreshed


def test_a_catalog_built_in_batches_that_split_blocks_equals_one_built_in_one(
    store: replay.Store, toy: replay.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record_mixed(store, toy, 0)
    queries.reindex(store)
    whole = content(store)
    monkeypatch.setattr(blocks, "BATCH", 3)
    queries.reindex(store)
    assert content(store) == whole


def test_streams_held_past_their_bound_are_indexed_as_those_read_at_once(
    store: replay.Store, toy: replay.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record_mixed(store, toy, 0)
    queries.reindex(store)
    whole = content(store)
    monkeypatch.setattr(keys, "HELD_BYTES", 0)
    queries.reindex(store)
    assert content(store) == whole


def test_records_are_the_key_of_every_input_row_of_every_run(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    _record_mixed(store, toy, 0)
    expected = set()
    for _, entry in store.entries():
        key = entry["manifest"]["record_key"]
        table = store.block(entry["block"]).table(entry["run_id"], "input")
        expected |= {(str(k), entry["run_id"], i) for i, k in enumerate(table[key].to_pylist())}
    with Catalog(store).connect() as con:
        indexed = con.execute('select key, run_id, "row" from records').fetchall()
    assert len(indexed) == len(expected) == 7 + 5 + 6000 + 2
    assert set(indexed) == expected


def test_ingesting_does_not_import_pandas(store: replay.Store, toy: replay.Pipeline) -> None:
    """pandas would cost every process that ingests 0.3 s and 40 MB, for nothing."""
    _record_mixed(store, toy, 0)
    code = (
        "import sys, replay; from replay.catalog import queries; "
        "queries.reindex(replay.Store.open(sys.argv[1])); print('pandas' in sys.modules)"
    )
    run = [sys.executable, "-c", code, str(store.root)]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == "False\n"
