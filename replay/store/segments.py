"""Row data and tapes of committed runs, in append-only segment logs of Arrow IPC.

Each writing process appends to its own ``segments/<writer>.seg``, so writers never contend.
One commit group becomes one *block*:

    b"RPB1" | u32 header length | header (canonical JSON) | part | part | ...

A part is one table of one run as an Arrow IPC stream, or a raw blob (a manifest, a tape).
The header lists every part's offset, length and sha256, and where each run's tables and
blobs are, so the header's own sha256 — written in the ledger entry — covers the whole block.
Small blocks are compressed instead: their header holds the sha256 of the compressed bytes,
which hold the index.

Each block is followed by its group's *commit frame* (``replay.store.frames``): the ledger
lines that name it. The block is written unsynced, the frame after the ledger lines are
chained, and one fdatasync of the log makes both durable: the only sync of a commit group.
A crash mid-append leaves bytes no ledger entry points at; they are never read.

A column a step passes through unchanged (the same Arrow buffers as a column of an earlier
table of the run) is stored once: the later table's part holds only its own columns, and the
index's ``layouts`` say where each of its columns comes from.

Blocks written before 2026-11-26 concatenated a group's same-schema tables into one part and
kept a compressed block's index outside the compressed bytes; they read as before.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import struct
import threading
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgspec
import orjson
import pyarrow as pa
import zstandard

from replay.core.digest import (
    column_identity,
    combine_parts,
    normalize_table,
    sha256,
    table_bytes,
)
from replay.core.forms import TableForm
from replay.errors import CorruptionError, NotFoundError, StoreError
from replay.store import frames
from replay.store.fs import LogFile, LogFS, StoreFS

FOLDER = "segments"
MAGIC = b"RPB1"
_LEN = struct.Struct("<I")
ROLLOVER_BYTES = 256 * 1024 * 1024
COMPRESS_BELOW = 1 << 20
# Small tables are not worth the bookkeeping of sharing columns: their blocks are compressed,
# which removes the repetition anyway.
SHARE_ROWS = 256
ZSTD_LEVEL = 3  # 3% smaller online blocks than level 1 for a few microseconds more per block


# A block's index and header hold only text (run ids, table and column names, digests) and
# integers, which msgspec writes byte for byte as ``canonical_json`` (sorted keys, raw UTF-8,
# the same escapes: tests/test_manifest_json.py), in a fifth of the time.
_index_json = msgspec.json.Encoder(order="sorted").encode

# A column of the layout: an index into the table's own part, or [kind, index, name] for a
# column owned (at that index of its part) by an earlier table of the same run.
Layout = list[int | list[Any]]


@dataclass(frozen=True)
class StoredTable:
    """A table ready to store: normalized and digested once, serialized when first needed.

    ``digest`` names the content (in manifests); ``data_digest`` the stored bytes. They are
    the same unless the table holds personal columns, whose content digest is built from
    parts so that a redacted copy can still be proven (see ``digest_parts``), or shares
    columns with an earlier table of its run: then only ``own`` columns are stored, and
    ``layout`` says where the others are.
    """

    table: pa.Table
    digest: str
    form: TableForm
    parts: dict[str, Any] | None = None
    own: pa.Table | None = None
    layout: Layout | None = None

    @classmethod
    def of(
        cls,
        table: pa.Table,
        personal: Collection[str] = (),
        memo: dict[tuple[Any, ...], str] | None = None,
        shared: tuple[pa.Table, Layout] | None = None,
    ) -> StoredTable:
        """``memo``: see ``digest_parts``; ``shared``: from ``Sharing.split``."""
        table = normalize_table(table)
        return cls.formed(table, TableForm.of(table.schema, personal), memo, shared)

    @classmethod
    def formed(
        cls,
        table: pa.Table,
        form: TableForm,
        memo: dict[tuple[Any, ...], str] | None = None,
        shared: tuple[pa.Table, Layout] | None = None,
    ) -> StoredTable:
        """``of`` a normalized table whose schema's form is known (``Forms``)."""
        if shared is not None:
            own, layout = shared
            parts = form.parts(table, memo)
            digest = combine_parts(parts) if parts else form.digest(table)
            return cls(table, digest, form, parts, own, layout)
        # Serialized now, while the table is in the cache, not later in the commit thread
        # (a 1-row table with personal columns: 5 µs here, 20 there).
        parts, data = form.stored(table, memo)
        digest = combine_parts(parts) if parts else sha256(memoryview(data))
        stored = cls(table, digest, form, parts)
        stored.__dict__["data"] = data  # primes the cached property: serialized once
        return stored

    @cached_property
    def data(self) -> pa.Buffer:
        return table_bytes(self.own) if self.own is not None else self.form.stream(self.table)

    @cached_property
    def data_digest(self) -> str:
        if self.parts is None and self.own is None:
            return self.digest
        return sha256(memoryview(self.data))


