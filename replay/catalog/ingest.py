"""Turning ledger entries into catalog rows, a batch of Arrow tables at a time."""

from __future__ import annotations

import json
import warnings
from datetime import datetime
from typing import Any

import duckdb
import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from msgspec import UNSET, Struct, UnsetType

from replay.catalog.keys import POOL, Keys
from replay.catalog.schema import UNINDEXED
from replay.core.kinds import kind_of
from replay.core.manifest import Environment, Failure, Spec, StepRecord, decode
from replay.store.segments import Block
from replay.store.store import Store

BATCH = 5_000  # runs a transaction (20,000: a reindex of 1M runs peaks 30+ MB higher)
BATCH_ROWS = 250_000  # or record keys: what a batch holds in memory is bounded
TS = pa.timestamp("ns", tz="UTC")
_LINES = msgspec.json.Encoder()
_S, _I = pa.string(), pa.int64()
# The catalog's tables as Arrow reads them from JSON lines (timestamps as int64 ns).
RUNS = pa.schema(
    [
        ("seq", _I),
        ("run_id", _S),
        ("pipeline", _S),
        ("version", _S),
        ("status", _S),
        ("started", _I),
        ("ended", _I),
        ("clock", _I),
        ("rows", _I),
        ("record_key", _S),
        ("env", _S),
        ("image", _S),
        ("error", _S),
        ("tags", _S),
        ("manifest_sha256", _S),
        ("entry_end", _I),
        ("segment", _S),
        ("block_offset", _I),
        ("block_length", _I),
        ("block_header", _S),
        ("kind", _S),
    ]
)
STEPS = pa.schema(
    [
        ("run_id", _S),
        ("idx", pa.int32()),
        ("step", _S),
        ("inputs", pa.list_(_S)),
        ("output", _S),
        ("rows", _I),
        ("duration_ms", pa.float64()),
        ("seeds", _S),
        ("calls", pa.int32()),
    ]
)
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


class _Input(Struct, frozen=True):
    rows: int


class Indexed(Struct, frozen=True):
    """The fields of a manifest (replay.core.manifest.Manifest) the catalog indexes: decoding
    only these is several times faster than the whole manifest."""

    run_id: str
    pipeline: str
    version: str
    status: str
    started_ns: int
    ended_ns: int
    clock: str
    input: _Input
    env: str
    steps: list[StepRecord]
    record_key: str | None = None
    tags: dict[str, str] = {}
    kind: str | UnsetType = UNSET
    error: Failure | UnsetType = UNSET


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True) if value else "{}"


def _append(lines: bytearray, row: dict[str, Any]) -> None:
    _LINES.encode_into(row, lines, -1)
    lines += b"\n"


def _table(lines: bytes | bytearray, schema: pa.Schema) -> pa.Table:
    """Rows as an Arrow table, read from JSON lines: pa.array and pa.table import pandas
    (0.3 s and 40 MB for every process that ingests) to check what they are given."""
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    table = pj.read_json(pa.BufferReader(lines), parse_options=options, memory_pool=POOL)
    for name in ("started", "ended", "clock"):  # JSON has no timestamps: read as int64
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.cast(table.column(i), TS, memory_pool=POOL))
    return table


