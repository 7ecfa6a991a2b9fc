"""The catalog's row of each committed run, written beside its segment log as it commits.

Indexing a run from its block means opening the block, decoding the manifest and reading
the key column of its input: ~40 us of Python a run, which caps catalog ingest near 18,000
runs/s. The commit thread has all of it in hand, so it also appends one JSON line a run to
``index/<log>.jsonl``: the run's catalog fields, its steps and, for small inputs, its
record keys. Ingest then reads thousands of runs per call of pyarrow's JSON reader.

These lines are derived data: never synced, never trusted. Ingest uses a line only when
its sequence number, run id and manifest digest are those of the ledger entry; a run
whose line is missing, torn or unlike its entry is indexed from its block, as before.
Deleting ``index/`` loses nothing but speed.

A sealer turns the lines of each epoch into one Arrow table (``packed``), parsed once for
every reader of an S3 store: JSON parsing cost ~55 ms of CPU per 10,000 lines, reading the
table back ~10. An S3 store's mirror keeps them as they were sealed: a file named
``*.frames`` of compressed frames (``replay.store.frames``), one an epoch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.json as pj
import zstandard
from msgspec import UNSET, Struct, UnsetType

from replay.core.kinds import kind_of
from replay.core.manifest import Failure, StepRecord, decode
from replay.core.pipeline import INPUT
from replay.store import frames
from replay.store.fs import LogFile, LogFS
from replay.store.segments import StoredTable

FOLDER = "index"
FRAMES = ".frames"  # a file of packed lines (replay.store.mirror)
MAX_UNPACKED = 1 << 30  # what one frame of them may decompress to
KEYS_INLINE = 256  # input rows up to which a run's keys travel in its line (else: its block)
_LINES = msgspec.json.Encoder()
_S, _I = pa.string(), pa.int64()
STEP = pa.struct(
    [
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
# A run's columns of the runs table its manifest gives (``fields``).
FIELDS = [
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
    ("error", _S),
    ("tags", _S),
    ("kind", _S),
]
# A line as Arrow reads it (timestamps as int64 ns).
LINES = pa.schema(
    [
        ("seq", _I),
        ("manifest_sha256", _S),
        *FIELDS,
        ("steps", pa.list_(STEP)),
        ("keys", pa.list_(_S)),
        ("keys_in_block", pa.bool_()),
    ]
)


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


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True) if value else "{}"


def _clock_ns(iso: str) -> int:
    dt = datetime.fromisoformat(iso)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def fields(m: Indexed) -> dict[str, Any]:
    """A run's columns of the catalog's ``runs`` table that its manifest gives (timestamps
    as int64 ns; the ledger gives the rest)."""
    return {
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
        "error": m.error.message if isinstance(m.error, Failure) else None,
        "tags": _json(m.tags),
        "kind": kind_of(m.kind, m.tags),
    }


def steps(m: Indexed) -> list[dict[str, Any]]:
    """A run's rows of the catalog's ``steps`` table, without the run id."""
    return [
        {
            "idx": idx,
            "step": s.name,
            "inputs": s.inputs,
            "output": s.output,
            "rows": s.rows,
            "duration_ms": s.duration_ns / 1e6,
            "seeds": _json(s.seeds),
            "calls": s.calls,
        }
        for idx, s in enumerate(m.steps)
    ]


def as_keys(
    column: pa.Array | pa.ChunkedArray, memory_pool: pa.MemoryPool | None = None
) -> pa.Array:
    """Record keys as text, exactly as the catalog holds them."""
    import pyarrow.compute as pc  # the commit thread's first run pays for it, not every import

    keys = pc.cast(column, pa.string(), memory_pool=memory_pool)
    keys.validate(full=True)  # a string cast from a string is not checked for UTF-8
    return keys


def line(entry: Mapping[str, Any], body: bytes, tables: Mapping[str, StoredTable]) -> bytes:
    """The line of one committed run: its ledger ``entry``, manifest ``body`` and tables."""
    m = decode(Indexed, body, f"manifest of run {entry['run_id']}")
    row: dict[str, Any] = {
        "seq": entry["seq"],
        "manifest_sha256": entry["manifest_sha256"],
        **fields(m),
        "steps": steps(m),
        "keys": None,
        "keys_in_block": False,
    }
    source = tables.get(INPUT)
    if m.record_key and source is not None and source.table.num_rows:
        row["keys_in_block"] = True
        if source.table.num_rows <= KEYS_INLINE:
            column = source.table.column(m.record_key)
            try:
                # Text as it is: capture refused keys that are not UTF-8 (a cast costs ~8 us).
                text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                row["keys"] = (column if text else as_keys(column)).to_pylist()
                row["keys_in_block"] = False
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # capture checks keys: should one have no text, ingest says so
    return _LINES.encode(row) + b"\n"


_UNSEALED = b'{"seq":0,'


def unsealed(run_id: str, digest: str, body: bytes, tables: Mapping[str, StoredTable]) -> str:
    """The line of a run on object storage, whose ledger place a sealer gives it later."""
    return line({"seq": 0, "run_id": run_id, "manifest_sha256": digest}, body, tables).decode()


def sealed(row: str, seq: int) -> bytes | None:
    """An ``unsealed`` line given its place in the ledger; None for any other text."""
    data = row.encode()
    if not data.startswith(_UNSEALED) or not data.endswith(b"\n"):
        return None
    return b'{"seq":%d,' % seq + data[len(_UNSEALED) :]


class Writer:
    """This process's lines, one file per segment log (``index/<log stem>.jsonl``)."""

    def __init__(self, fs: LogFS) -> None:
        self.fs = fs
        self._log: LogFile | None = None
        self._segment = ""

    def append(self, segment: str, data: bytes) -> None:
        if segment != self._segment:
            self.close()
            self._segment = segment
            self._log = self.fs.open_log(f"{FOLDER}/{segment.removesuffix('.seg')}.jsonl")
        if self._log is None:
            return  # gave up on this log's file: its runs are indexed from their blocks
        try:
            self._log.append(data)
        except OSError:
            # A torn line would hide every later one of this file from ingest: stop here.
            self.close()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def read_lines(
    data: bytes | bytearray | memoryview,
    schema: pa.Schema,
    *,
    strict: bool,
    memory_pool: pa.MemoryPool | None = None,
) -> pa.Table:
    """JSON lines as a table of ``schema`` (``strict``: a field it does not name is an
    error). Raises pa.ArrowInvalid for bytes that are not such lines.

    In one block on the calling thread: ingest parses the ledger and each writer's lines in
    threads of its own, which on 2 cores took 102 ms of wall and 130 of CPU for 10,000 runs
    against 166 and 157 with pyarrow's threads splitting each parse into 1 MB blocks."""
    options = pj.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior="error" if strict else "ignore"
    )
    one_block = pj.ReadOptions(use_threads=False, block_size=max(len(data), 1 << 20))
    return pj.read_json(
        pa.BufferReader(data),
        read_options=one_block,
        parse_options=options,
        memory_pool=memory_pool,
    )


