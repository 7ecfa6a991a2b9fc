"""Turning ledger entries into catalog rows, many runs at a time.

Most runs come with the index line their writer left at commit (replay.store.rows): a
chunk of the ledger and those lines are joined and inserted by DuckDB in a few statements.
A run without one (a store written before the lines, a writer killed between its commit and
its line, a big input whose keys stay in its block) is indexed from its block (``Ingest``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import duckdb
import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from replay.catalog import feed
from replay.catalog.keys import POOL, Keys
from replay.catalog.schema import COMPACTED, UNINDEXED, compacted_below
from replay.core.manifest import Environment, Spec, decode
from replay.errors import CorruptionError
from replay.store import rows
from replay.store.segments import Block
from replay.store.store import Store

# Runs a transaction at least. Each checkpoint compresses DuckDB's open row groups (122,880
# rows) again, so fewer, larger commits and checkpoints (index.INGESTING) cost less: a
# reindex of 1M runs committing every 8,500 runs took 36 s, with these 18 s at 288 MB peak
# (131,072 runs a transaction: 18 s at 406 MB).
COMMIT_RUNS = 32_768
BATCH = 5_000  # runs indexed from their blocks a batch (20,000: a reindex peaks 30+ MB higher)
BATCH_ROWS = 250_000  # or record keys: what a batch holds in memory is bounded
_LINES = msgspec.json.Encoder()
_S, _I = pa.string(), pa.int64()
# The catalog's tables as Arrow reads them from JSON lines (timestamps as int64 ns).
RUNS = pa.schema(
    [
        ("seq", _I),
        *feed.FIELDS,
        ("image", _S),
        ("manifest_sha256", _S),
        ("entry_end", _I),
        ("segment", _S),
        ("block_offset", _I),
        ("block_length", _I),
        ("block_header", _S),
    ]
)
STEPS = pa.schema([("run_id", _S), *((f.name, f.type) for f in feed.STEP)])
COMPONENTS = pa.schema(
    [
        (n, _S)
        for n in (
            "version",
            "pipeline",
            "step",
            "kind",
            "name",
            "digest",
            "path",
            "dvc_repo",
            "dvc_rev",
            "dvc_md5",
            "dvc_remote",
        )
    ]
)


class CatalogWarning(UserWarning):
    """A run whose record keys the catalog cannot index (recorded before keys were checked):
    the run is listed, its records are not."""


def _append(lines: bytearray, row: dict[str, Any]) -> None:
    _LINES.encode_into(row, lines, -1)
    lines += b"\n"


def _table(lines: bytes | bytearray, schema: pa.Schema) -> pa.Table:
    """Rows as an Arrow table, read from JSON lines (see feed.int64s on pa.array)."""
    return feed.as_timestamps(feed.read_lines(lines, schema, strict=True))


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
            self.envs[m.env] = insert_environment(self.store, self.con, m.env)
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
        insert_components(self.store, self.con, self.versions)
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
            self.con.execute(
                "insert or replace into meta values (?, ?)",
                [UNINDEXED + run_id, "record keys not indexed"],
            )


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    # One chunk: DuckDB scans a table of thousands of one-row chunks slowly and keeps
    # far more memory for it (10k runs' records: 1.1 s and 635 MiB against 0.1 s, 253).
    con.register("_ingest", rows.combine_chunks(memory_pool=POOL))
    try:
        con.execute(f"insert into {table} by name select * from _ingest")
    finally:
        con.unregister("_ingest")


def insert_environment(store: Store, con: duckdb.DuckDBPyConnection, env: str) -> str:
    """Index environment ``env`` unless it is; returns its image digest."""
    known = con.execute("select image from environments where env = ?", [env]).fetchall()
    if known:
        return str(known[0][0])
    fp = decode(Environment, store.get_object(env), env)
    con.execute(
        "insert into environments values (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            env,
            fp.python.version,
            fp.platform.summary,
            fp.cpu.model,
            fp.blas.get("numpy"),
            fp.packages.count,
            fp.packages.lock_sha256,
            fp.image.digest,
        ],
    )
    return fp.image.digest


def insert_components(
    store: Store, con: duckdb.DuckDBPyConnection, versions: dict[str, str]
) -> None:
    """Index the components of each pipeline version (``versions``: version -> pipeline)
    not indexed yet."""
    found: list[dict[str, Any]] = []
    for version, pipeline in versions.items():
        if con.execute("select 1 from components where version = ? limit 1", [version]).fetchall():
            continue
        spec = decode(Spec, store.get_object(version), version)
        found += [
            {
                "version": version,
                "pipeline": pipeline,
                "step": c.step,
                "kind": c.kind,
                "name": c.name,
                "digest": c.digest,
                "path": c.path,
                "dvc_repo": c.dvc.repo if c.dvc else None,
                "dvc_rev": c.dvc.rev if c.dvc else None,
                "dvc_md5": c.dvc.md5 if c.dvc else None,
                "dvc_remote": c.dvc.remote if c.dvc else None,
            }
            for c in spec.components()
            if c.kind != "module"  # a module's source is part of its step's code
        ]
    if found:
        _insert(con, "components", _table(_LINES.encode_lines(found), COMPONENTS))


_INSERTS = (
    """insert into runs by name
    select m.* exclude (steps, keys), e.image
    from _matched m left join environments e using (env)""",
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


def ingest(store: Store, con: duckdb.DuckDBPyConnection, offset: int, last: str | None) -> bool:
    """Index the ledger's entries from byte ``offset``, the first chained to entry hash
    ``last``; False (nothing written) when it is not: the ledger is not the one indexed."""
    consumed = {
        k.removeprefix(LINES): int(v)
        for k, v in con.execute(
            "select key, value from meta where starts_with(key, ?)", [LINES]
        ).fetchall()
    }
    where = str(store.ledger.path)
    held = 0  # runs written in the open transaction
    for chunk in feed.read(store, offset, consumed):
        if offset and last is not None and _entry(chunk, 0, where).get("prev") != last:
            if held:
                con.execute("rollback")
            return False
        if not held:
            con.execute("begin")
        if chunk.matched is not None:
            _bulk(store, con, chunk.matched)
        alone = range(len(chunk.ends)) if chunk.found is None else np.flatnonzero(~chunk.found)
        _from_blocks(
            store, con, ((int(chunk.ends[i]), _entry(chunk, int(i), where)) for i in alone)
        )
        last = _entry(chunk, len(chunk.ends) - 1, where)["hash"]
        moved = {name: at for name, at in chunk.consumed.items() if consumed.get(name) != at}
        con.executemany(
            "insert or replace into meta values (?, ?)",
            [
                ("ledger_offset", str(chunk.end)),
                ("ledger_hash", last),
                *((LINES + name, str(at)) for name, at in moved.items()),
            ],
        )
        consumed.update(moved)
        held += len(chunk.ends)
        if held >= COMMIT_RUNS:
            con.execute("commit")
            held = 0
    if held:
        con.execute("commit")
    return True


LINES = "lines:"  # meta key prefix: how far ingest has read each index file


def _entry(chunk: feed.Chunk, i: int, where: str) -> dict[str, Any]:
    try:
        entry = orjson.loads(chunk.line(i))
    except ValueError:
        entry = None
    if not isinstance(entry, dict):
        raise CorruptionError(where, f"entry ending at byte {int(chunk.ends[i])} is not JSON")
    return entry


def _bulk(store: Store, con: duckdb.DuckDBPyConnection, matched: pa.Table) -> None:
    """Index runs whose index line matched their entry (feed.Chunk.matched)."""
    for env in pc.unique(matched["env"]).to_pylist():
        insert_environment(store, con, env)
    # A version names one pipeline: its first run says which (group_by imports pandas).
    versions = matched["version"].combine_chunks().dictionary_encode()
    _, first = np.unique(feed.as_numpy(versions.indices), return_index=True)
    pipelines = matched["pipeline"].take(feed.int64s(first)).to_pylist()
    insert_components(
        store, con, dict(zip(versions.dictionary.to_pylist(), pipelines, strict=True))
    )
    con.register("_matched", matched)
    try:
        for statement in _INSERTS:
            con.execute(statement)
    finally:
        con.unregister("_matched")


def _from_blocks(
    store: Store, con: duckdb.DuckDBPyConnection, entries: Iterator[tuple[int, dict[str, Any]]]
) -> None:
    batch = Ingest(store, con)
    for end, entry, block, body in store.manifests(entries=entries):
        batch.add(end, entry, block, body)
        if batch.full:
            batch.write()
            batch = Ingest(store, con)
    if not batch.empty:
        batch.write()
