"""A durable ledger without syncing it: the sealed size, the boot marker and recovery.

The store's writers sync only their segment log per commit group: the group's ledger lines
travel in a commit frame after its block (``replay.store.frames``), so ``ledger.jsonl``
holds lines whose pages may not be on disk yet. Two small files in ``ledger/`` say when
that needs attention:

- ``sealed``: the ledger's size after the last group whose frame was synced (written in
  place after each group, never synced). A writer that finds the ledger longer holds lines
  of a writer killed between its ledger write and its sync: it syncs their segment logs and
  the ledger before chaining to them, so no line is ever chained to one that is not durable.
- ``boot.json``: the machine's boot id, and the ledger size known durable (fsynced) in that
  boot. A killed process leaves its writes in the page cache; a power loss or a crash of
  the machine does not. Only then (another boot id) are the lines past that size checked:
  each must be chained and name a block that is whole, or it and all after it are cut; then
  the lines of commit frames that continue the chain are appended (an acknowledged group's
  frame and block were synced before it was acknowledged, so none is lost). The ledger is
  synced and the marker written last: a recovery killed midway runs again, to the same end.

Stores written before 2026-11-30 have no marker: their ledger was fsynced line by line, so
all of it is vouched for when the marker is first written.
"""

from __future__ import annotations

import contextlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from replay.core.digest import canonical_json
from replay.errors import CorruptionError, ReplayError
from replay.store import frames
from replay.store.fs import LogFile, LogFS
from replay.store.ledger import FOLDER, LOCK, NAME, Ledger, chained, last_before, settle
from replay.store.segments import FOLDER as SEGMENTS
from replay.store.segments import Block, BlockRef, RunData, SegmentWriter

SEALED = f"{FOLDER}/sealed"
MARKER = f"{FOLDER}/boot.json"
# Ledger bytes written past the marker before a writer syncs the ledger and moves the marker
# on (about 3,000 runs): what bounds the lines a recovery checks.
VOUCH_EVERY = 1 << 20
_SIZE = struct.Struct("<Q")


@dataclass(frozen=True)
class Recovered:
    cut: int  # entries cut after a reboot: their block was not whole
    restored: int  # entries appended from commit frames


class Journal:
    """Seals one process's commit groups: its segment writer syncs the block and the frame."""

    def __init__(self, ledger: Ledger, segments: SegmentWriter) -> None:
        self.ledger, self.segments, self.fs = ledger, segments, ledger.fs
        self._sealed: LogFile | None = None
        self._vouched: int | None = None  # the marker's size, as this process last read it

    def prepare(self, log: LogFile) -> bool:
        rewrote = self._vouched is None
        if self._vouched is None:  # the first append of this process
            self._vouched = _recover(self.ledger, log)[0]
        size = log.size()
        sealed = self._sealed_size()
        if sealed != size:
            # A writer died between its ledger write and its sync: end the ledger on a
            # newline, then make its lines and their blocks durable before chaining to them.
            self.ledger.settle_held()
            start = sealed if sealed <= size else self._vouched
            for segment in {e["block"]["segment"] for _, e in self.ledger.read(start)}:
                with self.fs.open_existing(f"{SEGMENTS}/{segment}") as seg:
                    seg.sync()
            log.sync()
            self._mark_sealed(log.size())
            rewrote = True
        return rewrote

    def commit(self, runs: list[RunData], digests: list[str]) -> tuple[str, list[dict[str, Any]]]:
        """Write the runs' block and chain their entries into the ledger (one fdatasync);
        returns the block's segment and the entries."""
        ref = self.segments.write(runs)
        records = [
            {"run_id": run.run_id, "manifest_sha256": digest, "block": ref.as_json()}
            for run, digest in zip(runs, digests, strict=True)
        ]
        return ref.segment, self.ledger.append(records, self)

    def abort(self) -> None:
        # A block with no frame after it: the next block starts a new log, so that a log's
        # frames are found from its end one after the other.
        self.segments.close()

    def seal(self, log: LogFile, lines: bytes) -> None:
        self.segments.seal(lines)
        # The group is durable: what follows only spares work later (a writer that finds no
        # mark syncs again; a marker left behind makes a recovery check more lines), so a
        # failure of it must not undo the group, whose frame another group would then shadow.
        with contextlib.suppress(OSError):
            size = log.size()
            self._mark_sealed(size)
            assert self._vouched is not None, "prepare comes first"
            if size - self._vouched > VOUCH_EVERY:
                marker = _read_marker(self.fs)
                self._vouched = marker[1] if marker else 0
                if size - self._vouched > VOUCH_EVERY:
                    log.sync()
                    self._vouched = _write_marker(self.fs, size)

    def _sealed_size(self) -> int:
        raw = self._file().read_at(0, _SIZE.size)
        assert self._vouched is not None
        return _SIZE.unpack(raw)[0] if len(raw) == _SIZE.size else self._vouched

    def _mark_sealed(self, size: int) -> None:
        self._file().write_at(0, _SIZE.pack(size))

    def _file(self) -> LogFile:
        if self._sealed is None:
            self._sealed = self.fs.open_log(SEALED, append=False)
        return self._sealed


def recover(ledger: Ledger) -> Recovered:
    """Under the writers' lock, recover the ledger if the machine rebooted since it was last
    known durable (``doctor`` runs it; so does each writing process, first)."""
    if not ledger.fs.exists(NAME):
        return Recovered(0, 0)
    with ledger.fs.locked(LOCK), ledger.fs.open_log(NAME) as log:
        return _recover(ledger, log)[1]