def _int64s(values: np.ndarray[Any, Any]) -> pa.Array:
    """A numpy int64 array as an Arrow one, without pa.array (see ``_table``)."""
    values = np.ascontiguousarray(values, np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _clock_ns(iso: str) -> int:
    dt = datetime.fromisoformat(iso)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


class Ingest:
    """One batch of runs, each turned into its rows as it is added (JSON lines, the smallest
    form to hold them in) and written in one go (``write``)."""

    def __init__(self, store: Store, con: duckdb.DuckDBPyConnection) -> None:
        self.store = store
        self.con = con
        self.named: list[tuple[str, str | None]] = []  # each run's id and record key
        self.runs = bytearray()  # the rows of the runs table
        self.steps = bytearray()  # and of the steps table
        self.keys = Keys()
        self.versions: dict[str, str] = {}
        self.envs: dict[str, Environment] = {}
        self.end = 0

    @property
    def empty(self) -> bool:
        return not self.named

    @property
    def full(self) -> bool:
        return len(self.named) >= BATCH or self.keys.rows >= BATCH_ROWS

    def add(self, end: int, entry: dict[str, Any], block: Block, body: bytes) -> None:
        """A run, from its ledger entry (ending at byte ``end``), its block and its manifest's
        bytes."""
        m = decode(Indexed, body, f"manifest of run {entry['run_id']}")
        if m.record_key:
            self.keys.add(block, len(self.named), m.run_id, m.record_key)
        self.named.append((m.run_id, m.record_key))
        place = entry["block"]
        row = {
            "seq": entry["seq"],
            "run_id": m.run_id,
            "pipeline": m.pipeline,
            "version": m.version,
            "status": m.status,
            "started": m.started_ns,
            "ended": m.ended_ns,
            "clock": _clock_ns(m.clock),
            "rows": m.input.rows,
            "record_key": m.record_key,
            "env": m.env,
            "image": self._environment(m.env).image.digest,
            "error": m.error.message if isinstance(m.error, Failure) else None,
            "tags": _json(m.tags),
            "manifest_sha256": entry["manifest_sha256"],
            "entry_end": end,
            "segment": place["segment"],
            "block_offset": place["offset"],
            "block_length": place["length"],
            "block_header": place["header"],
            "kind": kind_of(m.kind, m.tags),
        }
        _append(self.runs, row)
        for idx, s in enumerate(m.steps):
            step = {
                "run_id": m.run_id,
                "idx": idx,
                "step": s.name,
                "inputs": s.inputs,
                "output": s.output,
                "rows": s.rows,
                "duration_ms": s.duration_ns / 1e6,
                "seeds": _json(s.seeds),
                "calls": s.calls,
            }
            _append(self.steps, step)
        self.versions[m.version] = m.pipeline
        self.end = end

    def _environment(self, env: str) -> Environment:
        if env not in self.envs:
            self.envs[env] = decode(Environment, self.store.get_object(env), env)
        return self.envs[env]

    def write(self) -> None:
        self.keys.finish()
        for env, fp in self.envs.items():
            self._insert_environment(env, fp)
        runs = _table(self.runs, RUNS)
        self._insert("runs", runs)
        if self.steps:
            self._insert("steps", _table(self.steps, STEPS))
        self._insert_components()
        self._note_unindexed()
        if self.keys.arrays:
            self._insert("records", self._records_table(runs))

    def _records_table(self, runs: pa.Table) -> pa.Table:
        counts = np.array(self.keys.counts, np.int64)
        which = _int64s(np.repeat(np.array(self.keys.runs, np.int64), counts))
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        return pa.Table.from_arrays(
            [
                pa.chunked_array(self.keys.arrays, pa.string()),
                runs["run_id"].take(which),
                runs["pipeline"].take(which),
                runs["clock"].take(which),
                _int64s(np.arange(len(starts), dtype=np.int64) - starts),
            ],
            names=["key", "run_id", "pipeline", "clock", "row"],
        )

    def _insert(self, table: str, rows: pa.Table) -> None:
        # One chunk: DuckDB scans a table of thousands of one-row chunks slowly and keeps
        # far more memory for it (10k runs' records: 1.1 s and 635 MiB against 0.1 s, 253).
        self.con.register("_ingest", rows.combine_chunks(memory_pool=POOL))
        try:
            self.con.execute(f"insert into {table} by name select * from _ingest")
        finally:
            self.con.unregister("_ingest")

    def _insert_environment(self, env: str, fp: Environment) -> None:
        if self.con.execute("select 1 from environments where env = ?", [env]).fetchall():
            return
        self.con.execute(
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

    def _insert_components(self) -> None:
        rows: list[dict[str, Any]] = []
        for version, pipeline in self.versions.items():
            if self.con.execute(
                "select 1 from components where version = ? limit 1", [version]
            ).fetchall():
                continue
            spec = decode(Spec, self.store.get_object(version), version)
            rows += [
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
        if rows:
            self._insert("components", _table(_LINES.encode_lines(rows), COMPONENTS))

    def _note_unindexed(self) -> None:
        for run, why in self.keys.failed:
            run_id, key = self.named[run]
            warnings.warn(
                CatalogWarning(
                    f"run {run_id}: record key {key!r} not indexed ({why}); "
                    "`replay find` will not find its records"
                ),
                stacklevel=5,
            )
            # So that a check of the catalog's own counts (catalogcheck) expects no records
            # rows of this run, rather than taking their absence for an edited catalog.
            self.con.execute(
                "insert or replace into meta values (?, ?)",
                [UNINDEXED + run_id, "record keys not indexed"],
            )