@dataclass(frozen=True)
class RunData:
    run_id: str
    tables: Mapping[str, StoredTable]
    blobs: Mapping[str, bytes]


@dataclass(frozen=True)
class BlockRef:
    segment: str
    offset: int
    length: int
    header: str  # sha256 of the block header, which lists every part's digest

    def as_json(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "offset": self.offset,
            "length": self.length,
            "header": self.header,
        }


class Sharing:
    """Which columns of a run's tables an earlier table of the run already stores. Tables are
    split in the order they were made (the input, then each step's output)."""

    def __init__(self) -> None:
        self._owner: dict[tuple[Any, ...], list[Any]] = {}

    def split(self, kind: str, table: pa.Table) -> tuple[pa.Table, Layout] | None:
        """The table's own columns and its layout, or None when it shares none."""
        if table.num_rows < SHARE_ROWS:
            return None
        own, layout, mine = list[int](), Layout(), dict[tuple[Any, ...], list[Any]]()
        for i, (field, column) in enumerate(zip(table.schema, table.columns, strict=True)):
            key = column_identity(field, column)
            if key is not None and key in self._owner:
                layout.append([*self._owner[key], field.name])
            else:
                layout.append(len(own))
                own.append(i)
                if key is not None:
                    mine.setdefault(key, [kind, len(own) - 1])
        if not own and table.num_columns:  # a part with no columns would lose its row count
            own, layout[0] = [0], 0
        self._owner |= mine
        return (table.select(own), layout) if len(own) < table.num_columns else None


@dataclass(frozen=True)
class Primer:
    """A small block whose uncompressed bytes are the zstd dictionary of the small blocks
    after it in the same segment log (``named``: in other logs of its writer, such as its
    later objects on S3, which then name the primer's). Online runs of a process repeat the
    same schemas, keys and digests block after block: with the dictionary they store 2-3x
    smaller."""

    ref: BlockRef
    compressor: zstandard.ZstdCompressor
    named: bool = False

    @classmethod
    def of(cls, ref: BlockRef, raw: bytes, *, named: bool = False) -> Primer:
        zdict = _raw_dict(raw)
        zdict.precompute_compress(level=ZSTD_LEVEL)  # once, not on every block: half the time
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=zdict)
        return cls(ref, compressor, named)


