"""Group commit on object storage: each writer process PUTs one log object per commit group.

    writers/<writer>                   who the writer is (created before its first object)
    writers/<writer>.done              the writer wrote its last object (its process exited)
                                       (both deleted by a sealer once an epoch retired it)
    segments/<writer>-<n:012d>.blk     object n of the writer: its group's block, then a
                                       commit frame (``replay.store.frames``) of its shard
                                       lines, zstd-compressed

A shard line is the writer's own hash chain: ``{"writer", "wseq", "prev", "run_id",
"manifest_sha256", "block", "row", "hash"}``, ``wseq`` counting the writer's runs, ``prev`` the
hash of its previous line and ``row`` the run's catalog line (``replay.store.rows``), which
sealers pass on so that readers index runs without reading their blocks. Objects are created
with ``put_if_absent`` (S3's ``If-None-Match: *``) under names no other writer uses, so writers
never contend: no lock, no global sequence. A run is durable when the PUT of its object
returns; a sealer (``replay.store.seals``) later chains every writer's new lines into the
store's one ledger.

A PUT that fails may still have stored its object; the writer then takes a new identity, so
that its numbering never has a gap a sealer would wait on: the old one ends there (with or
without that object, whose runs were reported failed and, if it landed, are sealed anyway).

A writer killed without retiring (SIGKILL, or a SIGTERM its program does not handle, as a
container's stop sends) cannot say it is done; a sealer says so for it once it has been
silent for ``seals.LEASE``. So that this never ends a writer that still writes, a writer
silent for RENEW (half the lease: clocks may disagree by that much) retires its identity and
takes a new one before its next object.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import zstandard

from replay.core.digest import canonical_json, sha256
from replay.errors import CorruptionError, ReplayError, StoreError
from replay.store import frames, rows
from replay.store.ledger import GENESIS, entry_hash
from replay.store.s3 import S3FS
from replay.store.segments import FOLDER as SEGMENTS
from replay.store.segments import BlockRef, Primer, RunData, encode_block

WRITERS = "writers"
DONE = ".done"
SUFFIX = ".blk"
MAX_LINES = 1 << 28  # what a frame's lines may decompress to (a group of 1,024 runs: ~2 MB)
_ZSTD = zstandard.ZstdCompressor(level=3)
_TAIL = 1 << 16  # one ranged GET reads a group's frame (up to ~200 runs) with its trailer
RENEW = 12 * 3600  # seconds a writer may be silent and still write under its identity


def object_name(writer: str, n: int) -> str:
    return f"{writer}-{n:012d}{SUFFIX}"


def parse_name(name: str) -> tuple[str, int] | None:
    """(writer, n) of a log object's name; None for any other name."""
    writer, _, rest = name.partition("-")
    if not rest.endswith(SUFFIX) or not rest[: -len(SUFFIX)].isdigit():
        return None
    return writer, int(rest[: -len(SUFFIX)])


