"""Witnesses: independent cosigners of a store's checkpoints (Certificate Transparency's
witness model).

A witness keeps, in a state folder of its own (default
``$XDG_CONFIG_HOME/pipeline-replay/witness/``), the last tree head it signed for each store
(one file per checkpoint key id + store location). ``cosign`` reads the store's latest
checkpoint, checks its signature against a *pinned* key (trust store or
REPLAY_TRUSTED_KEYS, or one key given for the call; never the key the store carries), proves
it consistent with that last head (RFC 9162 consistency proof computed from the store's
ledger), and only then signs a cosignature, kept in the store as
``witnesses/<checkpoint file stem>.<witness key id, 12 hex>.json``. A smaller head
(rollback) or one whose tree does not extend the last one (rewritten history) is refused.

``require`` counts the valid cosignatures of the latest checkpoint by distinct pinned keys
other than the checkpoint's own (``verify --store --witnesses N``).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from replay.core import keys, trust
from replay.core.digest import canonical_json, sha256
from replay.core.fsutil import fsync_dir, write_durable
from replay.core.userdirs import config_folder
from replay.errors import CorruptionError, NotFoundError, StoreError, UntrustedSignerError
from replay.store import checkpoint
from replay.store.checkpoint import Checkpoint
from replay.store.store import Store

FOLDER = "witnesses"


class InconsistentHeadError(CorruptionError):
    """The store's latest checkpoint does not extend the head this witness last signed: the
    history was rewritten or rolled back (exit 9). Nothing is cosigned."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(
            path,
            message,
            hint="do not cosign: ask the store's owner why its "
            "history changed; the witness state keeps the last head signed",
        )


class UntrustedHeadError(UntrustedSignerError):
    """The checkpoint to cosign is not signed by a pinned key (exit 14)."""

    def __init__(self, where: str, signer: str, pinned: tuple[str, ...]) -> None:
        UntrustedSignerError.__init__(self, signer, pinned)
        which = (
            f"none of the pinned keys ({', '.join(pinned)})"
            if pinned
            else "and no key is pinned (trust store empty, REPLAY_TRUSTED_KEYS unset)"
        )
        self.message = f"{where}: signer not trusted: {signer} signed this checkpoint, {which}"
        self.args = (self.message,)
        self.hint = (
            "a witness never trusts the key a store carries: pin the store's "
            "checkpoint key (`replay trust add KEY.pub --name NAME`, or --signer)"
        )


class TooFewWitnessesError(CorruptionError):
    """Fewer valid cosignatures by distinct pinned witnesses than required (verify: exit 1)."""

    def __init__(self, path: str, found: int, required: int, skipped: list[str]) -> None:
        why = f" (not counted: {'; '.join(skipped)})" if skipped else ""
        super().__init__(
            path,
            f"{found} valid cosignature{'s' * (found != 1)} by pinned "
            f"witnesses, {required} required{why}",
            hint="have witnesses run `replay witness cosign`, and pin their "
            "public keys (`replay trust add`)",
        )
        self.found = found
        self.required = required