def _raw_dict(raw: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


@dataclass(frozen=True)
class Encoded:
    parts: list[bytes | pa.Buffer | memoryview]
    header: bytes  # ``pieces`` prepends magic and length
    raw: bytes | None  # the uncompressed bytes of a compressed block

    def pieces(self) -> list[bytes | pa.Buffer | memoryview]:
        """The block's bytes, in order: magic, header length, header, parts."""
        return [MAGIC + _LEN.pack(len(self.header)) + self.header, *self.parts]


def encode_block(runs: Iterable[RunData], primer: Primer | None = None) -> Encoded:
    """The parts of a block and its header; small blocks are compressed (with ``primer``'s
    dictionary when given).

    Every table is its own part, stored as the bytes it was digested from (or, sharing
    columns, the bytes of its own columns), so it reads back byte for byte.
    """
    index: dict[str, dict[str, dict[str, Any]]] = {}
    layouts: dict[str, Layout] = {}
    parts: list[bytes | pa.Buffer | memoryview] = []
    sources: list[StoredTable | bytes] = []  # hashed only if the block is not compressed

    def add(data: bytes | pa.Buffer | memoryview, source: StoredTable | bytes) -> int:
        parts.append(data)
        sources.append(source)
        return len(parts) - 1

    for run in runs:
        index[run.run_id] = {"tables": {}, "blobs": {}}
        for kind, st in run.tables.items():
            part = add(st.data, st)
            index[run.run_id]["tables"][kind] = [part, 0, st.table.num_rows]
            if st.layout is not None:
                layouts[str(part)] = st.layout
        for name, blob in run.blobs.items():
            index[run.run_id]["blobs"][name] = add(blob, blob)
    block: dict[str, Any] = {"runs": index}
    if layouts:
        block["layouts"] = layouts
    offsets = list(itertools.accumulate((len(p) for p in parts), initial=0))
    if offsets[-1] < COMPRESS_BELOW:
        # Small blocks (online runs) are mostly Arrow schemas, digests and JSON, which zstd
        # shrinks several-fold for little CPU: the index goes inside, and one digest of the
        # stored bytes stands for a digest per part. Big batches are stored as written.
        block["parts"] = [[o, len(p)] for o, p in zip(offsets, parts, strict=False)]
        index_json = _index_json(block)
        raw = b"".join([_LEN.pack(len(index_json)), index_json, *parts])
        compressor = primer.compressor if primer else zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        packed = compressor.compress(raw)
        header: dict[str, Any] = {"codec": "zstd", "size": len(raw), "sha256": sha256(packed)}
        if primer is not None:
            header["dict"] = {
                k: v for k, v in primer.ref.as_json().items() if primer.named or k != "segment"
            }
        return Encoded([packed], _index_json(header), raw)
    block["parts"] = [
        [o, len(p), s.data_digest if isinstance(s, StoredTable) else sha256(s)]
        for o, p, s in zip(offsets, parts, sources, strict=False)
    ]
    return Encoded(parts, _index_json(block), None)


class SegmentWriter:
    """This process's append-only segment log: each block written, then sealed by its frame
    and one fdatasync."""

    def __init__(self, fs: LogFS) -> None:
        self.fs = fs
        self._log: LogFile | None = None
        self._name = ""
        self._size = 0
        self._primer: Primer | None = None  # the first small block of the current log

    def _open(self) -> LogFile:
        self._name = f"{uuid.uuid4().hex}.seg"
        self._log = self.fs.open_log(f"{FOLDER}/{self._name}")
        self._size = 0
        self._primer = None
        self.fs.sync_folder(FOLDER)
        return self._log

    def write(self, runs: list[RunData]) -> BlockRef:
        """Write one block, not yet durable: ``seal`` follows it with its frame."""
        log = self._log
        if log is None or self._size > ROLLOVER_BYTES:
            self.close()
            log = self._open()
        encoded = encode_block(runs, self._primer)
        pieces = encoded.pieces()
        length = sum(len(p) for p in pieces)
        with self._failing("append to"):
            if encoded.raw is not None:  # a small, compressed block: one write
                log.append(b"".join(pieces))
            else:
                for piece in pieces:
                    log.append(memoryview(piece))
        ref = BlockRef(self._name, self._size, length, sha256(encoded.header))
        self._size += length
        if encoded.raw is not None and self._primer is None:
            self._primer = Primer.of(ref, encoded.raw)
        return ref

    def seal(self, lines: bytes) -> None:
        """Follow the block just written by its ledger ``lines`` and make both durable."""
        assert self._log is not None, "seal follows write"
        data = frames.frame(lines)
        with self._failing("seal"):
            self._log.append(data)
            self._log.sync()
        self._size += len(data)

    @contextlib.contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            # The torn tail is unreferenced; start a fresh log so no later block sits on it.
            self.close()
            raise StoreError(
                f"cannot {what} segment log: {exc.strerror}",
                hint="free space in the store's filesystem and record again",
            ) from exc

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Block:
    """A block read back: its header verified against the ledger, its parts on access."""

    def __init__(self, fs: StoreFS, ref: BlockRef) -> None:
        name = f"{FOLDER}/{ref.segment}"
        # Where it is, as messages name it: a path, or an s3:// URL (a Path would fold its //).
        self.where = where = fs.where(name)
        try:
            self._buf = pa.py_buffer(fs.read_range(name, ref.offset, ref.length))
        except FileNotFoundError:
            raise NotFoundError(
                f"segment {where} is missing",
                hint="restore the store's segments/ folder from a backup",
            ) from None
        except (OSError, pa.ArrowException) as exc:
            raise CorruptionError(where, f"cannot read block at {ref.offset}: {exc}") from None
        if len(self._buf) != ref.length or self._buf.slice(0, 4).to_pybytes() != MAGIC:
            raise CorruptionError(where, f"no block at offset {ref.offset} (truncated?)")
        (hlen,) = _LEN.unpack(self._buf.slice(4, 4).to_pybytes())
        if 8 + hlen > ref.length:  # a changed bit in the length field
            raise CorruptionError(where, f"block header at {ref.offset} is longer than its block")
        header = self._buf.slice(8, hlen).to_pybytes()
        if sha256(header) != ref.header:
            raise CorruptionError(
                where, f"block header at {ref.offset} does not match its ledger entry"
            )
        parsed = orjson.loads(header)
        self._data_start = 8 + hlen
        self._verified: set[int] = set()
        self.raw: pa.Buffer | None = None  # a compressed block's uncompressed bytes
        self.dictionary = False  # whether it was compressed with an earlier block's bytes
        if parsed.get("codec") == "zstd":
            # Blocks written since 2026-11-26 hold one digest of their stored bytes and their
            # index inside; it is checked before decompressing, as a changed bit may not
            # change what zstd returns.
            indexed = "sha256" in parsed
            packed = self._buf.slice(8 + hlen)
            if indexed and sha256(memoryview(packed)) != parsed["sha256"]:
                raise CorruptionError(where, f"block at {ref.offset} does not match its digest")
            self.dictionary = "dict" in parsed
            decompressor = (
                _dictionary(fs, BlockRef(**{"segment": ref.segment, **parsed["dict"]}))
                if self.dictionary
                else _PLAIN
            )
            try:
                raw = decompressor.zstd.decompress(packed, max_output_size=parsed["size"])
            except zstandard.ZstdError as exc:
                raise CorruptionError(
                    where, f"block at {ref.offset} does not decompress ({exc})"
                ) from None
            self.raw = self._buf = pa.py_buffer(raw)
            self._data_start = 0
            if indexed:
                (ilen,) = _LEN.unpack(self._buf.slice(0, 4).to_pybytes())
                parsed = orjson.loads(memoryview(self._buf.slice(4, ilen)))
                self._data_start = 4 + ilen
                self._verified = set(range(len(parsed["parts"])))
        self._parts: list[list[Any]] = parsed["parts"]
        self._runs: dict[str, dict[str, dict[str, Any]]] = parsed["runs"]
        self._layouts: dict[str, Layout] = parsed.get("layouts", {})
        self._tables: dict[int, pa.Table] = {}

    @property
    def part_count(self) -> int:
        return len(self._parts)

    def run_ids(self) -> list[str]:
        return list(self._runs)

    def part(self, idx: int) -> pa.Buffer:
        offset, length = self._parts[idx][:2]
        buf = self._buf.slice(self._data_start + offset, length)
        if idx not in self._verified:
            if len(buf) != length or sha256(memoryview(buf)) != self._parts[idx][2]:
                raise CorruptionError(
                    self.where,
                    f"part {idx} of the block does not match its digest {self._parts[idx][2]}",
                )
            self._verified.add(idx)
        return buf

    def part_table(self, idx: int) -> pa.Table:
        if idx not in self._tables:  # a part is read once however many tables share it
            self._tables[idx] = pa.ipc.open_stream(self.part(idx)).read_all()
        return self._tables[idx]

    def kinds(self, run_id: str) -> dict[str, list[int]]:
        return self._runs[run_id]["tables"]

    def table(self, run_id: str, kind: str) -> pa.Table:
        try:
            part, row, rows = self._runs[run_id]["tables"][kind]
        except KeyError:
            raise NotFoundError(f"run {run_id} has no recorded table {kind!r}") from None
        own = self._rows(part, row, rows)
        layout = self._layouts.get(str(part))
        if layout is None:
            return own
        fields, columns = [], []
        for spec in layout:
            if isinstance(spec, int):
                fields.append(own.schema.field(spec))
                columns.append(own.column(spec))
            else:
                src_kind, idx, name = spec
                src_part, src_row, _ = self._runs[run_id]["tables"][src_kind]
                src = self._rows(src_part, src_row, rows)
                fields.append(src.schema.field(idx).with_name(name))
                columns.append(src.column(idx))
        return pa.Table.from_arrays(columns, schema=pa.schema(fields))

    def _rows(self, part: int, row: int, rows: int) -> pa.Table:
        table = self.part_table(part)
        if row == 0 and rows == table.num_rows:
            return table
        # A copy, not a slice: IPC writes a slice's oversized buffers as they are, which would
        # give one run of a group another digest than the table it recorded.
        return table.take(pa.array(range(row, row + rows), pa.int64()))

    def blob(self, run_id: str, name: str) -> bytes:
        try:
            idx = self._runs[run_id]["blobs"][name]
        except KeyError:
            raise NotFoundError(f"run {run_id} has no recorded {name!r}") from None
        return bytes(self.part(idx).to_pybytes())


class _Decompressor(threading.local):
    """A zstd decompressor, one for each thread: one is not thread-safe, and making one
    costs about as much as decompressing a small block."""

    def __init__(self, zdict: zstandard.ZstdCompressionDict | None = None) -> None:
        self.zstd = zstandard.ZstdDecompressor(dict_data=zdict)


_PLAIN = _Decompressor()


@functools.lru_cache(maxsize=64)
def _dictionary(fs: StoreFS, ref: BlockRef) -> _Decompressor:
    """The decompressor of the dictionary a block names: the uncompressed bytes of an
    earlier block of its log (or of its writer's, named), itself verified and compressed
    without one."""
    if "/" in ref.segment or ref.segment.startswith("."):
        raise CorruptionError(fs.where(FOLDER), f"a block names {ref.segment!r} as dictionary")
    primer = Block(fs, ref)
    if primer.raw is None or primer.dictionary:
        raise CorruptionError(primer.where, f"block at {ref.offset} is not a dictionary")
    return _Decompressor(_raw_dict(primer.raw.to_pybytes()))
