"""``doctor``: find what crashes leave behind and repair what is safe to repair.

A crash can leave: temporary object files (named with their writer's pid), a torn last
ledger line, block bytes at the end of a segment log that no ledger entry points at, and a
stale or corrupt catalog; a crash of the machine, a ledger whose unsynced tail is lost,
which doctor rebuilds from the segment logs' commit frames (``replay.store.recovery``).
Doctor removes temporary files of writers that are gone, cuts a torn ledger line (never
acknowledged) — a tail that parses as complete, hash-valid, chained entries gets its
newline back instead — reports unreferenced segment bytes (harmless, never read) and
rebuilds the catalog. It never deletes or rewrites a committed
run, and refuses a store where a symbolic link stands in place of one of its files or
folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from replay.catalog.queries import reindex
from replay.errors import CorruptionError, StoreError
from replay.store import frames
from replay.store.ledger import LOCK as LEDGER_LOCK
from replay.store.ledger import NAME as LEDGER
from replay.store.recovery import MARKER, SEALED, recover
from replay.store.store import Store


@dataclass
class Checkup:
    """What ``doctor`` repaired, and what it noted and left alone."""

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
    fs, base = store.fs, "objects/sha256"
    for sub in fs.list(base):
        for name in fs.list(f"{base}/{sub}"):
            if not name.startswith(".tmp-"):
                continue
            tmp, pid = f"{base}/{sub}/{name}", _writer_pid(name)
            if pid is not None and _alive(pid):
                report.noted.append(
                    f"{fs.where(tmp)}: being written by live process {pid}, left alone"
                )
                continue
            fs.remove(tmp)
            report.repaired.append(
                f"removed {fs.where(tmp)} (temporary file of a writer that is gone)"
            )


def _ledger_tail(store: Store, report: Checkup) -> None:
    path = store.ledger.path
    try:
        recovered = recover(store.ledger)
        settled = store.ledger.settle()
    except CorruptionError as exc:
        report.noted.append(f"{path}: {exc.message}; left as it is (run `replay verify`)")
        return
    if recovered.cut:
        n = recovered.cut
        report.repaired.append(
            f"cut {n} entr{'y' if n == 1 else 'ies'} from {path} whose block a crash of the "
            "machine left incomplete (never acknowledged)"
        )
    if recovered.restored:
        n = recovered.restored
        report.repaired.append(
            f"restored {n} committed entr{'y' if n == 1 else 'ies'} that a crash of the "
            f"machine took from {path}, from the commit frames of the segment logs"
        )
    if settled.restored:
        n = settled.restored
        report.repaired.append(
            f"restored the newline of {n} complete, chained entr{'y' if n == 1 else 'ies'} "
            f"at the end of {path} (nothing cut from them)"
        )
    if settled.cut:
        report.repaired.append(
            f"cut a torn last line ({settled.cut} bytes) from {path} "
            "(a crash mid-append; that run was never acknowledged)"
        )


def _segment_tails(store: Store, report: Checkup) -> None:
    ends: dict[str, int] = {}
    for _, entry in store.ledger.read():
        b = entry["block"]
        ends[b["segment"]] = max(ends.get(b["segment"], 0), b["offset"] + b["length"])
    for name in store.fs.list("segments"):
        seg = f"segments/{name}"
        if not name.endswith(".seg"):
            continue
        end = ends.get(name, 0)
        end += frames.length_at(store.fs, seg, end)  # the last block's commit frame
        extra = store.fs.size(seg) - end
        if extra > 0:
            report.noted.append(
                f"{store.fs.where(seg)}: {extra} bytes after the last committed block "
                "(a crash before the ledger append; never read)"
            )


def _refuse_links(store: Store) -> None:
    """Doctor writes, truncates and deletes in the store, often as root: a symbolic link in
    the place of a store file or folder (which the store's owner can put there) must not
    take it anywhere else. Refused before anything is touched."""
    fs = store.fs
    names = [
        "FORMAT",
        "objects",
        "segments",
        "ledger",
        "catalog.duckdb",
        "catalog.duckdb.wal",
        "catalog.lock",
        LEDGER,
        LEDGER_LOCK,
        SEALED,
        MARKER,
        "objects/sha256",
    ]
    for folder in ("segments", "objects/sha256"):
        if not fs.is_link(folder):
            names += [f"{folder}/{name}" for name in fs.list(folder)]
    for name in names:
        if fs.is_link(name):
            path = fs.where(name)
            raise StoreError(
                f"{path} is a symbolic link: doctor repairs only the store's own "
                "files, never what a link points at",
                hint=f"replace {path} by the file or folder itself, then rerun",
            )


def doctor(store: Store) -> Checkup:
    """Find what crashes left behind and repair what is safe (temporary files, a torn ledger
    or segment tail of a writer that is gone, the catalog); never touches a committed run.
    Says what was repaired and what was only noted."""
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
