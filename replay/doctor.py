"""``doctor``: find what crashes leave behind and repair what is safe to repair.

A crash can leave: temporary object files (named with their writer's pid), a torn last
ledger line, block bytes at the end of a segment log that no ledger entry points at, and a
stale or corrupt catalog. Doctor removes temporary files of writers that are gone, cuts a
torn ledger line (never acknowledged) — a tail that parses as complete, hash-valid,
chained entries gets its newline back instead — reports unreferenced segment bytes
(harmless, never read) and rebuilds the catalog. It never deletes or rewrites a committed
run, and refuses a store where a symbolic link stands in place of one of its files or
folders.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.digest import canonical_json
from replay.errors import StoreError
from replay.fsutil import open_nofollow
from replay.ledger import GENESIS, entry_hash
from replay.queries import reindex
from replay.store import Store

_CHUNK = 1 << 16


@dataclass
class Checkup:
    repaired: list[str] = field(default_factory=list)
    noted: list[str] = field(default_factory=list)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_pid(name: str) -> int | None:
    parts = name.split("-")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


def _temp_files(store: Store, report: Checkup) -> None:
    base = store.root / "objects" / "sha256"
    for tmp in sorted(base.glob("*/.tmp-*")) if base.exists() else []:
        pid = _writer_pid(tmp.name)
        if pid is not None and _alive(pid):
            report.noted.append(f"{tmp}: being written by live process {pid}, left alone")
            continue
        tmp.unlink(missing_ok=True)
        report.repaired.append(f"removed {tmp} (temporary file of a writer that is gone)")


def _last_newline(fd: int, end: int) -> int:
    """Offset of the last b'\\n' before ``end``, or -1."""
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        idx = os.pread(fd, pos - start, start).rfind(b"\n")
        if idx >= 0:
            return start + idx
        pos = start
    return -1


def complete_entries(tail: bytes, seq: int, prev: str,
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
        if (tail[pos:pos + len(body)] != body or entry.get("seq") != seq + 1
                or entry.get("prev") != prev or entry_hash(entry) != entry.get("hash")
                or not isinstance(entry.get("block"), dict)
                or not block_present(entry["block"])):
            break
        seq, prev = seq + 1, entry["hash"]
        pos += len(body)
        ends.append(pos)
        pos += 1  # the one byte that was this entry's newline
    return ends


def _ledger_tail(store: Store, report: Checkup) -> None:
    path = store.ledger.path
    if not os.path.lexists(path):
        return
    # Under the writers' lock, on descriptors that never follow a link out of the store.
    lock = open_nofollow(store.ledger.root / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = open_nofollow(path, os.O_RDWR)
        try:
            _repair_tail(store, fd, path, report)
        finally:
            os.close(fd)
    finally:
        os.close(lock)


def _repair_tail(store: Store, fd: int, path: Path, report: Checkup) -> None:
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = _last_newline(fd, size) + 1
    seq, prev = 0, GENESIS
    if start > 0:
        before = _last_newline(fd, start - 1) + 1
        try:
            last = json.loads(os.pread(fd, start - before, before))
            seq, prev = int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, TypeError):
            report.noted.append(f"{path}: the entry before the unterminated last line is "
                                "unreadable; left as it is (run `replay verify`)")
            return

    def block_present(block: dict[str, Any]) -> bool:
        name = str(block.get("segment", ""))
        try:
            seg = os.lstat(store.root / "segments" / name)
            return ("/" not in name and not name.startswith(".")
                    and seg.st_size >= int(block["offset"]) + int(block["length"]))
        except (OSError, KeyError, TypeError, ValueError):
            return False

    ends = complete_entries(os.pread(fd, size - start, start), seq, prev, block_present)
    # Newlines first, the cut last: a crash in between leaves at worst a torn line again.
    for end in ends:
        os.pwrite(fd, b"\n", start + end)
    keep = start + ends[-1] + 1 if ends else start
    if keep < size:
        os.ftruncate(fd, keep)
    os.fsync(fd)
    if ends:
        report.repaired.append(
            f"restored the newline of {len(ends)} complete, chained entr"
            f"{'y' if len(ends) == 1 else 'ies'} at the end of {path} (nothing cut from them)")
    if keep < size:
        report.repaired.append(f"cut a torn last line ({size - keep} bytes) from {path} "
                               "(a crash mid-append; that run was never acknowledged)")


def _segment_tails(store: Store, report: Checkup) -> None:
    ends: dict[str, int] = {}
    for _, entry in store.ledger.read():
        b = entry["block"]
        ends[b["segment"]] = max(ends.get(b["segment"], 0), b["offset"] + b["length"])
    folder = store.root / "segments"
    for seg in sorted(folder.glob("*.seg")) if folder.exists() else []:
        extra = seg.stat().st_size - ends.get(seg.name, 0)
        if extra > 0:
            report.noted.append(f"{seg}: {extra} bytes after the last committed block "
                                "(a crash before the ledger append; never read)")


def _refuse_links(store: Store) -> None:
    """Doctor writes, truncates and deletes in the store, often as root: a symbolic link in
    the place of a store file or folder (which the store's owner can put there) must not
    take it anywhere else. Refused before anything is touched."""
    root = store.root
    names = [root / n for n in ("FORMAT", "objects", "segments", "ledger", "catalog.duckdb",
                                "catalog.duckdb.wal", "catalog.lock")]
    names += [store.ledger.path, store.ledger.root / "lock", root / "objects" / "sha256"]
    for folder in (root / "segments", root / "objects" / "sha256"):
        if folder.is_dir() and not folder.is_symlink():
            names += sorted(folder.iterdir())
    for path in names:
        if path.is_symlink():
            raise StoreError(f"{path} is a symbolic link: doctor repairs only the store's own "
                             "files, never what a link points at",
                             hint=f"replace {path} by the file or folder itself, then rerun")


def doctor(store: Store) -> Checkup:
    report = Checkup()
    if store.readonly:
        report.noted.append(f"{store.root} is read-only: checked nothing that needs writing")
        return report
    _refuse_links(store)
    _temp_files(store, report)
    _ledger_tail(store, report)
    _segment_tails(store, report)
    runs = reindex(store)
    report.repaired.append(f"rebuilt the catalog from the files ({runs} runs)")
    return report