def _recover(ledger: Ledger, log: LogFile) -> tuple[int, Recovered]:
    """The size the marker vouches for, once recovered; and what recovery did."""
    fs, boot = ledger.fs, ledger.fs.boot_id()
    marker = _read_marker(fs)
    if marker is not None and boot and marker[0] == boot:
        return marker[1], Recovered(0, 0)
    whole, cut, restored = _Whole(fs), 0, 0
    if marker is None:  # fsynced line by line (an older format, or a new ledger)
        ledger.settle_held()
    else:  # unsynced lines past marker[1] may be lost, torn or name a block that is not whole
        with fs.open_existing(NAME) as rw:
            settle(rw, whole)
            cut = _cut_from(rw, _boundary(rw, marker[1], ledger), whole)
            restored = _restore(fs, log, rw, whole)
    log.sync()
    size = log.size()
    with fs.open_log(SEALED, append=False) as sealed:
        sealed.write_at(0, _SIZE.pack(size))
    return _write_marker(fs, size), Recovered(cut, restored)


def _boundary(rw: LogFile, vouched: int, ledger: Ledger) -> int:
    if vouched > rw.size() or (vouched and rw.read_at(vouched - 1, 1) != b"\n"):
        raise CorruptionError(
            str(ledger.path),
            f"does not end a line at byte {vouched}, which {MARKER} says was synced",
        )
    return vouched


def _cut_from(rw: LogFile, start: int, whole: _Whole) -> int:
    """Cut the ledger at its first line from ``start`` on that is not a chained entry with a
    whole block; returns how many lines were cut."""
    seq, prev = last_before(rw, start)
    data = rw.read_at(start, rw.size() - start)
    keep = 0
    for line in data.split(b"\n")[:-1]:
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if not chained(line, entry, seq, prev, whole):
            break
        seq, prev, keep = seq + 1, entry["hash"], keep + len(line) + 1
    cut = data.count(b"\n", keep)
    if cut:
        rw.truncate(start + keep)
    return cut


def _restore(fs: LogFS, log: LogFile, rw: LogFile, whole: _Whole) -> int:
    """Append the lines of commit frames that continue the chain; returns how many."""
    seq, prev = last_before(rw, rw.size())
    found: dict[int, list[dict[str, Any]]] = {}
    for name in fs.list(SEGMENTS):
        if name.endswith(".seg"):
            for frame in frames.last_frames(fs, f"{SEGMENTS}/{name}"):
                later = [
                    e for e in frame.entries if isinstance(e.get("seq"), int) and e["seq"] > seq
                ]
                for entry in later:
                    found.setdefault(entry["seq"], []).append(entry)
                if len(later) < len(frame.entries):
                    break  # the frames before it chained to the ledger as it is
    lines = [canonical_json(e) + b"\n" for e in _chain(found, seq, prev, whole)]
    if lines:
        log.append(b"".join(lines))
    return len(lines)


def _chain(
    found: dict[int, list[dict[str, Any]]], seq: int, prev: str, whole: _Whole
) -> list[dict[str, Any]]:
    """The entries of ``found`` that continue the chain after (``seq``, ``prev``).

    Two frames can hold a line of one number only if a group's sync failed after its frame
    reached the disk and the group written in its place reused the number: the acknowledged
    one is then the one the chain goes on from, searched for only there.
    """
    chain: list[dict[str, Any]] = []
    while True:
        nexts = [
            e for e in found.get(seq + 1, []) if chained(canonical_json(e), e, seq, prev, whole)
        ]
        if not nexts:
            return chain
        if len(nexts) > 1:
            nexts.sort(key=lambda e: -len(_chain(found, seq + 1, e["hash"], whole)))
        chain.append(nexts[0])
        seq, prev = seq + 1, nexts[0]["hash"]


class _Whole:
    """Whether a block an entry names is whole, each block checked once."""

    def __init__(self, fs: LogFS) -> None:
        self.fs = fs
        self._seen: dict[tuple[Any, ...], bool] = {}

    def __call__(self, block: dict[str, Any]) -> bool:
        key = tuple(sorted(block.items()))
        if key not in self._seen:
            try:
                ref = BlockRef(**block)
            except TypeError:
                return False
            plain = "/" not in ref.segment and not ref.segment.startswith(".")
            self._seen[key] = plain and self._check(ref)
        return self._seen[key]

    def _check(self, ref: BlockRef) -> bool:
        # An unsynced block can be there in part: every byte is checked against its digest.
        try:
            block = Block(self.fs, ref)
            for idx in range(block.part_count):
                block.part(idx)
        except (ReplayError, ValueError, KeyError, TypeError, IndexError, struct.error):
            return False
        return True


def _read_marker(fs: LogFS) -> tuple[str, int] | None:
    try:
        marker = json.loads(fs.read(MARKER))
        return str(marker["boot"]), int(marker["size"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise CorruptionError(
            fs.where(MARKER),
            "is unreadable",
            hint=f"delete {MARKER} only if the machine has "
            "not crashed since the last write (it would vouch for the whole ledger)",
        ) from None


def _write_marker(fs: LogFS, size: int) -> int:
    fs.write_atomic(MARKER, canonical_json({"boot": fs.boot_id(), "size": size}))
    return size
