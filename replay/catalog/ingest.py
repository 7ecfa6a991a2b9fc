"""Turning ledger entries into catalog rows, many runs at a time.

Most runs come with the index line their writer left at commit (replay.store.rows): a
chunk of the ledger and those lines are paired and inserted by DuckDB in a few statements
(replay.catalog.pair). A run without one is indexed from its block (replay.catalog.blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import orjson

from replay.catalog import feed, named, pair
from replay.catalog.schema import set_meta
from replay.errors import CorruptionError
from replay.store.store import Store

# Runs a transaction at least. Each checkpoint compresses DuckDB's open row groups (122,880
# rows) again, so fewer, larger commits and checkpoints (index.INGESTING) cost less: a
# reindex of 1M runs committing every 8,500 runs took 36 s, with these 18 s at 288 MB peak
# (131,072 runs a transaction: 18 s at 406 MB).
COMMIT_RUNS = 32_768
LINES = "lines:"  # meta key prefix: how far ingest has read each index file


def ingest(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    offset: int,
    last: str | None,
    settle: Callable[[int], None],
) -> bool:
    """Index the ledger's entries from byte ``offset``, the first chained to entry hash
    ``last``; False (nothing written) when it is not: the ledger is not the one indexed.
    ``settle`` is told how many runs it indexed, before the last transaction commits."""
    consumed = {
        k.removeprefix(LINES): int(v)
        for k, v in con.execute(
            "select key, value from meta where starts_with(key, ?)", [LINES]
        ).fetchall()
    }
    where = str(store.ledger.path)
    held = 0  # runs written in the open transaction
    added = 0
    meta: dict[str, str] = {}  # how far the open transaction reaches, saved as it commits
    for chunk in feed.read(store, offset, consumed, then=pair.match):
        n = len(chunk.ends)
        if offset and last is not None and _entry(chunk, 0, where).get("prev") != last:
            if held:
                con.execute("rollback")
            return False
        if not held:
            con.execute("begin")
        alone: Any = range(n)
        paired = chunk.then  # pair.match, in the reading thread
        if isinstance(paired, pair.Paired):
            if paired.matched is not None:
                _bulk(store, con, chunk, paired)
            alone = paired.alone
        if len(alone):
            from replay.catalog import blocks  # only now: it imports pyarrow.compute

            blocks.index(
                store, con, ((int(chunk.ends[i]), _entry(chunk, int(i), where)) for i in alone)
            )
        last = _entry(chunk, n - 1, where)["hash"]
        moved = {name: at for name, at in chunk.consumed.items() if consumed.get(name) != at}
        meta |= {"ledger_offset": str(chunk.end), "ledger_hash": last}
        meta |= {LINES + name: str(at) for name, at in moved.items()}
        consumed.update(moved)
        held += n
        added += n
        if held >= COMMIT_RUNS:
            set_meta(con, meta)
            con.execute("commit")
            held, meta = 0, {}
    settle(added)
    if held:
        set_meta(con, meta)
        con.execute("commit")
    return True


def _entry(chunk: feed.Chunk, i: int, where: str) -> dict[str, Any]:
    try:
        entry = orjson.loads(chunk.line(i))
    except ValueError:
        entry = None
    if not isinstance(entry, dict):
        raise CorruptionError(where, f"entry ending at byte {int(chunk.ends[i])} is not JSON")
    return entry


def _bulk(
    store: Store, con: duckdb.DuckDBPyConnection, chunk: feed.Chunk, paired: pair.Paired
) -> None:
    """Index the runs ``pair.match`` paired with their lines."""
    assert chunk.entries is not None and paired.matched is not None
    pair.register(con, chunk.entries, paired.matched)
    try:
        for env in paired.envs:
            named.environment(store, con, env)
        named.components(store, con, paired.versions)
        for statement in pair.INSERTS:
            con.execute(statement)
    finally:
        pair.drop(con)
