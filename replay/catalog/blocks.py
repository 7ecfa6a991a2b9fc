"""Runs indexed from their blocks: those without an index line that matches their entry (a
store written before the lines, a writer killed between its commit and its line, a big input
whose keys stay in its block). Imported only when such a run comes: its record keys cost
pyarrow.compute (a cast to text, a take).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import duckdb
import msgspec
import numpy as np
import pyarrow as pa

from replay.catalog import feed, named
from replay.catalog.keys import POOL, Keys
from replay.catalog.schema import UNINDEXED, compacted_below, set_meta
from replay.core.manifest import decode
from replay.store import rows
from replay.store.segments import Block
from replay.store.store import Store

BATCH = 5_000  # runs indexed from their blocks a batch (20,000: a reindex peaks 30+ MB higher)
BATCH_ROWS = 250_000  # or record keys: what a batch holds in memory is bounded
_LINES = msgspec.json.Encoder()
_S, _I = pa.string(), pa.int64()
# The catalog's tables as Arrow reads them from JSON lines (timestamps as int64 ns).
RUNS = pa.schema(
    [
        ("seq", _I),
        *rows.FIELDS,
        ("image", _S),
        ("manifest_sha256", _S),
        ("entry_end", _I),
        ("segment", _S),
        ("block_offset", _I),
        ("block_length", _I),
        ("block_header", _S),
    ]
)
STEPS = pa.schema([("run_id", _S), *((f.name, f.type) for f in rows.STEP)])


class CatalogWarning(UserWarning):
    """A run whose record keys the catalog cannot index (recorded before keys were checked):
    the run is listed, its records are not."""


def index(
    store: Store, con: duckdb.DuckDBPyConnection, entries: Iterator[tuple[int, dict[str, Any]]]
) -> None:
    """Index the runs of ``entries`` (each with the offset its line ends at) from their
    blocks."""
    batch = Ingest(store, con)
    for end, entry, block, body in store.manifests(entries=entries):
        batch.add(end, entry, block, body)
        if batch.full:
            batch.write()
            batch = Ingest(store, con)
    if not batch.empty:
        batch.write()


def _append(lines: bytearray, row: dict[str, Any]) -> None:
    _LINES.encode_into(row, lines, -1)
    lines += b"\n"


def _table(lines: bytes | bytearray, schema: pa.Schema) -> pa.Table:
    """Rows as an Arrow table, read from JSON lines (timestamps as int64 ns)."""
    return feed.as_timestamps(rows.read_lines(lines, schema, strict=True, memory_pool=POOL))


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    # One chunk: DuckDB scans a table of thousands of one-row chunks slowly and keeps
    # far more memory for it (10k runs' records: 1.1 s and 635 MiB against 0.1 s, 253).
    con.register("_ingest", rows.combine_chunks(memory_pool=POOL))
    try:
        con.execute(f"insert into {table} by name select * from _ingest")
    finally:
        con.unregister("_ingest")


class Ingest:
    """Runs indexed from their blocks, a batch at a time: each turned into its rows as it is
    added (JSON lines, the smallest form to hold them in) and written in one go (``write``)."""

    def __init__(self, store: Store, con: duckdb.DuckDBPyConnection) -> None:
        self.store = store
        self.con = con
        self.named: list[tuple[str, str | None]] = []  # each run's id and record key
        self.runs = bytearray()  # the rows of the runs table
        self.steps = bytearray()  # and of the steps table
        self.keys = Keys()
        self.versions: dict[str, str] = {}
        self.envs: dict[str, str] = {}  # each environment's image digest
        self.below = compacted_below(con)  # runs whose records rows live in the parts

    @property
    def empty(self) -> bool:
        return not self.named

    @property
    def full(self) -> bool:
        return len(self.named) >= BATCH or self.keys.rows >= BATCH_ROWS

    def add(self, end: int, entry: dict[str, Any], block: Block, body: bytes) -> None:
        """A run, from its ledger entry (ending at byte ``end``), its block and its manifest's
        bytes."""
        m = decode(rows.Indexed, body, f"manifest of run {entry['run_id']}")
        if m.record_key and entry["seq"] >= self.below:
            self.keys.add(block, len(self.named), m.run_id, m.record_key)
        self.named.append((m.run_id, m.record_key))
        if m.env not in self.envs:
            self.envs[m.env] = named.environment(self.store, self.con, m.env)
        place = entry["block"]
        row = {
            "seq": entry["seq"],
            **rows.fields(m),
            "image": self.envs[m.env],
            "manifest_sha256": entry["manifest_sha256"],
            "entry_end": end,
            "segment": place["segment"],
            "block_offset": place["offset"],
            "block_length": place["length"],
            "block_header": place["header"],
        }
        _append(self.runs, row)
        for step in rows.steps(m):
            _append(self.steps, {"run_id": m.run_id, **step})
        self.versions[m.version] = m.pipeline

    def write(self) -> None:
        self.keys.finish()
        runs = _table(self.runs, RUNS)
        _insert(self.con, "runs", runs)
        if self.steps:
            _insert(self.con, "steps", _table(self.steps, STEPS))
        named.components(self.store, self.con, self.versions)
        self._note_unindexed()
        if self.keys.arrays:
            _insert(self.con, "records", self._records_table(runs))

    def _records_table(self, runs: pa.Table) -> pa.Table:
        counts = np.array(self.keys.counts, np.int64)
        which = feed.int64s(np.repeat(np.array(self.keys.runs, np.int64), counts))
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        return pa.Table.from_arrays(
            [
                pa.chunked_array(self.keys.arrays, pa.string()),
                runs["run_id"].take(which),
                runs["pipeline"].take(which),
                runs["clock"].take(which),
                feed.int64s(np.arange(len(starts), dtype=np.int64) - starts),
            ],
            names=["key", "run_id", "pipeline", "clock", "row"],
        )

    def _note_unindexed(self) -> None:
        for run, why in self.keys.failed:
            run_id, key = self.named[run]
            warnings.warn(
                CatalogWarning(
                    f"run {run_id}: record key {key!r} not indexed ({why}); "
                    "`replay find` will not find its records"
                ),
                stacklevel=6,
            )
            # So that a check of the catalog's own counts (catalogcheck) expects no records
            # rows of this run, rather than taking their absence for an edited catalog.
            set_meta(self.con, {UNINDEXED + run_id: "record keys not indexed"})
