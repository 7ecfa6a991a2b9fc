"""The catalog rows writers leave at commit (replay.store.rows, issue 16): ingest reads them
instead of the blocks, and never takes one that does not match the ledger."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import rows
from hypothesis import given
from hypothesis import strategies as st

import replay
from replay.catalog import feed, pair, queries
from replay.catalog.index import Catalog
from replay.engine.timetravel import run_as_of
from replay.errors import StepError
from replay.store import frames
from replay.store import rows as index_lines

T0 = datetime(2026, 3, 14, 9, tzinfo=UTC)
TABLES = ("runs", "steps", "components", "environments", "records")


def features(table: pa.Table) -> pa.Table:
    """A bank's feature step: an embedding column beside the scalars."""
    vectors = [[float(x), float(x) / 2, 0.0] for x in table["x"].to_pylist()]
    return table.append_column("embedding", pa.array(vectors, pa.list_(pa.float32())))


def decide(table: pa.Table) -> pa.Table:
    if "boom" in table["id"].to_pylist():
        raise ValueError("bureau unavailable")
    return table.append_column("decision", pa.array(["approve"] * table.num_rows))


@pytest.fixture
def chain() -> replay.Pipeline:
    return replay.Pipeline(
        "onboarding", [replay.Step("features", features), replay.Step("decide", decide)]
    )


def _record_everything(store: replay.Store, chain: replay.Pipeline, start: int = 0) -> None:
    """Grouped 1-row runs, a durable tagged batch, a big batch, integer keys, a failed run
    and a what-if."""
    for i in range(6):
        at = T0 + timedelta(seconds=start + i)
        replay.record(chain, rows(1, start + i), store=store, record_key="id", at=at, durable=False)
    replay.record(
        chain, rows(5, start + 100), store=store, record_key="id", at=T0, tags={"desk": "sme"}
    )
    replay.record(chain, rows(700, start + 1000), store=store, record_key="id", at=T0)
    numbered = pa.table({"id": [str(start), "n"], "n": [start, start + 1], "x": [1.0, 2.0]})
    replay.record(chain, numbered, store=store, record_key="n", at=T0)
    failing = pa.table({"id": ["boom"], "x": [3.0]})
    with pytest.raises(StepError):
        replay.record(chain, failing, store=store, record_key="id", at=T0)
    run_as_of(store, T0 + timedelta(hours=1), "onboarding", rows(2, start + 50), record_key="id")
    store.flush()


def _content(store: replay.Store) -> dict[str, list[str]]:
    with Catalog(store).connect() as con:
        tables = {
            t: sorted(map(repr, con.execute(f"select * from {t}").fetchall())) for t in TABLES
        }
        # Not how far it read the lines, nor when its checkpoints merged row groups.
        meta = con.execute(
            "select * from meta where key not like 'lines:%' and key not like 'vacuum:%'"
        ).fetchall()
    return {**tables, "meta": sorted(map(repr, meta))}


def _from_blocks(store: replay.Store) -> dict[str, list[str]]:
    """The catalog as ingest builds it without any index line."""
    lines = store.root / "index"
    shutil.move(lines, store.root / "index.away")
    try:
        queries.reindex(store)
        return _content(store)
    finally:
        shutil.move(store.root / "index.away", lines)


def _reindex(store: replay.Store) -> dict[str, list[str]]:
    queries.reindex(store)
    return _content(store)


def _lines(store: replay.Store) -> list[tuple[Path, list[dict[str, Any]]]]:
    return [
        (p, [json.loads(line) for line in p.read_bytes().splitlines()])
        for p in sorted((store.root / "index").iterdir())
    ]


def test_every_committed_run_leaves_a_line_naming_its_ledger_entry(
    store: replay.Store, chain: replay.Pipeline
) -> None:
    _record_everything(store, chain)
    entries = {e["seq"]: e for _, e in store.ledger.read()}
    lines = [line for _, found in _lines(store) for line in found]
    assert sorted(line["seq"] for line in lines) == sorted(entries)
    for line in lines:
        entry = entries[line["seq"]]
        assert (line["run_id"], line["manifest_sha256"]) == (
            entry["run_id"],
            entry["manifest_sha256"],
        )


