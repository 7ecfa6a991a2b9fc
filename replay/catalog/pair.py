"""Runs indexed from their index lines (replay.store.rows), a ledger chunk at a time.

Each line is paired with the entry of its seq when its run id and manifest digest are that
entry's (compared as byte matrices: no Python a run); DuckDB then inserts the paired runs'
rows straight from the lines. Nothing here imports pyarrow.compute (~35 ms of a process)
while every line pairs, as the lines of small runs do but after a crash or a forged line.
A line that says its keys are in the block (a big input), or is unlike its entry, pairs with
nothing; its entry is left to the caller (``pair``'s answer), which indexes the run from its
block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from replay.catalog import feed
from replay.catalog.keys import POOL
from replay.catalog.schema import COMPACTED

INSERTS = (
    """insert into runs by name
    select m.* exclude (steps, keys, keys_in_block), e.block.segment as segment,
        e.block.offset as block_offset, e.block.length as block_length,
        e.block.header as block_header, v.image
    from _matched m join _entries e using (entry_end) left join environments v using (env)""",
    """insert into steps by name
    select run_id, s.idx, s.step, s.inputs, s.output, s.rows, s.duration_ms, s.seeds, s.calls
    from (select run_id, unnest(steps) as s from _matched)""",
    """insert into records by name
    select unnest(keys) as key, run_id, pipeline, clock, unnest(range(len(keys))) as "row"
    from _matched where keys is not null and seq >= (select coalesce(max(value::bigint), 0)
        from meta where key = '"""
    + COMPACTED
    + """')""",
)


@dataclass
class Paired:
    """The chunk's lines that pair with an entry (None: none), each with its entry's
    ``entry_end``; the entries (indices into the chunk) left without a line; and the
    environments and versions' pipelines the matched runs name (a version names one
    pipeline: its first run says which)."""

    matched: pa.Table | None
    alone: np.ndarray[Any, Any]
    envs: set[str]
    versions: dict[str, str]


def match(chunk: feed.Chunk) -> Paired | None:
    """Pair the chunk's lines with its entries (None: it has no lines or no entries). No
    DuckDB: ingest's reading thread does it a chunk ahead (a tenth of a big ingest's time)."""
    entries, lines = chunk.entries, chunk.lines
    if entries is None or lines is None:
        return None
    n = entries.num_rows
    first = int(entries["seq"][0].as_py())
    # A well-formed ledger numbers a chunk's entries one by one, so a line's entry is found
    # by its seq alone; any other chunk is left to the line-by-line reader.
    if not np.array_equal(feed.as_numpy(entries["seq"]), np.arange(first, first + n)):
        return Paired(None, np.arange(n), set(), {})
    at = feed.as_numpy(lines["seq"]) - first
    ok = (at >= 0) & (at < n) & ~_true_or_null(lines["keys_in_block"])
    at = np.where(ok, at, 0)
    for name in ("run_id", "manifest_sha256"):
        ok &= _equal_at(entries[name], at, lines[name])
    rows = np.flatnonzero(ok)
    rows = np.sort(rows[np.unique(at[rows], return_index=True)[1]])  # one line an entry
    if not len(rows):
        return Paired(None, np.arange(n), set(), {})
    if len(rows) < lines.num_rows:  # take needs pyarrow.compute (blocks will need it too)
        lines = lines.take(feed.int64s(rows))
    at = at[rows]
    matched = lines.append_column("entry_end", feed.int64s(chunk.ends[at]))
    found = np.zeros(n, np.bool_)
    found[at] = True
    versions = matched["version"].to_pylist()[::-1]
    pipelines = matched["pipeline"].to_pylist()[::-1]
    return Paired(
        matched,
        np.flatnonzero(~found),
        set(matched["env"].to_pylist()),
        dict(zip(versions, pipelines, strict=True)),
    )


def register(con: duckdb.DuckDBPyConnection, entries: pa.Table, matched: pa.Table) -> None:
    """Register the matched lines as ``_matched`` and their chunk's entries as ``_entries``,
    for INSERTS; call ``drop`` when done with them."""
    con.register("_entries", entries)
    con.register("_matched", matched)


def drop(con: duckdb.DuckDBPyConnection) -> None:
    """Unregister what ``register`` registered."""
    con.unregister("_matched")
    con.unregister("_entries")


def _true_or_null(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    array = column.combine_chunks(memory_pool=POOL)
    values = feed.as_numpy(array)
    if array.null_count:
        values |= ~feed.bits(array.buffers()[0], array.offset, len(array))
    return values


def _equal_at(
    column: pa.ChunkedArray, at: np.ndarray[Any, Any], other: pa.ChunkedArray
) -> np.ndarray[Any, Any]:
    """Whether ``column[at[i]] == other[i]`` for each i, both of text."""
    a, b = (_texts(c) for c in (column, other))
    if a is not None and b is not None and a.shape[1] == b.shape[1]:
        return np.all(a[at] == b, axis=1)  # type: ignore[no-any-return]
    # Texts of several lengths (or nulls): compared as Python strings.
    left, right = column.to_pylist(), other.to_pylist()
    return np.fromiter(
        (left[i] == r and r is not None for i, r in zip(at.tolist(), right, strict=True)),
        np.bool_,
        len(right),
    )


def _texts(column: pa.ChunkedArray) -> np.ndarray[Any, Any] | None:
    """Texts all of one length (without nulls) as a matrix of bytes, a row each; else None."""
    array = column.combine_chunks(memory_pool=POOL)
    if array.null_count or not len(array) or not pa.types.is_string(array.type):
        return None
    offsets = np.frombuffer(array.buffers()[1], np.int32)[
        array.offset : array.offset + len(array) + 1
    ]
    width = int(offsets[1] - offsets[0])
    if not width or not np.all(np.diff(offsets) == width):
        return None
    data = np.frombuffer(array.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(len(array), width)
