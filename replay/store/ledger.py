"""The append-only, hash-chained ledger of committed runs: ``ledger/ledger.jsonl``.

One canonical-JSON line per run: sequence number, the previous entry's hash, the digest of
the run's manifest and where its block lives, and the entry's own hash over all of that.
Appends from any number of processes are serialised by an flock; a line torn by a crash was
never acknowledged and is cut off by the next writer (and ignored by readers), while complete
entries that lost only their newline get it back (``settle``, which doctor runs too).

A run exists once its line is written and durable. The store's writers make it durable
without syncing this file: a ``Sealer`` (``replay.store.recovery``) copies the group's lines
into a commit frame after its block and syncs the segment log once, under the lock, so
every line is sealed before the next one is chained to it. Without a sealer (a ledger of its
own, or stores written before 2026-11-30) each append is fsynced here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from replay.core.digest import canonical_json, sha256, text_json
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
    return text_json({k: v for k, v in entry.items() if k != "manifest"})


def entry_hash(entry: dict[str, Any]) -> str:
    return sha256(text_json({k: v for k, v in entry.items() if k not in ("hash", "manifest")}))


def hash_holds(entry: dict[str, Any]) -> bool:
    """``entry_hash(entry) == entry["hash"]``, 4x faster: orjson's sorted compact UTF-8 is
    canonical_json's bytes for the values an entry holds; should it ever differ, the exact
    canonical form decides. (Equal bytes parse to equal values, so accepting on either is
    as sound as the canonical check.)"""
    body = {k: v for k, v in entry.items() if k not in ("hash", "manifest")}
    try:
        fast = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        fast = b""
    return sha256(fast) == entry.get("hash") or entry_hash(entry) == entry.get("hash")


def canonical_entry(entry: dict[str, Any]) -> bytes:
    """``canonical_json(entry)`` (the bytes the Merkle tree's leaf hashes)."""
    return _canonical_hashed(entry)[0]


def _canonical_hashed(entry: dict[str, Any]) -> tuple[bytes, bool]:
    """``canonical_json(entry)`` and whether its hash holds, 3x faster for an entry whose
    hash holds by ``hash_holds``' fast path: its body's orjson bytes are then the canonical
    ones its hash was made over, and the whole entry adds only the hash itself, a plain
    ``sha256:<hex>`` string, which both write alike."""
    if "manifest" not in entry:
        try:
            body = orjson.dumps(
                {k: v for k, v in entry.items() if k != "hash"}, option=orjson.OPT_SORT_KEYS
            )
            if sha256(body) == entry.get("hash"):
                return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS), True
        except TypeError:
            pass
    return canonical_json(entry), entry_hash(entry) == entry.get("hash")


@dataclass(frozen=True)
class Tail:
    size: int
    seq: int
    hash: str


@dataclass(frozen=True)
class Settled:
    restored: int  # complete entries at the end that got their newline back
    cut: int  # bytes of a torn last line cut off


class Sealer(Protocol):
    """What makes appended lines durable in place of an fsync of the ledger."""

    def prepare(self, log: LogFile) -> bool:
        """Under the writers' lock, before the tail is read: make durable what an earlier
        writer left unsealed (or what a reboot lost); whether the ledger was rewritten."""
        ...

    def seal(self, log: LogFile, lines: bytes) -> None:
        """Make ``lines``, just appended to ``log``, durable with the block they name."""
        ...


