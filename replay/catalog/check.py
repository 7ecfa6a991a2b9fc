"""``verify --store``: check every byte a store holds, stop at the first inconsistency.

Objects are re-hashed; the ledger's chain, entry hashes and manifest digests are checked;
every block an entry points at must match its header digest and every part its own digest;
every object a pipeline spec names must be present; every checkpoint must be signed by the
key it names and match the ledger prefix it covers. Nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replay.core import keys
from replay.core.manifest import Spec, decode
from replay.errors import CatalogError, CorruptionError, NotFoundError, UntrustedSignerError
from replay.store.checkpoint import (
    Checkpoint,
    grew,
    hexroot,
    ledger_tree,
    public_key_pem,
    stored,
)
from replay.store.store import Store


class UntrustedCheckpointError(UntrustedSignerError):
    """A checkpoint signed by a key nobody pinned (exit 14, as for a bundle)."""

    def __init__(self, where: str, signer: str, pins: tuple[str, ...]) -> None:
        UntrustedSignerError.__init__(self, signer)
        pinned = (
            f"the pinned keys are {', '.join(pins)}"
            if pins
            else "no signer is pinned (trust store empty, REPLAY_TRUSTED_KEYS unset)"
        )
        self.message = f"{where}: signer not trusted: {signer} signed this checkpoint, {pinned}"
        self.args = (self.message,)
        self.hint = (
            "pin the store's checkpoint key: `replay trust add KEY.pub --name NAME`, "
            "or --key KEY.pub for one call"
        )


def verify_store(
    store: Store,
    progress: Callable[[str], None] | None = None,
    *,
    signers: tuple[str, ...] | None = None,
    head: Checkpoint | None = None,
) -> dict[str, Any]:
    """Check the whole store. ``signers`` (key ids) pins who may sign its checkpoints: then
    at least one checkpoint is required and every one must be signed by a pinned key (an
    empty tuple: nothing pinned, every checkpoint is refused as untrusted). ``head`` is a
    signed tree head kept outside the store: the ledger must have grown from it."""
    tick = progress or (lambda _: None)
    tick("objects")
    objects = 0
    for digest, _path in store.objects:
        store.get_object(digest)  # re-hashes; raises CorruptionError naming the file
        objects += 1
    tick("ledger")
    runs = store.ledger.verify()
    tick("segments")
    blocks: set[tuple[str, int]] = set()
    specs: set[str] = set()
    for _, entry in store.entries():
        ref = entry["block"]
        if (ref["segment"], ref["offset"]) not in blocks:
            block = store.block(ref)
            for idx in range(block.part_count):
                block.part(idx)
            blocks.add((ref["segment"], ref["offset"]))
        m = entry["manifest"]
        for digest in (m["version"], m["env"]):
            _require(store, digest, f"run {m['run_id']}")
        if m["version"] not in specs:
            specs.add(m["version"])
            for digest in decode(Spec, store.get_object(m["version"]), m["version"]).objects():
                _require(store, digest, f"pipeline version {m['version']}")
    tick("checkpoints")
    checkpoints = _verify_checkpoints(store, signers)
    if head is not None:
        _verify_head(store, head, signers)
    tick("catalog")
    return {
        "objects": objects,
        "runs": runs,
        "blocks": len(blocks),
        "checkpoints": checkpoints,
        "catalog": _check_catalog(store),
    }


def _check_catalog(store: Store) -> str:
    """Compare the catalog with the ledger (a disagreement raises CorruptionError naming its
    first row). A catalog that cannot be opened here (a full disk, a read-only folder) is
    said so, not a failure: the files checked above are the truth, the catalog an index."""
    import duckdb

    from replay.catalog.truth import check_catalog

    try:
        return f"{check_catalog(store)} runs match the ledger"
    except (duckdb.Error, CatalogError) as exc:
        return f"not checked ({str(exc).splitlines()[0]})"


def _require(store: Store, digest: str, who: str) -> None:
    if not store.objects.has(digest):
        raise NotFoundError(
            f"object {digest} named by {who} is missing from the store",
            hint="restore it from a backup or an evidence bundle",
        )


def _verify_checkpoints(store: Store, signers: tuple[str, ...] | None = None) -> int:
    found = stored(store)
    if not found:
        if signers:
            raise CorruptionError(
                str(store.root / "checkpoints"),
                "holds no checkpoint: nothing signed by the pinned key "
                f"({', '.join(signers)}) vouches for this history",
            )
        return 0
    tree = ledger_tree(store)  # one pass over the ledger; each checkpoint's root then O(log n)
    for path, cp in found:
        _require_pinned(str(path), cp.key_id, signers)
        try:
            pem = public_key_pem(store, cp.key_id)
        except FileNotFoundError:
            raise CorruptionError(str(path), f"signed by unknown key {cp.key_id}") from None
        if not cp.verify(keys.load_public(pem)):
            raise CorruptionError(str(path), "signature does not verify")
        if cp.tree_size > tree.size:
            raise CorruptionError(
                str(path),
                f"covers {cp.tree_size} entries but the ledger "
                f"has only {tree.size}: entries were removed",
            )
        if hexroot(tree, cp.tree_size) != cp.root:
            raise CorruptionError(
                str(path),
                "its root does not match the ledger: an entry "
                f"among the first {cp.tree_size} was changed",
            )
    return len(found)


def _require_pinned(where: str, key_id: str, signers: tuple[str, ...] | None) -> None:
    if signers is not None and key_id not in signers:
        raise UntrustedCheckpointError(where, key_id, signers)


def _verify_head(
    store: Store, head: Checkpoint, signers: tuple[str, ...] | None, where: str = "--checkpoint"
) -> None:
    """The ledger is consistent with ``head``, a tree head kept outside the store: the first
    ``head.tree_size`` entries are the ones it signed (an RFC 9162 consistency proof)."""
    _require_pinned(where, head.key_id, signers)
    try:
        pem = public_key_pem(store, head.key_id)
    except FileNotFoundError:
        raise CorruptionError(
            where, f"signed by {head.key_id}, whose public key the store does not hold"
        ) from None
    if not head.verify(keys.load_public(pem)):
        raise CorruptionError(where, "signature does not verify")
    tree = ledger_tree(store)
    if head.tree_size > tree.size:
        raise CorruptionError(
            where,
            f"covers {head.tree_size} entries but the ledger has only "
            f"{tree.size}: the history was truncated",
        )
    now = Checkpoint(tree.size, hexroot(tree), "", "")
    proof = [] if head.tree_size == 0 else [h.hex() for h in tree.consistency_proof(head.tree_size)]
    if not grew(head, now, proof):
        raise CorruptionError(
            where,
            f"the ledger is not consistent with this head of "
            f"{head.tree_size} entries: the history was rewritten",
        )
