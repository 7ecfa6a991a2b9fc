"""Record keys compacted into Parquet on the store (issue 17): `find` reads the keys of older
runs from the store's parts, so a reader's catalog holds only what came after them.

On a folder store and on S3 (a moto server in its own process), with a bank's batch scoring
job: 300 applications a run, an embedding column beside the scalars, keyed by application."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import replay
from replay.catalog import compact
from replay.catalog.check import verify_store
from replay.catalog.index import Catalog
from replay.cli.main import app
from replay.errors import CorruptionError
from replay.store import parts

T0 = datetime(2026, 3, 14, 9, tzinfo=UTC)
ROWS = 300  # more than an index line carries: the keys come from the blocks


def _embed(table: pa.Table) -> pa.Table:
    vectors = [[x, x / 2, 1.0] for x in table["income"].to_pylist()]
    return table.append_column("embedding", pa.array(vectors, pa.list_(pa.float32())))


def _decide(table: pa.Table) -> pa.Table:
    approve = [v[0] > 40 for v in table["embedding"].to_pylist()]
    return table.append_column("approved", pa.array(approve))


SCORING = replay.Pipeline("scoring", [replay.Step("embed", _embed), replay.Step("decide", _decide)])


def _batch(n: int) -> pa.Table:
    ids = [f"APP-{n:03d}-{i:04d}" for i in range(ROWS)]
    return pa.table({"application_id": ids, "income": [float(i % 90) for i in range(ROWS)]})


def _record(store: replay.Store, first: int, count: int) -> list[str]:
    return [
        replay.record(
            SCORING,
            _batch(n),
            store=store,
            record_key="application_id",
            at=T0 + timedelta(minutes=n),
        ).run_id
        for n in range(first, first + count)
    ]


def _new_reader(store: replay.Store) -> replay.Store:
    """The same store through a catalog built afresh (as a new analyst's machine has)."""
    catalog = Catalog(store).path
    for path in (catalog, catalog.with_name(catalog.name + ".wal")):
        path.unlink(missing_ok=True)
    return store


def _records_rows(store: replay.Store) -> int:
    with Catalog(store).connect() as con:
        return int(con.execute("select count(*) from records").fetchall()[0][0])


@pytest.fixture
def store(either_store: replay.Store) -> replay.Store:
    return either_store


def test_find_answers_from_the_parts_with_no_records_rows_in_a_new_catalog(store) -> None:
    runs = _record(store, 0, 3)
    before = replay.find(store, "APP-001-0123")
    done = replay.compact(store)
    assert (done.start, done.rows) == (0, 3 * ROWS)
    _new_reader(store)
    assert _records_rows(store) == 0
    found = replay.find(store, "APP-001-0123")
    assert found == before
    assert [(f["run_id"], f["row"]) for f in found] == [(runs[1], 123)]


def test_runs_after_the_parts_are_found_from_the_catalog(store) -> None:
    _record(store, 0, 2)
    replay.compact(store)
    _new_reader(store)
    later = _record(store, 2, 1)
    assert _records_rows(store) == ROWS
    assert [f["run_id"] for f in replay.find(store, "APP-002-0007")] == later
    assert replay.find(store, "APP-000-0007")[0]["row"] == 7


def test_a_later_compaction_merges_the_small_parts_into_one_covering_them(store) -> None:
    _record(store, 0, 2)
    replay.compact(store)
    _record(store, 2, 2)
    done = replay.compact(store)
    assert (done.start, done.rows) == (0, 4 * ROWS)
    assert parts.chain(parts.parts(store.fs)) == [parts.Part(0, done.stop)]
    _new_reader(store)
    assert [f["row"] for f in replay.find(store, "APP-003-0299")] == [299]


def test_a_part_larger_than_the_new_keys_is_left_as_it_is(store) -> None:
    _record(store, 0, 2)
    first = replay.compact(store)
    _record(store, 2, 1)
    done = replay.compact(store)
    assert (done.start, done.rows) == (first.stop, ROWS)
    assert parts.chain(parts.parts(store.fs)) == [
        parts.Part(0, first.stop),
        parts.Part(first.stop, done.stop),
    ]
    _new_reader(store)
    assert [f["row"] for f in replay.find(store, "APP-000-0001")] == [1]
    assert [f["row"] for f in replay.find(store, "APP-002-0002")] == [2]


def test_readers_take_the_parts_reaching_furthest_from_seq_zero_without_a_gap() -> None:
    found = [parts.Part(0, 2), parts.Part(2, 4), parts.Part(0, 4), parts.Part(4, 5)]
    assert parts.chain([*found, parts.Part(6, 8)]) == [parts.Part(0, 4), parts.Part(4, 5)]
    assert parts.chain([parts.Part(1, 3)]) == []


def test_a_part_is_sorted_by_key_in_row_groups_with_microsecond_utc_clocks(store) -> None:
    _record(store, 0, 2)
    part = replay.compact(store).part
    assert part is not None
    table = pq.read_table(pa.BufferReader(store.fs.read(part)))
    assert table.schema.field("clock").type == pa.timestamp("us", "UTC")
    assert table["key"].to_pylist() == sorted(table["key"].to_pylist())


def test_nothing_new_is_nothing_to_compact(store) -> None:
    _record(store, 0, 1)
    replay.compact(store)
    assert replay.compact(store).part is None


def test_parts_superseded_within_the_grace_period_are_kept(store) -> None:
    _record(store, 0, 2)
    first = replay.compact(store).part
    _record(store, 2, 2)
    assert replay.compact(store).deleted == ()
    assert first is not None and store.fs.exists(first)


def test_the_next_compaction_deletes_the_parts_superseded_longer_ago(store, monkeypatch) -> None:
    _record(store, 0, 2)
    first = replay.compact(store).part
    _record(store, 2, 2)
    replay.compact(store)  # merges the first part into one covering it
    monkeypatch.setattr(compact, "GRACE", 0)  # as if the grace period had passed since
    _record(store, 4, 1)
    assert replay.compact(store).deleted == (first,)
    assert first is not None and not store.fs.exists(first)
    _new_reader(store)
    assert [f["row"] for f in replay.find(store, "APP-001-0042")] == [42]


def test_compaction_deletes_only_parts_a_part_of_the_chain_covers(store, monkeypatch) -> None:
    monkeypatch.setattr(compact, "GRACE", 0)
    stray = parts.Part(100, 101).path  # beyond the chain's end: covered by none of it
    store.fs.put_if_absent(stray, b"")
    for first, count in ((0, 2), (2, 2), (4, 1), (5, 1)):
        _record(store, first, count)
        replay.compact(store)
        have = parts.parts(store.fs)
        assert [p.path for p in have] == [p.path for p in parts.chain(have)] + [stray]
    _new_reader(store)
    for n in range(6):
        assert [f["row"] for f in replay.find(store, f"APP-{n:03d}-0007")] == [7]


def test_a_part_is_superseded_from_when_the_first_part_covering_it_was_written() -> None:
    a, b, c, d = parts.Part(0, 2), parts.Part(2, 3), parts.Part(0, 3), parts.Part(0, 5)
    stray = parts.Part(6, 8)  # past a gap: no part of the chain covers it
    written = {a: 10, b: 20, c: 30, d: 40, stray: 50}
    assert parts.superseded(written) == {a: 30, b: 30, c: 40}


def test_a_reader_that_listed_a_part_deleted_since_lists_the_parts_again(store) -> None:
    runs = _record(store, 0, 2)
    first = replay.compact(store).part
    _new_reader(store)
    replay.find(store, "APP-000-0001")  # this process lists the first part and reads it
    _record(store, 2, 2)
    replay.compact(store)
    assert first is not None
    store.fs.remove(first)  # by a compaction elsewhere, once its grace period passed
    found = replay.find(store, "APP-000-0042")
    assert [(f["run_id"], f["row"]) for f in found] == [(runs[0], 42)]


def test_a_long_lived_reader_lists_the_parts_again_within_half_the_grace(store, monkeypatch):
    _record(store, 0, 2)
    first = replay.compact(store).part
    _new_reader(store)
    query = "select count(*) as n from compacted_records where key = 'APP-000-0001'"
    assert replay.sql(store, query)["n"].to_pylist() == [1]
    _record(store, 2, 2)
    replay.compact(store)
    assert first is not None
    store.fs.remove(first)  # not through this process's copies of the listing
    monkeypatch.setattr(compact, "GRACE", 0)  # this process listed the parts over GRACE/2 ago
    assert replay.sql(store, query)["n"].to_pylist() == [1]


def test_verify_compares_the_parts_with_the_blocks(store) -> None:
    _record(store, 0, 2)
    part = replay.compact(store).part
    assert part is not None
    _new_reader(store)
    assert verify_store(store)["runs"] == 2
    _forge(store, part, row=5, key="APP-999-0000")
    _new_reader(store)
    with pytest.raises(CorruptionError, match="disagree with its block"):
        verify_store(store)


def test_an_edited_part_cannot_change_what_find_answers(store, capsys) -> None:
    runs = _record(store, 0, 2)
    part = replay.compact(store).part
    assert part is not None
    _forge(store, part, row=5, key="APP-001-0123")  # a second, false holder of the key
    _new_reader(store)
    found = replay.find(store, "APP-001-0123")
    assert [(f["run_id"], f["row"]) for f in found] == [(runs[1], 123)]
    assert "catalog disagreed with the ledger; rebuilt" in capsys.readouterr().err


def _forge(store: replay.Store, part: str, row: int, key: str) -> None:
    """What an attacker with write access does: edit a part's key and replace the object."""
    table = pq.read_table(pa.BufferReader(store.fs.read(part)))
    keys = table["key"].to_pylist()
    keys[row] = key
    out = pa.BufferOutputStream()
    pq.write_table(table.set_column(0, "key", pa.array(keys)), out)
    _replace(store, part, out.getvalue().to_pybytes())


def _replace(store: replay.Store, part: str, data: bytes) -> None:
    compact._DATASETS.clear()  # as in a new process, which never read the part before
    if store.remote is None:
        (store.root / part).write_bytes(data)
        return
    import boto3

    remote = store.remote
    boto3.client("s3").put_object(Bucket=remote.bucket, Key=remote.prefix + part, Body=data)


def test_compact_on_the_command_line(store) -> None:
    _record(store, 0, 1)
    result = CliRunner().invoke(app, ["--store", store.url, "compact", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == ROWS


def test_compact_names_the_ledger_entries_it_compacted_then_that_nothing_is_new(store) -> None:
    _record(store, 0, 2)
    runner = CliRunner()
    first = runner.invoke(app, ["--store", store.url, "compact"], terminal_width=200)
    again = runner.invoke(app, ["--store", store.url, "compact"], terminal_width=200)
    assert f"record keys of ledger entries 1 to 2 ({2 * ROWS:,} keys)" in first.output
    assert "nothing to compact: the record keys of ledger entries 1 to 2 are" in again.output


def test_compact_names_the_superseded_parts_it_deleted(store, monkeypatch) -> None:
    monkeypatch.setattr(compact, "GRACE", 0)
    _record(store, 0, 2)
    first = replay.compact(store).part
    _record(store, 2, 2)
    result = CliRunner().invoke(app, ["--store", store.url, "compact"], terminal_width=200)
    assert f"deleted {first} (superseded)" in result.output


def test_sql_reads_the_compacted_keys_as_a_view(store) -> None:
    _record(store, 0, 2)
    replay.compact(store)
    _new_reader(store)
    _record(store, 2, 1)
    table = replay.sql(
        store,
        "select count(*) as n from (select key from records "
        "union all select key from compacted_records)",
    )
    assert table["n"].to_pylist() == [3 * ROWS]


def test_a_read_only_store_is_not_compacted(store) -> None:
    _record(store, 0, 1)
    reader = replay.Store.open(store.url, readonly=True)
    with pytest.raises(replay.ReadOnlyStoreError, match="read-only"):
        replay.compact(reader)


def test_a_read_only_reader_finds_the_compacted_keys(store) -> None:
    runs = _record(store, 0, 2)
    replay.compact(store)
    reader = replay.Store.open(store.url, readonly=True)
    assert [(f["run_id"], f["row"]) for f in replay.find(reader, "APP-000-0042")] == [(runs[0], 42)]


def test_a_part_cut_short_is_a_one_line_error_naming_it(store) -> None:
    _record(store, 0, 1)
    part = replay.compact(store).part
    assert part is not None
    _replace(store, part, store.fs.read(part)[:-100])
    _new_reader(store)
    result = CliRunner().invoke(app, ["--store", store.url, "find", "APP-000-0001"])
    assert result.exit_code == CorruptionError.exit_code
    assert part in result.output and "Traceback" not in result.output
