"""Signed tree heads: the ledger's size and Merkle root at a moment, signed with Ed25519.

Checkpoints are kept in ``checkpoints/`` (with the public keys that signed them in
``keys/``). Two checkpoints prove the ledger only grew when a consistency proof between
their trees verifies.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from replay.core import keys, merkle
from replay.core.digest import canonical_json
from replay.errors import CorruptionError, NotFoundError
from replay.store.fs import LocalFS, StoreFS

if TYPE_CHECKING:  # the store's sealer signs checkpoints too (replay.store.seals)
    from replay.store.store import Store

FOLDER = "checkpoints"
AHEAD = 1000  # checkpoints a read looks at for one that covers a run (see largest)
_NAME = re.compile(r"(\d{12})-([0-9a-f]{12})-[^/]+\.json")  # see name_of


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root: str
    timestamp: str
    key_id: str
    signature: str = ""

    def body(self) -> bytes:
        return canonical_json(
            {
                "format": 1,
                "tree_size": self.tree_size,
                "root": self.root,
                "timestamp": self.timestamp,
                "key_id": self.key_id,
            }
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def verify(self, key: Ed25519PublicKey) -> bool:
        return keys.signed_by(key, self.key_id, self.signature, self.body())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(
            int(data["tree_size"]),
            str(data["root"]),
            str(data["timestamp"]),
            str(data["key_id"]),
            str(data["signature"]),
        )


def ledger_tree(store: Store, size: int | None = None) -> merkle.Tree:
    """The Merkle tree of the ledger's entries (each entry's canonical bytes a leaf), or of
    its first ``size``: one read of the ledger; roots and proofs then cost O(log n) each."""
    tree = merkle.Tree()
    for _, entry in store.ledger.read():
        if size is not None and tree.size == size:
            break
        tree.append(merkle.leaf_hash(canonical_json(entry)))
    return tree


def hexroot(tree: merkle.Tree, size: int | None = None) -> str:
    return "sha256:" + tree.root(size).hex()


def sign(
    store: Store,
    private: Ed25519PrivateKey,
    tree: merkle.Tree | None = None,
    now: datetime | None = None,
) -> Checkpoint:
    """Sign the current tree head and keep it (and the public key) in the store."""
    tree = ledger_tree(store) if tree is None else tree
    cp = signed(private, tree.size, hexroot(tree), now)
    keep(store.fs, cp, keys.public_pem(private.public_key()))
    return cp


def signed(
    private: Ed25519PrivateKey, size: int, root: str, now: datetime | None = None
) -> Checkpoint:
    """The tree head (``size``, ``root``) signed with ``private``."""
    unsigned = Checkpoint(
        size, root, (now or datetime.now(UTC)).isoformat(), keys.key_id(private.public_key())
    )
    signature = base64.b64encode(private.sign(unsigned.body())).decode()
    return Checkpoint(**{**asdict(unsigned), "signature": signature})


def keep(fs: StoreFS, cp: Checkpoint, public_pem: bytes) -> None:
    """Keep ``cp`` in the store's ``checkpoints/``, and the public key that signed it, so the
    store can check its own checkpoints (public keys are not secret)."""
    name = key_name(cp.key_id)
    if not fs.exists(name):
        fs.write_atomic(name, public_pem)
    fs.put_if_absent(name_of(cp), canonical_json(cp.as_json()))


def name_of(cp: Checkpoint) -> str:
    """Where the store keeps ``cp``."""
    stamp = cp.timestamp.replace(":", "")
    return f"{FOLDER}/{cp.tree_size:012d}-{cp.key_id[7:19]}-{stamp}.json"


def key_name(key_id: str) -> str:
    """Where the store keeps the public key ``key_id`` names."""
    return f"keys/{key_id[7:]}.pub"


def public_key_pem(store: Store, key_id: str) -> bytes:
    """The public key ``key_id`` the store keeps (FileNotFoundError when it has none)."""
    return store.fs.read(key_name(key_id))


@dataclass(frozen=True)
class Kept:
    """A checkpoint the store keeps, known by its name alone (``name_of``): a store signed at
    every sealing epoch keeps 86,400 a day, so a read picks the one it needs by name and
    reads only that one (``load``)."""

    path: str
    tree_size: int
    signer: str  # the first 12 hex digits of its key id

    def by(self, key_ids: Collection[str]) -> bool:
        return any(k[7:19] == self.signer for k in key_ids)


def kept(fs: StoreFS, covering: int = 0) -> Iterator[Kept]:
    """The checkpoints in ``checkpoints/`` of trees of ``covering`` entries or more, by name
    (nothing read), smallest tree first (names sort by it), as they are listed."""
    start = f"{covering:012d}" if covering else ""  # sorts before that size's names
    for name in fs.names(FOLDER, start_after=start):
        if m := _NAME.fullmatch(name):
            yield Kept(f"{FOLDER}/{name}", int(m[1]), m[2])


def load(fs: StoreFS, kept: Kept) -> tuple[str, Checkpoint]:
    """The checkpoint ``kept`` names and where it is, checked to be what its name says."""
    where = fs.where(kept.path)
    try:
        cp = Checkpoint.from_json(json.loads(fs.read(kept.path)))
    except (ValueError, KeyError, TypeError):
        raise CorruptionError(where, "is not a checkpoint") from None
    if (cp.tree_size, cp.key_id[7:19]) != (kept.tree_size, kept.signer):
        raise CorruptionError(where, "is not the checkpoint its name says")
    return where, cp


def largest(
    fs: StoreFS, key_ids: Collection[str], covering: int = 0, ahead: int = AHEAD
) -> tuple[str, Checkpoint] | None:
    """Of the first ``ahead`` checkpoints covering ``covering`` entries, the one of the
    largest tree signed by one of ``key_ids`` (else the first such after them), and where it
    is; only it is read. None when there is none. The first ``ahead``: one listing request
    on object storage, where a run sealed long ago has a checkpoint after every epoch since."""
    listed = kept(fs, covering)
    first = sorted(itertools.islice(listed, ahead), key=_order, reverse=True)
    for k in itertools.chain(first, listed):
        if k.by(key_ids) and (found := load(fs, k))[1].key_id in key_ids:
            return found
    return None


def _order(k: Kept) -> tuple[int, str]:
    return k.tree_size, k.path  # the newest last among equals (names end with the time)


def stored(store: Store) -> list[tuple[str, Checkpoint]]:
    """The store's checkpoints, each with where it is kept: a file's path, or its ``s3://``
    URL (a string: a ``Path`` would fold the URL's ``//`` into one slash)."""
    out = []
    for name in store.fs.list(FOLDER):
        if not name.endswith(".json"):
            continue
        path = f"{FOLDER}/{name}"
        where = store.fs.where(path)
        try:
            out.append((where, Checkpoint.from_json(json.loads(store.fs.read(path)))))
        except (ValueError, KeyError, TypeError):
            raise CorruptionError(where, "is not a checkpoint") from None
    return out


def prove_growth(store: Store, old: Checkpoint, new: Checkpoint) -> list[str]:
    """The consistency proof from ``old`` to ``new`` (hex), computed from the ledger."""
    tree = ledger_tree(store, new.tree_size)
    return [h.hex() for h in tree.consistency_proof(old.tree_size)]


def grew(old: Checkpoint, new: Checkpoint, proof: list[str]) -> bool:
    """True when ``new``'s tree extends ``old``'s: the ledger only grew in between."""
    if old.tree_size == 0:
        return not proof
    return merkle.verify_consistency(
        old.tree_size,
        new.tree_size,
        bytes.fromhex(old.root[7:]),
        bytes.fromhex(new.root[7:]),
        [bytes.fromhex(h) for h in proof],
    )


def write_head(cp: Checkpoint, path: Path) -> None:
    """A signed tree head in a file of its own, to keep outside the store."""
    LocalFS(path.parent).write_atomic(path.name, canonical_json(cp.as_json()))


def read_head(path: Path) -> Checkpoint:
    try:
        return Checkpoint.from_json(json.loads(LocalFS(path.parent).read(path.name)))
    except FileNotFoundError:
        raise NotFoundError(f"no checkpoint file {path}") from None
    except (ValueError, KeyError, TypeError):
        raise CorruptionError(str(path), "is not a checkpoint") from None
