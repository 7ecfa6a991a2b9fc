"""``verify``, ``checkpoint`` and ``seal``: what a user runs to prove a store's or a bundle's
bytes.

``verify`` checks a bundle (``replay.evidence.verify``, which reads bytes only) or a whole
store (``replay.catalog.check``) with its signers, a head kept outside it and its witnesses;
``checkpoint`` signs the store's tree head that those checks later start from. The two meet
here, above both, because bundle verification may import nothing that opens DuckDB.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

from replay.core import keys, trust
from replay.errors import UsageError
from replay.evidence.verify import Verification, verify_bundle
from replay.store import checkpoint as checkpoints
from replay.store.checkpoint import Checkpoint
from replay.store.seals import Epoch
from replay.store.store import Store


@overload
def verify(
    target: Store,
    *,
    key: bytes | None = None,
    any_signer: bool = False,
    head: Path | None = None,
    witnesses: int = 0,
    progress: Callable[[str], None] | None = None,
    skip_verified: bool = False,
) -> dict[str, Any]: ...


@overload
def verify(
    target: Path | str, *, key: bytes | None = None, any_signer: bool = False
) -> Verification: ...


def verify(
    target: Store | Path | str,
    *,
    key: bytes | None = None,
    any_signer: bool = False,
    head: Path | None = None,
    witnesses: int = 0,
    progress: Callable[[str], None] | None = None,
    skip_verified: bool = False,
) -> dict[str, Any] | Verification:
    """Verify a bundle (a path) or a whole store, against the signer pinned by ``key`` (a
    public key PEM) or else the trust store; ``any_signer`` accepts whoever signed.

    A bundle: every byte, then its signer; never raises on a bad bundle, the returned
    ``Verification`` says what failed (``ok``, ``failure``, ``untrusted``, ``refused``).

    A store: every object, segment, manifest and checkpoint; ``head`` is a signed tree head
    kept outside it (``checkpoint(out=...)``) that the ledger must have grown from, and
    ``witnesses`` how many distinct pinned witnesses must have cosigned its latest
    checkpoint. ``skip_verified`` re-reads only what was added since the last verification
    kept in the user's cache; bytes verified then are not re-read. Returns counts of what was
    checked (``objects``, ``runs``, ``blocks``, ``checkpoints``, ``catalog``, ``witnesses``;
    ``mode`` and ``earlier``: what was taken from the earlier verification); raises
    CorruptionError at the first failure, UntrustedSignerError for a checkpoint no pinned
    key signed.
    """
    if not isinstance(target, Store):
        if head is not None or witnesses or skip_verified:
            raise UsageError(
                "a checkpoint file, witnesses and --skip-verified check a store, not a bundle"
            )
        return verify_bundle(Path(target), key, any_signer=any_signer)
    from replay.catalog.check import verify_store

    signers = None if any_signer else tuple(p.key_id for p in trust.pinned(key))
    outside = checkpoints.read_head(head) if head is not None else None
    counts = verify_store(
        target, progress, signers=signers, head=outside, skip_verified=skip_verified
    )
    if witnesses:
        from replay.evidence import witness

        counts["witnesses"] = witness.require(target, witnesses)
    return counts


def checkpoint(store: Store, key: Path | None = None, *, out: Path | None = None) -> Checkpoint:
    """Sign the store's current tree head (size and Merkle root of its ledger) with the
    private key at ``key`` (default: $REPLAY_SIGNING_KEY, else the user's signing key) and
    keep it in the store. ``out`` also writes it to a file to keep outside the store:
    ``verify(store, head=out)`` then proves the history only grew since."""
    store.sync(seal=True)  # on object storage: the head of everything recorded so far
    cp = checkpoints.sign(store, keys.load_private(key))
    if out is not None:
        checkpoints.write_head(cp, out)
    return cp


def seal(store: Store, key: Path | None = None) -> Epoch | None:
    """Seal what the writers of a store on object storage left pending (``replay.store.seals``)
    into the next epoch, its Merkle root signed with the private key at ``key`` (default:
    $REPLAY_SIGNING_KEY, else the user's signing key) and kept in ``checkpoints/``; the
    epoch, or None when nothing was pending. Safe beside any number of other sealers."""
    epoch = store.seal(keys.load_private(key))
    store.sync(seal=True)
    return epoch
