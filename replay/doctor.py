"""``doctor``: find what crashes leave behind and repair what is safe to repair.

A crash can leave: temporary object files (named with their writer's pid), a torn last
ledger line, block bytes at the end of a segment log that no ledger entry points at, and a
stale or corrupt catalog. Doctor removes temporary files of writers that are gone, cuts a
torn ledger line (never acknowledged), reports unreferenced segment bytes (harmless, never
read) and rebuilds the catalog. It never deletes or rewrites a committed run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from replay.queries import reindex
from replay.store import Store


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


def _ledger_tail(store: Store, report: Checkup) -> None:
    path = store.ledger.path
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        torn = f.read(1) != b"\n"
    if torn:
        store.ledger.append([])  # under the ledger lock, cuts the torn line and nothing else
        report.repaired.append(f"cut a torn last line from {path} (a crash mid-append; "
                               "that run was never acknowledged)")


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


def doctor(store: Store) -> Checkup:
    report = Checkup()
    if store.readonly:
        report.noted.append(f"{store.root} is read-only: checked nothing that needs writing")
        return report
    _temp_files(store, report)
    _ledger_tail(store, report)
    _segment_tails(store, report)
    runs = reindex(store)
    report.repaired.append(f"rebuilt the catalog from the files ({runs} runs)")
    return report


