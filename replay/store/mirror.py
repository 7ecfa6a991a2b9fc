"""A store on object storage, read here through a local mirror of its sealed ledger.

The mirror lives in the user's cache (never in the bucket): ``ledger/ledger.jsonl`` holds the
lines of every sealing epoch in order, as sealed, and ``ledger/epoch.json`` the last epoch
taken (its number and digest, the ledger's size then, and the Merkle frontier);
``index/sealed.frames`` the catalog lines the epochs carry, still compressed, which ingest
reads; the catalog sits beside them. Every read path of the store (the catalog, lookups,
proofs, verify) works on that ledger file as on a folder store's, while blocks, objects and
checkpoints are read from the bucket (``Routed``).

Each epoch is taken only if it names the previous one, its lines continue the ledger's chain,
and its Merkle root is the root of the mirrored ledger with them: a mirror that took an epoch
holds exactly what the epoch's signed checkpoint covers (``seals.copy``; each entry's own hash
and the chain inside an epoch are checked by ``verify --store``, as on a folder store). A
mirror killed mid-update is cut back to the last epoch it recorded as taken.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from replay.core import merkle
from replay.core.digest import canonical_json, sha256
from replay.core.userdirs import cache_folder
from replay.errors import CorruptionError
from replay.store import rows, seals
from replay.store.fs import Data, LocalFile, LocalFS, Mapped
from replay.store.ledger import FOLDER, GENESIS, LOCK, NAME
from replay.store.s3 import S3FS

STATE = f"{FOLDER}/epoch.json"
ROWS = f"{rows.FOLDER}/sealed{rows.FRAMES}"  # the epochs' catalog lines, which ingest reads
UNPACKED = f"{rows.FOLDER}/sealed.jsonl"  # where a mirror kept them unpacked before
LOCAL = ("ledger", "index", "catalog.duckdb", "catalog.duckdb.wal", "catalog.lock")


def location(remote: S3FS) -> Path:
    """The mirror of ``remote`` in this user's cache (one per endpoint and URL)."""
    return cache_folder() / "s3" / sha256(remote.identity.encode())[7:23]


@dataclass(frozen=True)
class State:
    epoch: int
    digest: str
    bytes: int  # the mirrored ledger's size
    size: int  # its entries
    last: str  # the hash of its last entry
    frontier: list[str]
    rows: int  # the size of the catalog lines taken with them


EMPTY = State(0, GENESIS, 0, 0, GENESIS, [], 0)


def _read_state(local: LocalFS) -> State:
    try:
        return State(**json.loads(local.read(STATE)))
    except FileNotFoundError:
        return EMPTY
    except (ValueError, TypeError):
        raise CorruptionError(local.where(STATE), "is not a mirror's state: delete it") from None


def update(local: LocalFS, remote: S3FS, known: seals.Epoch | None = None) -> int:
    """Take every epoch sealed since the mirror's last; returns how many. ``known``: the
    last a sealer found, already read: every epoch up to it is taken, none after it (the
    next update's), without listing them or reading it again (~30 ms for one of 10,000
    runs): epochs are created once and never rewritten."""
    taken = 0
    with local.locked(LOCK), local.open_log(NAME) as log, local.open_log(ROWS) as index:
        if local.exists(UNPACKED):  # an older mirror's: its epochs are taken again
            local.remove(UNPACKED)
        state = _read_state(local)
        if log.size() < state.bytes or index.size() < state.rows:
            # The machine crashed before lines recorded as taken reached the disk (the state
            # is written durably, the lines are not synced): take every epoch again.
            state = EMPTY
        for f, size in ((log, state.bytes), (index, state.rows)):
            if f.size() != size:
                f.truncate(size)  # lines of an epoch whose taking was not recorded
        for epoch in seals.following(remote, state.epoch, known):
            tree = merkle.Frontier(state.size, [bytes.fromhex(h) for h in state.frontier])
            before = seals.Epoch(state.epoch, state.digest, "", {}, state.size, state.last)
            seals.copy(remote.where(seals.name(epoch.number)), before, epoch, tree)
            log.append(epoch.lines)
            # Its catalog lines as sealed: ~1.5 MB an epoch of 10,000 runs, where unpacked
            # they were 10 MB to write, and to unpack from the epoch at every query.
            packed = rows.as_frame(epoch.packed)
            index.append(packed)
            state = State(
                epoch.number,
                epoch.digest,
                state.bytes + len(epoch.lines),
                epoch.size,
                epoch.last,
                [h.hex() for h in tree.hashes],
                state.rows + len(packed),
            )
            local.write_atomic(STATE, canonical_json(state.__dict__))
            taken += 1
    return taken


@dataclass(frozen=True)
class Routed:
    """A store's files: the mirror's (``LOCAL``) here, all others in the bucket."""

    local: LocalFS
    remote: S3FS

    def _fs(self, path: str) -> LocalFS | S3FS:
        return self.local if path.split("/", 1)[0] in LOCAL else self.remote

    def where(self, path: str) -> str:
        return self._fs(path).where(path)

    def exists(self, path: str) -> bool:
        return self._fs(path).exists(path)

    def size(self, path: str) -> int:
        return self._fs(path).size(path)

    def list(self, folder: str) -> list[str]:
        return self._fs(folder).list(folder)

    def names(self, folder: str, start_after: str = "") -> Iterator[str]:
        return self._fs(folder).names(folder, start_after)

    def changed(self, path: str) -> int:
        return self._fs(path).changed(path)

    def mtimes(self, folder: str) -> dict[str, int]:
        return self._fs(folder).mtimes(folder)

    def read(self, path: str) -> bytes:
        return self._fs(path).read(path)

    def read_range(self, path: str, offset: int, length: int) -> memoryview:
        return self._fs(path).read_range(path, offset, length)

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        return self._fs(path).open_read(path, offset)

    def mapped(self, path: str) -> AbstractContextManager[Mapped]:
        return self._fs(path).mapped(path)

    def put_if_absent(self, path: str, data: Data) -> bool:
        return self._fs(path).put_if_absent(path, data)

    def write_atomic(self, path: str, data: Data) -> None:
        self._fs(path).write_atomic(path, data)

    def remove(self, path: str) -> None:
        self._fs(path).remove(path)

    # What only a disk has: the mirror's ledger, its lock and the catalog's files.
    def open_log(self, path: str, *, append: bool = True) -> LocalFile:
        return self.local.open_log(path, append=append)

    def open_existing(self, path: str) -> LocalFile:
        return self.local.open_existing(path)

    def sync_folder(self, folder: str) -> None:
        self.local.sync_folder(folder)

    def locked(self, path: str) -> AbstractContextManager[None]:
        return self.local.locked(path)

    def is_link(self, path: str) -> bool:
        return self.local.is_link(path)

    def boot_id(self) -> str:
        return self.local.boot_id()

    def writable(self) -> bool:
        return True