@dataclass(frozen=True)
class Cosignature:
    tree_size: int
    root: str
    checkpoint_key_id: str
    witness_key_id: str
    timestamp: str
    signature: str = ""

    def body(self) -> bytes:
        return canonical_json(
            {
                "format": 1,
                "kind": "pipeline-replay witness cosignature",
                "tree_size": self.tree_size,
                "root": self.root,
                "checkpoint_key_id": self.checkpoint_key_id,
                "witness_key_id": self.witness_key_id,
                "timestamp": self.timestamp,
            }
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def verify(self, key: Ed25519PublicKey) -> bool:
        return keys.signed_by(key, self.witness_key_id, self.signature, self.body())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cosignature:
        return cls(
            int(data["tree_size"]),
            str(data["root"]),
            str(data["checkpoint_key_id"]),
            str(data["witness_key_id"]),
            str(data["timestamp"]),
            str(data["signature"]),
        )


def state_folder() -> Path:
    return config_folder() / "witness"


def latest(store: Store) -> tuple[str, Checkpoint]:
    """The store's latest checkpoint, and where it is kept: the largest tree, the newest
    among equals."""
    found = list(checkpoint.kept(store.fs))  # smallest tree first
    if not found:
        raise NotFoundError(
            f"store {store.url} holds no checkpoint",
            hint="the store's owner signs one with `replay checkpoint`",
        )
    top = [checkpoint.load(store.fs, k) for k in found if k.tree_size == found[-1].tree_size]
    return max(top, key=lambda f: f[1].timestamp)


def _pinned(signer: bytes | None = None) -> dict[str, Ed25519PublicKey]:
    """Pinned public keys by key id, read from the configuration (never from a store)."""
    if signer is not None:
        key = trust.public_key(signer, trust.PINNED)
        return {keys.key_id(key): key}
    out = {}
    for known in trust.pinned():
        assert known.path is not None  # trust store and REPLAY_TRUSTED_KEYS keys are files
        out[known.key_id] = trust.public_key(known.path.read_bytes(), str(known.path))
    return out


def _state_path(state_dir: Path, store: Store, cp: Checkpoint) -> Path:
    # A store on S3 by its endpoint and URL, not by its reader's cache folder: a witness
    # whose cache is new (an ephemeral job) must still find the last head it signed.
    where = str(store.location) if store.remote is None else store.remote.identity
    return state_dir / f"{cp.key_id[7:23]}-{sha256(where.encode())[7:23]}.json"


def _last_head(path: Path) -> Checkpoint | None:
    try:
        return Checkpoint.from_json(json.loads(path.read_bytes())["checkpoint"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise CorruptionError(
            str(path),
            "is not a witness state file",
            hint="restore it from a backup: without it this witness "
            "cannot tell a rewritten history",
        ) from None


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write_durable(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), data)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _check_growth(store: Store, where: str, old: Checkpoint, new: Checkpoint) -> None:
    if new.tree_size < old.tree_size:
        raise InconsistentHeadError(
            where,
            f"covers {new.tree_size} entries, but this witness "
            f"already signed a head of {old.tree_size}: the history "
            "was rolled back",
        )
    if old.tree_size == 0:
        return
    try:
        proof = checkpoint.prove_growth(store, old, new)
    except ValueError:  # the ledger holds fewer entries than the old head
        proof = None
    if proof is None or not checkpoint.grew(old, new, proof):
        raise InconsistentHeadError(
            where,
            f"its tree of {new.tree_size} entries does not "
            f"extend the head of {old.tree_size} entries this witness "
            "signed: the history was rewritten",
        )


def cosign(
    store: Store,
    private: Ed25519PrivateKey,
    state_dir: Path | None = None,
    *,
    signer: bytes | None = None,
    now: datetime | None = None,
) -> tuple[Cosignature, str]:
    """Cosign the store's latest checkpoint once it is proven to extend the last head this
    witness signed; returns the cosignature and where it was written (a path, or a URL)."""
    path, cp = latest(store)
    pinned = _pinned(signer)
    if cp.key_id not in pinned:
        raise UntrustedHeadError(path, cp.key_id, tuple(pinned))
    if not cp.verify(pinned[cp.key_id]):
        raise CorruptionError(path, "signature does not verify with the pinned key")
    state_dir = state_dir or state_folder()
    state = _state_path(state_dir, store, cp)
    old = _last_head(state)
    if old is not None:
        _check_growth(store, path, old, cp)
    else:  # first sight: at least the head must be the ledger's own
        tree = checkpoint.ledger_tree(store, cp.tree_size)
        if tree.size != cp.tree_size or checkpoint.hexroot(tree) != cp.root:
            raise CorruptionError(path, "its root does not match the store's ledger")
    witness_kid = keys.key_id(private.public_key())
    unsigned = Cosignature(
        cp.tree_size, cp.root, cp.key_id, witness_kid, (now or datetime.now(UTC)).isoformat()
    )
    cosig = Cosignature(
        **{
            **asdict(unsigned),
            "signature": base64.b64encode(private.sign(unsigned.body())).decode(),
        }
    )
    # The state first: a head this witness signed is never forgotten, even if publishing fails.
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(
        state,
        canonical_json(
            {
                "format": 1,
                "store": str(store.location),
                "checkpoint": cp.as_json(),
                "cosignature": cosig.as_json(),
            }
        ),
        0o600,
    )
    name = f"{FOLDER}/{_stem(path)}.{witness_kid[7:19]}.json"
    try:
        store.fs.write_atomic(name, canonical_json(cosig.as_json()))
    except OSError as exc:
        raise StoreError(
            f"cannot write the cosignature into {store.fs.where(FOLDER)}: {exc.strerror}",
            hint="a witness needs write access to the store's witnesses/ folder",
        ) from None
    return cosig, store.fs.where(name)


def _stem(where: str) -> str:
    """The checkpoint kept at ``where``, a path or a URL, by the name its cosignatures' file
    names begin with (only the last part is read: no slash is lost)."""
    return PurePosixPath(where).stem


def cosignatures(store: Store, where: str) -> list[tuple[str, Cosignature]]:
    """The cosignatures kept for the checkpoint kept at ``where``, by file name."""
    out = []
    for name in store.fs.list(FOLDER):
        if not (name.startswith(f"{_stem(where)}.") and name.endswith(".json")):
            continue
        path = f"{FOLDER}/{name}"
        try:
            cosig = Cosignature.from_json(json.loads(store.fs.read(path)))
        except (ValueError, KeyError, TypeError):
            raise CorruptionError(store.fs.where(path), "is not a cosignature") from None
        out.append((name, cosig))
    return out


def require(store: Store, count: int) -> int:
    """At least ``count`` valid cosignatures on the latest checkpoint, by distinct pinned
    witness keys (the trust store and REPLAY_TRUSTED_KEYS; the checkpoint's own key does not
    witness itself). Returns how many there are; raises TooFewWitnessesError."""
    path, cp = latest(store)
    pinned = _pinned()
    valid: set[str] = set()
    skipped: list[str] = []
    for name, cosig in cosignatures(store, path):
        key = pinned.get(cosig.witness_key_id)
        if cosig.witness_key_id == cp.key_id:
            skipped.append(f"{name}: by the checkpoint's own key")
        elif key is None:
            skipped.append(f"{name}: witness {cosig.witness_key_id} is not pinned")
        elif (cosig.tree_size, cosig.root, cosig.checkpoint_key_id) != (
            cp.tree_size,
            cp.root,
            cp.key_id,
        ):
            skipped.append(f"{name}: for another tree head")
        elif not cosig.verify(key):
            skipped.append(f"{name}: signature does not verify")
        else:
            valid.add(cosig.witness_key_id)
    if len(valid) < count:
        raise TooFewWitnessesError(path, len(valid), count, skipped)
    return len(valid)
