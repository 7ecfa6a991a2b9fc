"""The history this user verified of a store, kept between processes in the user's cache.

Before a run is replayed or exported, its ledger entry must be the one the verified hash chain
holds at its position, and export proves and signs in the Merkle tree of that chain
(``history``). Hashing a million-entry ledger again in every new process costs tens of
seconds, so what was verified is kept: every entry's hash and the tree's complete subtrees
(96 bytes an entry), the ledger offset they reach, the tree's size and root. It is the user's
record, outside the store, so whoever may write the store cannot change it. A new process loads
it, checks that the ledger still ends the verified part with the same entry at the same offset,
and hashes only what follows; an entry rewritten inside the verified part is refused when it
is read (its hash is not the one kept), and ``verify --store`` reads the whole ledger again.

    verified/<name>.json         the head, replaced atomically: the size and root verified,
                                 and how many entries the data files hold ("kept", with their
                                 root and the ledger offset just past the last, "end")
    verified/<name>/hashes       32 bytes an entry
    verified/<name>/level-<l>    32 bytes a complete subtree of 2^l entries

Data files only grow, under a lock, and are synced before a head names them; they grow by
SAVE_EVERY entries or more (a save syncs a file per level), while the head follows every
verification. A head without "kept" (written before 2026-11-30) or whose data files are
shorter than it says vouches only for its size and root: the ledger is then hashed from the
start and compared with them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from replay.core import merkle
from replay.core.digest import canonical_json
from replay.store.fs import LocalFS

HASH = 32
SAVE_EVERY = 1024  # entries: a new process hashes at most this many again (~35 ms)


class Hashes:
    """Entry hashes in ledger order, kept raw (32 bytes each) rather than as a million str."""

    def __init__(self, data: bytearray | None = None) -> None:
        self.data = data if data is not None else bytearray()

    def __len__(self) -> int:
        return len(self.data) // HASH

    def __getitem__(self, index: int) -> str:
        """The ``sha256:<hex>`` hash of entry ``index + 1`` (negative counts from the end)."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return "sha256:" + self.data[index * HASH : (index + 1) * HASH].hex()

    def append(self, digest: str) -> None:
        self.data += bytes.fromhex(digest.removeprefix("sha256:"))


@dataclass(frozen=True)
class Head:
    size: int
    root: str  # hex
    kept: int = 0  # entries the data files hold; 0: the head vouches for size and root only
    kept_root: str = ""
    end: int = 0  # the ledger offset just past entry ``kept``


def read_head(head: Path) -> Head | None:
    """The size and root verified before, or None (nothing kept, or a damaged head: it
    vouches for nothing and is rewritten)."""
    try:
        fields = json.loads(LocalFS(head.parent).read(head.name))
        found = Head(int(fields["size"]), str(fields["root"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        kept = Head(found.size, found.root, *(fields[k] for k in ("kept", "kept_root", "end")))
    except KeyError:
        return found
    ok = isinstance(kept.kept, int) and 0 <= kept.kept <= kept.size and isinstance(kept.end, int)
    return kept if ok else found


def load(head: Path) -> tuple[Head, Hashes, merkle.Tree] | None:
    """What was verified before with its data, or None when no data can be trusted."""
    fs, name, found = LocalFS(head.parent), head.stem, read_head(head)
    if found is None or not found.kept:
        return None
    try:
        hashes = Hashes(_read(fs, f"{name}/hashes", found.kept * HASH))
        levels = [
            _read(fs, f"{name}/level-{level}", (found.kept >> level) * HASH)
            for level in range(found.kept.bit_length())
        ]
        tree = merkle.Tree.of_levels(levels, found.kept)
    except (OSError, ValueError):
        return None
    return (found, hashes, tree) if tree.root().hex() == found.kept_root else None


def _read(fs: LocalFS, path: str, length: int) -> bytearray:
    data = bytearray(length)
    with fs.open_read(path) as f:
        if f.readinto(data) != length:  # type: ignore[attr-defined]
            raise ValueError(f"{path} is shorter than its head says")
    return data


def save(head: Path, end: int, hashes: Hashes, tree: merkle.Tree) -> None:
    """Keep what was verified: the data past what is already kept, then the head. A head kept
    by another process that is longer, or that this tree does not extend, is left for the
    next check to judge. Nothing is kept where the cache cannot be written."""
    fs, name = LocalFS(head.parent), head.stem
    try:
        head.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with fs.locked(f"{name}.lock"):
            old = read_head(head)
            if old is not None and (
                old.size > tree.size
                or (old.size == tree.size and old.kept)
                or (old.size > 0 and tree.root(old.size).hex() != old.root)
            ):
                return
            kept, kept_end = (old.kept, old.end) if old and _holds(fs, name, old.kept) else (0, 0)
            if tree.size - kept >= SAVE_EVERY or not kept:
                fs.makedirs(name)
                _extend(fs, f"{name}/hashes", hashes.data, kept * HASH)
                for level, nodes in enumerate(tree.levels):
                    _extend(fs, f"{name}/level-{level}", nodes, (kept >> level) * HASH)
                kept, kept_end = tree.size, end
            fields = {
                "size": tree.size,
                "root": tree.root().hex(),
                "kept": kept,
                "kept_root": tree.root(kept).hex(),
                "end": kept_end,
            }
            fs.write_atomic(head.name, canonical_json(fields))
    except OSError:
        pass  # a read-only cache: the store is still checked, only not remembered


def _holds(fs: LocalFS, name: str, kept: int) -> bool:
    """The data files hold at least ``kept`` entries (appended by this code, under the lock)."""
    try:
        return fs.size(f"{name}/hashes") >= kept * HASH and all(
            fs.size(f"{name}/level-{level}") >= (kept >> level) * HASH
            for level in range(kept.bit_length())
        )
    except OSError:
        return False


def _extend(fs: LocalFS, path: str, data: bytearray, kept: int) -> None:
    with fs.open_log(path) as log:
        if log.size() != kept:  # bytes of a save that died before its head was written
            log.truncate(kept)
        log.append(memoryview(data)[kept:])
        log.sync()