class ShardJournal:
    """One process's log of group-commit objects (see the module's docstring)."""

    def __init__(self, fs: S3FS) -> None:
        self.fs = fs
        self._lock = threading.Lock()  # a commit's PUT, or the writer's retirement
        self._closed = False
        self._pid = os.getpid()  # a forked child inherits the exit hook, not the writer
        self._begin()
        atexit.register(self.retire)

    def retire(self) -> None:
        """Say this writer wrote its last object (at the process's exit), so that sealers
        stop listing it: a bank's short-lived processes would otherwise cost every epoch a
        LIST each, forever. After the commit in flight, if any; none follows."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            self._closed = True
            self._retire()

    def _retire(self) -> None:
        if self._registered:
            with contextlib.suppress(ReplayError):  # only sealers' work grows without it
                self.fs.put_if_absent(f"{WRITERS}/{self.writer}{DONE}", b"{}", patient=False)

    def _begin(self) -> None:
        self.writer = uuid.uuid4().hex[:16]
        self._primer: Primer | None = None  # its first small block: the others' dictionary
        self._objects = 0
        self._wseq = 0
        self._prev = GENESIS
        self._registered = False
        self._written = time.monotonic()  # its last PUT (or its birth)

    def commit(self, runs: list[RunData], digests: list[str]) -> tuple[str, list[dict[str, Any]]]:
        """PUT one object holding the runs' block and their chained shard lines; returns its
        name and the lines (durable when this returns)."""
        with self._lock:
            if self._closed:
                raise StoreError(
                    "this process is exiting: its writer is retired",
                    hint="flush the store (Store.flush) before the process exits",
                )
            return self._put(runs, digests)

    def _put(self, runs: list[RunData], digests: list[str]) -> tuple[str, list[dict[str, Any]]]:
        if self._registered and time.monotonic() - self._written > RENEW:
            self._retire()  # a sealer may have ended this identity: see the module's docstring
            self._begin()
        if not self._registered:
            about = {
                "writer": self.writer,
                "started": datetime.now(UTC).isoformat(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
            self.fs.put_if_absent(f"{WRITERS}/{self.writer}", canonical_json(about))
            self._registered = True
        encoded = encode_block(runs, self._primer)
        pieces = encoded.pieces()
        name = object_name(self.writer, self._objects + 1)
        ref = BlockRef(name, 0, sum(len(p) for p in pieces), sha256(encoded.header))
        lines, wseq, prev = [], self._wseq, self._prev
        for run, digest in zip(runs, digests, strict=True):
            wseq += 1
            line = {
                "writer": self.writer,
                "wseq": wseq,
                "prev": prev,
                "run_id": run.run_id,
                "manifest_sha256": digest,
                "block": ref.as_json(),
            }
            row = _row(run, digest)
            if row is not None:
                line["row"] = row
            line["hash"] = prev = entry_hash(line)
            lines.append(line)
        packed = _ZSTD.compress(_jsonl(lines))
        body = b"".join([*(bytes(p) for p in pieces), frames.frame(packed, frames.PACKED)])
        if not self.fs.put_if_absent(f"{SEGMENTS}/{name}", body):
            raise StoreError(
                f"{self.fs.where(f'{SEGMENTS}/{name}')} exists already",
                hint="two writers drew one id (or the store was copied over): record again",
            )
        self._objects, self._wseq, self._prev = self._objects + 1, wseq, prev
        self._written = time.monotonic()
        if encoded.raw is not None and self._primer is None:
            self._primer = Primer.of(ref, encoded.raw, named=True)
        return name, lines

    def abort(self) -> None:
        """After a failed PUT: continue as a new writer (see the module's docstring)."""
        with self._lock:
            self._retire()
            self._begin()


def _row(run: RunData, digest: str) -> str | None:
    """The run's catalog line (``replay.store.rows``), which sealers pass on to readers."""
    try:
        return rows.unsealed(run.run_id, digest, run.blobs["manifest"], run.tables)
    except Exception:  # derived data: without it, ingest reads the run's block
        return None


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(canonical_json(line) + b"\n" for line in lines)


def read_lines(fs: S3FS, name: str) -> list[dict[str, Any]]:
    """The shard lines of log object ``name`` (checked to be its frame's, each naming the
    object's block); CorruptionError when the object ends in no frame."""
    path = f"{SEGMENTS}/{name}"
    tail = bytes(fs.read_tail(path, _TAIL))
    n = frames.length_before_trailer(tail)
    if n is not None and n + frames.OVERHEAD > len(tail):
        tail = bytes(fs.read_tail(path, n + frames.OVERHEAD))
    packed = frames.lines_at_end(tail, frames.PACKED)
    if packed is None:
        raise CorruptionError(fs.where(path), "ends in no commit frame")
    try:
        parsed = [json.loads(line) for line in frames.unpack(packed, MAX_LINES).splitlines()]
    except ValueError:
        raise CorruptionError(fs.where(path), "holds a commit frame that is not JSON") from None
    if not parsed:
        raise CorruptionError(fs.where(path), "holds a commit frame without a run")
    for line in parsed:
        if not isinstance(line, dict) or (line.get("block") or {}).get("segment") != name:
            raise CorruptionError(fs.where(path), "holds a line that names another block")
    return parsed