def test_a_catalog_from_the_lines_equals_one_from_the_blocks(
    store: replay.Store, chain: replay.Pipeline
) -> None:
    _record_everything(store, chain)
    assert _reindex(store) == _from_blocks(store)


def test_a_catalog_from_the_lines_an_s3_store_sealed_equals_one_from_the_blocks(
    s3_url: str, chain: replay.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = replay.Store.open(s3_url)
    _record_everything(store, chain)
    store.sync()
    assert (store.root / "index" / "sealed.frames").read_bytes().startswith(frames.ARROW)
    from_lines = _reindex(store)
    monkeypatch.setattr(index_lines, "unpacked", lambda payload: None)  # none reads
    assert from_lines == _reindex(store)


def test_runs_with_their_keys_in_a_line_are_indexed_without_their_blocks(
    store: replay.Store, chain: replay.Pipeline
) -> None:
    for i in range(4):
        replay.record(chain, rows(1, i), store=store, record_key="id", at=T0, durable=False)
    store.flush()
    shutil.move(store.root / "segments", store.root / "segments.away")
    queries.reindex(store)
    with Catalog(store).connect() as con:
        found = con.execute("select key from records order by key").fetchall()
    assert found == [("R0",), ("R1",), ("R2",), ("R3",)]


@pytest.mark.parametrize("chunk, piece", [(900, 700), (100, 100)])  # 100: shorter than a line
def test_ingest_in_chunks_and_pieces_that_split_groups_equals_one_at_once(
    store: replay.Store,
    chain: replay.Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
    piece: int,
) -> None:
    _record_everything(store, chain)
    whole = _reindex(store)
    monkeypatch.setattr(feed, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(feed, "PIECE_BYTES", piece)
    assert _reindex(store) == whole


def test_each_refresh_reads_the_lines_from_where_the_last_one_stopped(
    store: replay.Store, chain: replay.Pipeline
) -> None:
    _record_everything(store, chain)
    _record_everything(store, chain, start=10_000)
    with Catalog(store).connect() as con:
        read = dict(con.execute("select key, value from meta where key like 'lines:%'").fetchall())
    assert read == {f"lines:{p.name}": str(p.stat().st_size) for p, _ in _lines(store)}
    assert _content(store) == _reindex(store)


def test_a_line_unlike_its_entry_is_not_taken(store: replay.Store, chain: replay.Pipeline) -> None:
    _record_everything(store, chain)
    truth = _reindex(store)
    path, found = _lines(store)[0]
    forged = [
        {**line, "pipeline": "forged", "manifest_sha256": "sha256:" + "0" * 64} for line in found
    ]
    path.write_bytes(b"".join(json.dumps(line).encode() + b"\n" for line in forged))
    assert _reindex(store) == truth


def _lines_file(store: replay.Store, at: float) -> tuple[Path, bytes, int]:
    """The first writer's index lines: its path, its bytes and where the line after the
    fraction ``at`` of them begins."""
    path, _ = _lines(store)[0]
    data = path.read_bytes()
    return path, data, data.index(b"\n", int(len(data) * at)) + 1


def test_a_torn_or_garbled_line_leaves_its_runs_to_their_blocks(
    store: replay.Store, chain: replay.Pipeline
) -> None:
    _record_everything(store, chain)
    truth = _reindex(store)
    path, data, middle = _lines_file(store, 1 / 2)
    path.write_bytes(data[:middle] + b"{not json\n" + data[middle:-20])  # and a torn last line
    assert _reindex(store) == truth


def test_a_garbled_piece_among_pieces_parsed_at_once_leaves_it_and_the_rest_to_blocks(
    store: replay.Store, chain: replay.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record_everything(store, chain)
    truth = _reindex(store)
    path, data, middle = _lines_file(store, 1 / 3)
    seq = json.loads(data[:middle].splitlines()[-1])["seq"]
    garbled = json.dumps({"seq": seq, "steps": 5}).encode()  # a seq, but not an index line
    path.write_bytes(data[:middle] + garbled + b"\n" + data[middle:])
    longest = max(len(line) for line in data.splitlines())
    monkeypatch.setattr(feed, "PIECE_BYTES", 2 * longest + 2)  # pieces of a few lines at once
    assert _reindex(store) == truth


def test_a_line_of_a_run_the_ledger_does_not_hold_is_not_indexed(
    store: replay.Store, chain: replay.Pipeline
) -> None:
    """What a power loss leaves: the line of a run whose ledger line recovery cut."""
    replay.record(chain, rows(1), store=store, record_key="id", at=T0)
    path, (line,) = _lines(store)[0]
    lost = {**line, "seq": 2, "run_id": "01a00000-0000-7000-8000-000000000000", "keys": ["GHOST"]}
    with path.open("ab") as f:
        f.write(json.dumps(lost).encode() + b"\n")
    replay.record(chain, rows(1, 7), store=store, record_key="id", at=T0)
    with Catalog(store).connect() as con:
        keys = con.execute("select key from records order by key").fetchall()
    assert keys == [("R0",), ("R7",)]


def test_a_run_whose_line_cannot_be_written_is_committed_and_indexed_from_its_block(
    store: replay.Store, chain: replay.Pipeline
) -> None:
    (store.root / "index").write_bytes(b"not a folder")  # every line's write fails
    first = replay.record(chain, rows(1), store=store, record_key="id", at=T0)
    replay.record(chain, rows(1, 1), store=store, record_key="id", at=T0)
    assert replay.replay(store, first.run_id).verdict == "exact"
    with Catalog(store).connect() as con:
        keys = con.execute("select key from records order by key").fetchall()
    assert keys == [("R0",), ("R1",)]


def test_ingesting_runs_with_their_lines_imports_no_pyarrow_compute(
    store: replay.Store, chain: replay.Pipeline
) -> None:
    """pyarrow.compute costs every process that ingests ~35 ms: only a run indexed from its
    block needs it."""
    for i in range(3):
        replay.record(chain, rows(1, i), store=store, record_key="id", at=T0, durable=False)
    store.flush()
    code = (
        "import sys, replay; from replay.catalog.index import Catalog\n"
        "with Catalog(replay.Store.open(sys.argv[1])).connect() as con:\n"
        "    n = con.execute('select count(*) from records').fetchall()[0][0]\n"
        "print(n, 'pyarrow.compute' in sys.modules)"
    )
    run = [sys.executable, "-c", code, str(store.root)]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout == "3 False\n"


texts = st.text(alphabet="ab\u00e9", max_size=3)


@given(
    st.lists(texts, min_size=1, max_size=6).flatmap(
        lambda column: st.tuples(
            st.just(column),
            st.lists(st.tuples(st.integers(0, len(column) - 1), texts | st.none()), max_size=6),
        )
    )
)
def test_texts_compared_at_places_as_python_compares_them(
    case: tuple[list[str], list[tuple[int, str | None]]],
) -> None:
    column, others = case
    at = np.array([i for i, _ in others], np.int64)
    other = pa.chunked_array([pa.array([t for _, t in others], pa.string())])
    same = pair._equal_at(pa.chunked_array([pa.array(column, pa.string())]), at, other)
    assert same.tolist() == [t is not None and column[i] == t for i, t in others]


def test_lines_of_writers_taking_turns_are_each_paired_with_their_own_entry(
    store: replay.Store, chain: replay.Pipeline
) -> None:
    """Two writers (two stores open on one folder): their files' lines interleave in seq."""
    other = replay.Store.open(store.root)
    for i in range(6):
        writer = (store, other)[i % 2]
        replay.record(chain, rows(1, i), store=writer, record_key="id", at=T0)
    assert len(_lines(store)) == 2
    assert _reindex(store) == _from_blocks(store)
