"""The append-only, hash-chained ledger of committed runs: ``ledger/ledger.jsonl``.

One canonical-JSON line per run: sequence number, the previous entry's hash, the digest of
the run's manifest and where its block lives, and the entry's own hash over all of that. A run
exists once its line is written and fsynced. Appends from any number of processes are
serialised by an flock; a line torn by a crash was never acknowledged and is cut off by the
next writer (and ignored by readers), while complete entries that lost only their newline get
it back (``settle``, which doctor runs too).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from replay.core.digest import canonical_json, sha256
from replay.errors import CorruptionError, StoreError
from replay.store.fs import LogFile, LogFS, StoreFS
from replay.store.segments import FOLDER as SEGMENTS

FOLDER = "ledger"
NAME = f"{FOLDER}/ledger.jsonl"
LOCK = f"{FOLDER}/lock"
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


@dataclass(frozen=True)
class Settled:
    restored: int  # complete entries at the end that got their newline back
    cut: int  # bytes of a torn last line cut off


class Ledger:
    def __init__(self, fs: LogFS) -> None:
        self.fs = fs
        self.root = Path(fs.where(FOLDER))
        self.path = Path(fs.where(NAME))
        self._tail: Tail | None = None

    def append(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chain and durably append one entry per record; returns the entries written."""
        with self.fs.locked(LOCK), self.fs.open_log(NAME) as log:
            tail = self._read_tail(log)
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
                log.append(data)
                log.sync()
            except OSError as exc:
                log.truncate(tail.size)  # leave no torn line behind us
                raise StoreError(
                    f"cannot append to the ledger: {exc.strerror}",
                    hint="free space in the store's filesystem and record again",
                ) from exc
            if tail.size == 0:
                self.fs.sync_folder(FOLDER)
            self._tail = Tail(tail.size + len(data), seq, prev)
            return entries

    def _read_tail(self, log: LogFile) -> Tail:
        size = log.size()
        if self._tail is not None and self._tail.size == size:
            return self._tail
        if size == 0:
            return Tail(0, 0, GENESIS)
        if log.read_at(size - 1, 1) != b"\n":
            # A writer died mid-line (never acknowledged) or a newline was lost: repaired on
            # a descriptor of its own, as an appending one writes only at the end.
            self._settle()
            size = log.size()
            if size == 0:
                return Tail(0, 0, GENESIS)
        start = _last_newline(log, size - 1) + 1
        line = log.read_at(start, size - start)
        try:
            entry = json.loads(line)
            return Tail(size, int(entry["seq"]), str(entry["hash"]))
        except (ValueError, KeyError) as exc:
            raise CorruptionError(str(self.path), f"last entry is unreadable ({exc})") from None

    def settle(self) -> Settled:
        """Under the writers' lock, end the ledger on a newline (see ``settle``); doctor runs
        it. A store with no ledger yet has nothing to settle."""
        if not self.fs.exists(NAME):
            return Settled(0, 0)
        with self.fs.locked(LOCK):
            return self._settle()

    def _settle(self) -> Settled:
        with self.fs.open_existing(NAME) as log:
            return settle(log, lambda block: _block_in(self.fs, block))

    def size(self) -> int:
        """The ledger's length in bytes (0 before the first entry)."""
        try:
            return self.fs.size(NAME)
        except FileNotFoundError:
            return 0

    def read(self, offset: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """Complete entries from byte ``offset`` on, each with the offset just past it."""
        try:
            f = self.fs.open_read(NAME, offset)
        except FileNotFoundError:
            return
        with f:
            pos = offset
            for line in f:
                if not line.endswith(b"\n"):
                    return  # a torn tail: not committed
                pos += len(line)
                try:
                    yield pos, orjson.loads(line)
                except ValueError:
                    raise CorruptionError(
                        str(self.path), f"entry ending at byte {pos} is not JSON"
                    ) from None

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


def _last_newline(log: LogFile, end: int) -> int:
    """Offset of the last b'\\n' before ``end``, or -1."""
    pos = end
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        idx = log.read_at(start, pos - start).rfind(b"\n")
        if idx >= 0:
            return start + idx
        pos = start
    return -1


def settle(log: LogFile, block_present: Callable[[dict[str, Any]], bool]) -> Settled:
    """End the ledger (open in place on ``log``, under the writers' lock) on a newline.

    What follows the last newline is kept when it is complete, chained entries whose blocks
    are present (each gets its newline back); the rest is a torn line, never acknowledged,
    and is cut. Newlines first, the cut last: a crash in between leaves at worst a torn line
    again.
    """
    size = log.size()
    if size == 0 or log.read_at(size - 1, 1) == b"\n":
        return Settled(0, 0)
    start = _last_newline(log, size) + 1
    seq, prev = 0, GENESIS
    if start > 0:
        before = _last_newline(log, start - 1) + 1
        try:
            last = json.loads(log.read_at(before, start - before))
            seq, prev = int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, TypeError):
            raise CorruptionError(
                f"ledger entry before byte {start}",
                "is unreadable, so the unterminated line after it cannot be checked",
            ) from None
    ends = complete_entries(log.read_at(start, size - start), seq, prev, block_present)
    for end in ends:
        log.write_at(start + end, b"\n")
    keep = start + ends[-1] + 1 if ends else start
    if keep < size:
        log.truncate(keep)
    log.sync()
    return Settled(len(ends), max(0, size - keep))


def _block_in(fs: StoreFS, block: dict[str, Any]) -> bool:
    name = str(block.get("segment", ""))
    if "/" in name or name.startswith(".") or not name:
        return False
    try:
        return fs.size(f"{SEGMENTS}/{name}") >= int(block["offset"]) + int(block["length"])
    except (OSError, KeyError, TypeError, ValueError):
        return False


def complete_entries(
    tail: bytes,
    seq: int,
    prev: str,
    block_present: Callable[[dict[str, Any]], bool] = lambda b: True,
) -> list[int]:
    """Where the complete entries at the start of an unterminated ledger tail end.

    ``tail`` is what follows the ledger's last newline; ``seq`` and ``prev`` are the sequence
    number and hash of the entry before it. An entry counts only if its bytes are exactly its
    canonical JSON, its hash is right, it links to the one before and its block is there: a
    line a writer wrote whole but whose newline was lost (or changed, to one other byte).
    Returns the end offset of each such entry, in order; the bytes after the last one (or all
    of ``tail``) are a torn line, never acknowledged.
    """
    ends: list[int] = []
    decoder = json.JSONDecoder()
    pos = 0
    while pos < len(tail):
        try:
            entry, _ = decoder.raw_decode(tail[pos:].decode("utf-8", "replace"))
        except ValueError:
            break
        if not isinstance(entry, dict):
            break
        try:
            body = canonical_json(entry)
        except TypeError:
            break
        if (
            tail[pos : pos + len(body)] != body
            or entry.get("seq") != seq + 1
            or entry.get("prev") != prev
            or entry_hash(entry) != entry.get("hash")
            or not isinstance(entry.get("block"), dict)
            or not block_present(entry["block"])
        ):
            break
        seq, prev = seq + 1, entry["hash"]
        pos += len(body)
        ends.append(pos)
        pos += 1  # the one byte that was this entry's newline
    return ends
