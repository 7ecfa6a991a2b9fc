"""Row data and tapes of committed runs, in append-only segment logs of Arrow IPC.

Each writing process appends to its own ``segments/<writer>.seg``, so writers never contend.
One commit group becomes one *block*:

    b"RPB1" | u32 header length | header (canonical JSON) | part | part | ...

A part is an Arrow IPC stream (the same-schema tables of one kind, e.g. the ``decision``
outputs of every run in the group, concatenated) or a raw blob (a tape). The header lists
every part's offset, length and sha256, and each run's row range in each part, so the
header's own sha256 — written in the ledger entry — covers the whole block. A crash mid-append
leaves bytes no ledger entry points at; they are never read.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from replay.digest import (
    canonical_json,
    combine_parts,
    digest_parts,
    normalize_table,
    sha256,
    table_bytes,
)
from replay.errors import CorruptionError, NotFoundError, StoreError
from replay.fsutil import fsync_dir, write_all

MAGIC = b"RPB1"
_LEN = struct.Struct("<I")
ROLLOVER_BYTES = 256 * 1024 * 1024
COMPRESS_BELOW = 1 << 20


@dataclass(frozen=True)
class StoredTable:
    """A table ready to store: normalized, serialized once, digested once.

    ``digest`` names the content (in manifests); ``data_digest`` the stored bytes. They are
    the same unless the table holds personal columns, whose content digest is built from
    parts so that a redacted copy can still be proven (see ``digest_parts``).
    """

    table: pa.Table
    data: pa.Buffer
    data_digest: str
    digest: str
    parts: dict[str, Any] | None = None

    @classmethod
    def of(cls, table: pa.Table, personal: Collection[str] = ()) -> StoredTable:
        table = normalize_table(table)
        data = table_bytes(table)
        plain = sha256(memoryview(data))
        parts = digest_parts(table, personal) if personal else None
        return cls(table, data, plain, combine_parts(parts) if parts else plain, parts)


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
        return {"segment": self.segment, "offset": self.offset, "length": self.length,
                "header": self.header}


def encode_block(runs: Iterable[RunData]) -> tuple[list[bytes | pa.Buffer | memoryview], bytes]:
    """The parts of a block and its header (callers prepend magic and length)."""
    groups: dict[tuple[str, pa.Schema], list[tuple[str, StoredTable]]] = {}
    index: dict[str, dict[str, dict[str, Any]]] = {}
    parts: list[bytes | pa.Buffer | memoryview] = []
    meta: list[list[Any]] = []
    offset = 0

    def add(data: bytes | pa.Buffer | memoryview, digest: str) -> int:
        nonlocal offset
        parts.append(data)
        meta.append([offset, len(data), digest])
        offset += len(data)
        return len(parts) - 1

    for run in runs:
        index[run.run_id] = {"tables": {}, "blobs": {}}
        for kind, st in run.tables.items():
            groups.setdefault((kind, st.table.schema), []).append((run.run_id, st))
        for name, blob in run.blobs.items():
            index[run.run_id]["blobs"][name] = add(blob, sha256(blob))
    for (kind, _schema), members in groups.items():
        if len(members) == 1:  # the common batch case: reuse the bytes and digest we have
            st = members[0][1]
            part = add(st.data, st.data_digest)
        else:
            combined = StoredTable.of(pa.concat_tables(m[1].table for m in members))
            part = add(combined.data, combined.data_digest)
        row = 0
        for run_id, st in members:
            index[run_id]["tables"][kind] = [part, row, st.table.num_rows]
            row += st.table.num_rows
    block: dict[str, Any] = {"parts": meta, "runs": index}
    if offset < COMPRESS_BELOW:
        # Small blocks (online runs) are mostly Arrow schemas and metadata, which zstd
        # shrinks several-fold for little CPU; big batches are stored as written.
        raw = b"".join(bytes(memoryview(p)) for p in parts)
        parts = [pa.compress(raw, codec="zstd", asbytes=True)]
        block |= {"codec": "zstd", "size": offset}
    return parts, canonical_json(block)


class SegmentWriter:
    """This process's append-only segment log; one fsync per block."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fd: int | None = None
        self._name = ""
        self._size = 0

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._name = f"{uuid.uuid4().hex}.seg"
        self._fd = os.open(self.root / self._name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0
        fsync_dir(self.root)

    def append(self, runs: list[RunData]) -> BlockRef:
        parts, header = encode_block(runs)
        if self._fd is None or self._size > ROLLOVER_BYTES:
            self.close()
            self._open()
        assert self._fd is not None
        head = MAGIC + _LEN.pack(len(header)) + header
        length = len(head) + sum(len(p) for p in parts)
        try:
            write_all(self._fd, head)
            for part in parts:
                write_all(self._fd, memoryview(part))
            os.fsync(self._fd)
        except OSError as exc:
            # The torn tail is unreferenced; start a fresh log so no later block sits on it.
            self.close()
            raise StoreError(f"cannot append to segment log: {exc.strerror}",
                             hint="free space in the store's filesystem and record again") from exc
        ref = BlockRef(self._name, self._size, length, sha256(header))
        self._size += length
        return ref

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Block:
    """A block read back: its header verified against the ledger, its parts on access."""

    def __init__(self, path: Path, ref: BlockRef) -> None:
        self.path = path
        try:
            with pa.memory_map(str(path)) as f:
                f.seek(ref.offset)
                self._buf = f.read_buffer(ref.length)
        except FileNotFoundError:
            raise NotFoundError(f"segment {path} is missing",
                                hint="restore the store's segments/ folder from a backup") from None
        except (OSError, pa.ArrowException) as exc:
            raise CorruptionError(str(path), f"cannot read block at {ref.offset}: {exc}") from None
        if len(self._buf) != ref.length or self._buf.slice(0, 4).to_pybytes() != MAGIC:
            raise CorruptionError(str(path), f"no block at offset {ref.offset} (truncated?)")
        (hlen,) = _LEN.unpack(self._buf.slice(4, 4).to_pybytes())
        header = self._buf.slice(8, hlen).to_pybytes()
        if sha256(header) != ref.header:
            raise CorruptionError(str(path), f"block header at {ref.offset} does not match "
                                  "its ledger entry")
        parsed = json.loads(header)
        self._data_start = 8 + hlen
        if parsed.get("codec") == "zstd":
            try:
                self._buf = pa.decompress(self._buf.slice(8 + hlen), parsed["size"],
                                          codec="zstd")
            except (pa.ArrowException, OSError) as exc:
                raise CorruptionError(str(path), f"block at {ref.offset} does not "
                                      f"decompress ({exc})") from None
            self._data_start = 0
        self._parts: list[list[Any]] = parsed["parts"]
        self._runs: dict[str, dict[str, dict[str, Any]]] = parsed["runs"]
        self._verified: set[int] = set()

    @property
    def part_count(self) -> int:
        return len(self._parts)

    def run_ids(self) -> list[str]:
        return list(self._runs)

    def part(self, idx: int) -> pa.Buffer:
        offset, length, digest = self._parts[idx]
        buf = self._buf.slice(self._data_start + offset, length)
        if idx not in self._verified:
            if len(buf) != length or sha256(memoryview(buf)) != digest:
                raise CorruptionError(str(self.path), f"part {idx} of the block does not match "
                                      f"its digest {digest}")
            self._verified.add(idx)
        return buf

    def part_table(self, idx: int) -> pa.Table:
        return pa.ipc.open_stream(self.part(idx)).read_all()

    def kinds(self, run_id: str) -> dict[str, list[int]]:
        return self._runs[run_id]["tables"]

    def table(self, run_id: str, kind: str) -> pa.Table:
        try:
            part, row, rows = self._runs[run_id]["tables"][kind]
        except KeyError:
            raise NotFoundError(f"run {run_id} has no recorded table {kind!r}") from None
        return self.part_table(part).slice(row, rows)

    def blob(self, run_id: str, name: str) -> bytes:
        try:
            idx = self._runs[run_id]["blobs"][name]
        except KeyError:
            raise NotFoundError(f"run {run_id} has no recorded {name!r}") from None
        return bytes(self.part(idx).to_pybytes())