def packed(lines: list[bytes]) -> bytes:
    """An epoch's catalog lines as sealed: ``frames.ARROW`` then an Arrow IPC stream of
    ``LINES``, zstd-compressed. Lines this version cannot read whole (a newer writer's say
    more) stay JSON lines, zstd-compressed, for a reader of their version to parse."""
    if not lines:
        return b""
    data = b"".join(lines)
    compress = zstandard.ZstdCompressor(level=3, write_checksum=True).compress
    try:
        table = read_lines(data, LINES, strict=True)
    except pa.ArrowInvalid:
        return compress(data)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, LINES) as stream:
        stream.write_table(table)
    return frames.ARROW + compress(sink.getvalue())


def as_frame(packed: bytes) -> bytes:
    """An epoch's ``packed`` lines as a frame of a mirror's file (ARROW or PACKED)."""
    if packed.startswith(frames.ARROW):
        return frames.frame(memoryview(packed)[len(frames.ARROW) :], frames.ARROW)
    return frames.frame(packed, frames.PACKED) if packed else b""


def unpacked(payload: bytes | memoryview) -> pa.Table | None:
    """The ``LINES`` of an ARROW frame's payload, checked whole; None when they are not
    that (their runs are then indexed from their blocks)."""
    try:
        data = frames.unpack(payload, MAX_UNPACKED)
        table = pa.ipc.open_stream(data).read_all()
        table = table.select(LINES.names)  # a later version's lines may say more
        table.validate(full=True)  # offsets and text a forged stream could point anywhere
    except (ValueError, KeyError, OSError, pa.ArrowException):  # OSError: a stream cut short
        return None
    return table if table.schema.equals(LINES) else None
