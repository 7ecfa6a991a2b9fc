"""The append-only, hash-chained ledger of committed runs: ``ledger/ledger.jsonl``.

One canonical-JSON line per run: sequence number, the previous entry's hash, the digest of
the run's manifest and where its block lives, and the entry's own hash over all of that. A run
exists once its line is written and fsynced. Appends from any number of processes are
serialised by an flock; a line torn by a crash was never acknowledged and is cut off by the
next writer (and ignored by readers).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replay.digest import canonical_json, sha256
from replay.errors import CorruptionError, StoreError
from replay.fsutil import fsync_dir, open_nofollow, sync_data, write_all

GENESIS = "sha256:" + "0" * 64
_TAIL_CHUNK = 1 << 16


def line_of(entry: dict[str, Any]) -> bytes:
    """An entry as the ledger stores it: the manifest is named by its digest, not held."""
    return canonical_json({k: v for k, v in entry.items() if k != "manifest"})


def entry_hash(entry: dict[str, Any]) -> str:
    return sha256(canonical_json({k: v for k, v in entry.items() if k not in ("hash", "manifest")}))


@dataclass(frozen=True)
class Tail:
    size: int
    seq: int
    hash: str


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "ledger.jsonl"
        self._tail: Tail | None = None

    @contextmanager
    def _locked(self) -> Iterator[int]:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = open_nofollow(self.root / "lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(lock)  # closing releases the flock

    def append(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chain and durably append one entry per record; returns the entries written."""
        with self._locked() as fd:
            tail = self._read_tail(fd)
            entries, lines = [], []
            seq, prev = tail.seq, tail.hash
            for record in records:
                seq += 1
                entry = {**record, "seq": seq, "prev": prev}
                entry["hash"] = prev = entry_hash(entry)
                entries.append(entry)
                lines.append(canonical_json(entry) + b"\n")
            data = b"".join(lines)
            try:
                write_all(fd, data)
                sync_data(fd)
            except OSError as exc:
                os.ftruncate(fd, tail.size)  # leave no torn line behind us
                raise StoreError(f"cannot append to the ledger: {exc.strerror}",
                                 hint="free space in the store's filesystem and record again"
                                 ) from exc
            if tail.size == 0:
                fsync_dir(self.root)
            self._tail = Tail(tail.size + len(data), seq, prev)
            return entries

    def _read_tail(self, fd: int) -> Tail:
        size = os.fstat(fd).st_size
        if self._tail is not None and self._tail.size == size:
            return self._tail
        if size == 0:
            return Tail(0, 0, GENESIS)
        end = size
        last_byte = os.pread(fd, 1, size - 1)
        if last_byte != b"\n":
            # A writer died mid-line; that entry was never acknowledged.
            end = self._last_newline(fd, size) + 1
            os.ftruncate(fd, end)
            os.fsync(fd)
            if end == 0:
                return Tail(0, 0, GENESIS)
        start = self._last_newline(fd, end - 1) + 1
        line = os.pread(fd, end - start, start)
        try:
            entry = json.loads(line)
            return Tail(end, int(entry["seq"]), str(entry["hash"]))
        except (ValueError, KeyError) as exc:
            raise CorruptionError(str(self.path), f"last entry is unreadable ({exc})") from None

    @staticmethod
    def _last_newline(fd: int, end: int) -> int:
        """Offset of the last b'\\n' before ``end``, or -1."""
        pos = end
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK)
            chunk = os.pread(fd, pos - start, start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                return start + idx
            pos = start
        return -1

    def read(self, offset: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """Complete entries from byte ``offset`` on, each with the offset just past it."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below, iterated lazily
        except FileNotFoundError:
            return
        with f:
            f.seek(offset)
            pos = offset
            for line in f:
                if not line.endswith(b"\n"):
                    return  # a torn tail: not committed
                pos += len(line)
                try:
                    yield pos, json.loads(line)
                except ValueError:
                    raise CorruptionError(str(self.path),
                                          f"entry ending at byte {pos} is not JSON") from None

    def verify(self) -> int:
        """Check every entry's hash and chain link; returns the number of entries."""
        prev, seq = GENESIS, 0
        for pos, entry in self.read():
            seq += 1
            where = f"entry {seq} (ends at byte {pos})"
            if entry.get("seq") != seq or entry.get("prev") != prev:
                raise CorruptionError(str(self.path), f"{where} breaks the chain")
            if entry_hash(entry) != entry.get("hash"):
                raise CorruptionError(str(self.path), f"{where} does not match its hash")
            prev = entry["hash"]
        return seq