class Ledger:
    def __init__(self, fs: LogFS) -> None:
        self.fs = fs
        self.root = Path(fs.where(FOLDER))
        self.path = Path(fs.where(NAME))
        self._tail: Tail | None = None

    def append(
        self, records: list[dict[str, Any]], sealer: Sealer | None = None
    ) -> list[dict[str, Any]]:
        """Chain and durably append one entry per record (made durable by ``sealer``, or by
        an fsync of the ledger); returns the entries written."""
        with self.fs.locked(LOCK), self.fs.open_log(NAME) as log:
            try:
                if sealer is not None and sealer.prepare(log):
                    self._tail = None
            except OSError as exc:
                raise _unwritable(exc) from exc
            tail = self._read_tail(log)
            entries, lines = [], []
            seq, prev = tail.seq, tail.hash
            for record in records:
                seq += 1
                entry = {**record, "seq": seq, "prev": prev}
                entry["hash"] = prev = entry_hash(entry)
                entries.append(entry)
                lines.append(text_json(entry) + b"\n")
            data = b"".join(lines)
            try:
                log.append(data)
                log.sync() if sealer is None else sealer.seal(log, data)
            except BaseException as exc:
                log.truncate(tail.size)  # no torn or unsealed line: nobody chained to it yet
                if not isinstance(exc, OSError):
                    raise
                raise _unwritable(exc) from exc
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
            self.settle_held()
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
            return self.settle_held()

    def settle_held(self) -> Settled:
        """``settle``, by a caller that holds the writers' lock."""
        with self.fs.open_existing(NAME) as log:
            return settle(log, lambda block: _block_in(self.fs, block))

    def size(self) -> int:
        """The ledger's length in bytes (0 before the first entry)."""
        try:
            return self.fs.size(NAME)
        except FileNotFoundError:
            return 0

    def read_range(self, offset: int, length: int) -> memoryview:
        """Up to ``length`` bytes of the ledger from ``offset``, as they are (ingest parses
        many lines at once), mapped where the file system can: the caller copies what it
        keeps."""
        return self.fs.read_range(NAME, offset, length)

    def ends_line(self, offset: int) -> bool:
        """Whether a line of the ledger ends at byte ``offset`` (where a reader stopped)."""
        return offset <= self.size() and bytes(self.fs.read_range(NAME, offset - 1, 1)) == b"\n"

    def read(
        self, offset: int = 0, copy: Callable[[bytes], object] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Complete entries from byte ``offset`` on, each with the offset just past it;
        ``copy`` is handed each complete line's bytes (to hash what was read, as it was)."""
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
                if copy is not None:
                    copy(line)
                try:
                    yield pos, orjson.loads(line)
                except ValueError:
                    raise CorruptionError(
                        str(self.path), f"entry ending at byte {pos} is not JSON"
                    ) from None

    def chain(
        self,
        offset: int = 0,
        seq: int = 0,
        prev: str = GENESIS,
        copy: Callable[[bytes], object] | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``read``, each entry checked first: its hash, and its link to the one before
        (``seq`` and ``prev``: the entry that ends at ``offset``)."""
        for pos, entry in self.read(offset, copy):
            seq += 1
            where = f"entry {seq} (ends at byte {pos})"
            if entry.get("seq") != seq or entry.get("prev") != prev:
                raise CorruptionError(str(self.path), f"{where} breaks the chain")
            if not hash_holds(entry):
                raise CorruptionError(str(self.path), f"{where} does not match its hash")
            prev = entry["hash"]
            yield pos, entry

    def verify(self) -> int:
        """Check every entry's hash and chain link; returns the number of entries."""
        return sum(1 for _ in self.chain())


def _unwritable(exc: OSError) -> StoreError:
    return StoreError(
        f"cannot append to the ledger: {exc.strerror}",
        hint="free space in the store's filesystem and record again",
    )


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
    seq, prev = last_before(log, start)
    ends = complete_entries(log.read_at(start, size - start), seq, prev, block_present)
    for end in ends:
        log.write_at(start + end, b"\n")
    keep = start + ends[-1] + 1 if ends else start
    if keep < size:
        log.truncate(keep)
    log.sync()
    return Settled(len(ends), max(0, size - keep))


def last_before(log: LogFile, start: int) -> tuple[int, str]:
    """The sequence number and hash of the entry that ends at byte ``start``."""
    if start == 0:
        return 0, GENESIS
    before = _last_newline(log, start - 1) + 1
    try:
        last = json.loads(log.read_at(before, start - before))
        return int(last["seq"]), str(last["hash"])
    except (ValueError, KeyError, TypeError):
        raise CorruptionError(
            f"ledger entry before byte {start}",
            "is unreadable, so the lines after it cannot be checked",
        ) from None


def chained(
    body: bytes, entry: Any, seq: int, prev: str, block_present: Callable[[dict[str, Any]], bool]
) -> bool:
    """Whether ``entry``, read from ``body``, is exactly its canonical JSON, the entry after
    (``seq``, ``prev``), right about its hash and names a block that is there."""
    if not isinstance(entry, dict):
        return False
    try:
        canonical, hashed = _canonical_hashed(entry)
    except TypeError:
        return False
    return (
        body == canonical
        and entry.get("seq") == seq + 1
        and entry.get("prev") == prev
        and hashed
        and isinstance(entry.get("block"), dict)
        and block_present(entry["block"])
    )


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
            body = canonical_json(entry)
        except (ValueError, TypeError):
            break
        if not chained(tail[pos : pos + len(body)], entry, seq, prev, block_present):
            break
        seq, prev = seq + 1, entry["hash"]
        pos += len(body)
        ends.append(pos)
        pos += 1  # the one byte that was this entry's newline
    return ends
