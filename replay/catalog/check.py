"""``verify --store``: check every byte a store holds, stop at the first inconsistency.

Objects are re-hashed; the ledger's chain, entry hashes and manifest digests are checked;
every block an entry points at must match its header digest and every part its own digest;
every object a pipeline spec names must be present; every checkpoint must be signed by the
key it names and match the ledger prefix it covers; the catalog must agree with the ledger.
Nothing is unpickled. The ledger is read once: its chain, its Merkle tree (kept as the
verified history, ``history.adopt``), its blocks and the catalog's rows are checked in one
pass, each block opened once.

What a verification proved is kept in the user's cache (``audited``); with ``skip_verified``
a later one re-reads only what was added since. It gives up re-reading bytes verified
then (a bit flipped since in an old block or object is not seen until a full pass; replay
and export still check every hash they use), so it is never the default. What it keeps
checking: the ledger's bytes up to where the last verification stopped must hash as they
did then and the Merkle tree this user verified must have the root kept (a line rewritten,
removed or cut is refused), every checkpoint's root against that tree (O(log n) each), and
everything added since, as a full pass would.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

from replay.catalog.truth import Comparison, compared
from replay.core import keys, merkle
from replay.core.manifest import Spec, decode
from replay.errors import (
    CatalogError,
    CorruptionError,
    NotFoundError,
    ReplayError,
    UntrustedSignerError,
)
from replay.store import audited, history, mirror, seals, verified
from replay.store.checkpoint import Checkpoint, grew, hexroot, public_key_pem, stored
from replay.store.fs import LocalFS
from replay.store.ledger import GENESIS, canonical_entry
from replay.store.ledger import NAME as LEDGER
from replay.store.segments import Block
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
    skip_verified: bool = False,
) -> dict[str, Any]:
    """Check the whole store. ``signers`` (key ids) pins who may sign its checkpoints: then
    at least one checkpoint is required and every one must be signed by a pinned key (an
    empty tuple: nothing pinned, every checkpoint is refused as untrusted). ``head`` is a
    signed tree head kept outside the store: the ledger must have grown from it.

    ``skip_verified``: re-read only what was added since the last verification this user
    kept (``audited``): its ledger prefix is re-hashed as bytes against the digest kept and
    the Merkle root kept, its blocks and objects are not re-read (``earlier`` in the result
    says what was taken from it). Without a sound record, everything is re-read."""
    tick = progress or (lambda _: None)
    sealing = None
    if store.remote is not None:
        tick("sealing epochs and writers' logs")
        sealing = _verify_sealing(store)
    record = audited.path_of(history.cache_path(store))
    earlier = audited.load(record) if skip_verified else None
    tick("objects")
    present, rehashed = _verify_objects(store, earlier)
    tick("ledger")
    walk = _Walk(store, present, earlier)
    tick("ledger, blocks and catalog")
    with ExitStack() as stack:
        catalog = _Catalog(stack, store, walk.seq)
        walk.run(catalog)
        catalog_note = catalog.result()
    tree = walk.tree
    if tree is None:
        tree = history.verified_tree(store)
        assert earlier is not None
        _extends(store, tree, earlier)
    else:
        history.adopt(store, walk.end, walk.hashes, tree)
    tick("checkpoints")
    checkpoints = _verify_checkpoints(store, tree, signers)
    if head is not None:
        _verify_head(store, tree, head, signers)
    audited.save(record, walk.audit(tree, present), full=earlier is None)
    counts: dict[str, Any] = {
        "objects": rehashed,
        "runs": walk.seq,
        "blocks": walk.blocks,
        "checkpoints": checkpoints,
        "catalog": catalog_note,
        "mode": "skip-verified" if earlier else "full",
        "earlier": _earlier(earlier),
    }
    if sealing is not None:
        counts["sealing"] = sealing
    if skip_verified and earlier is None:
        counts["note"] = "no sound record of an earlier verification: everything was re-read"
    return counts


def _verify_sealing(store: Store) -> dict[str, Any]:
    """On object storage: the epochs seal exactly the writers' logs (``seals.audit``), and
    the local mirror's ledger, which the rest of the pass reads, is theirs byte for byte."""
    assert store.remote is not None
    mirror.update(LocalFS(store.root), store.remote)
    audit = seals.audit(store.remote)
    digest, left = hashlib.sha256(), audit.ledger_bytes
    with store.fs.open_read(LEDGER) as f:
        while left and (chunk := f.read(min(left, 1 << 20))):
            digest.update(chunk)
            left -= len(chunk)
    if left or "sha256:" + digest.hexdigest() != audit.ledger_sha256:
        raise CorruptionError(
            store.fs.where(LEDGER),
            "this mirror of the store's ledger differs from its sealed epochs: delete the "
            "folder holding it (it is rebuilt from the bucket)",
        )
    return {
        "epochs": audit.epochs,
        "writers": audit.writers,
        "sealed": audit.runs,
        "unsealed": audit.unsealed,
    }


def _earlier(earlier: audited.Audit | None) -> dict[str, Any] | None:
    """What was taken from the earlier verification instead of re-read."""
    if earlier is None:
        return None
    return {
        "verified_at": earlier.full_at,
        "runs": earlier.size,
        "ledger_bytes": earlier.end,
        "blocks": earlier.blocks,
        "segment_bytes": sum(earlier.extents.values()),
        "objects": len(earlier.objects),
    }


def _verify_objects(store: Store, earlier: audited.Audit | None) -> tuple[set[str], int]:
    """Every object present, each re-hashed unless ``earlier`` verified it (then it must
    still be there); the digests present and how many were re-hashed."""
    present = {digest for digest, _path in store.objects}
    kept = set(earlier.objects) if earlier else set()
    for digest in sorted(kept - present):
        _require(present, digest, "the earlier verification")
    for digest in present - kept:
        store.get_object(digest)  # re-hashes; raises CorruptionError naming the file
    return present, len(present - kept)


class _Walk:
    """One pass over the ledger from where the earlier verification stopped (the start, for a
    full one): each entry's chain link and hash, its block (every part re-hashed once), its
    manifest, the objects it names, its catalog rows; the ledger's bytes are hashed as read."""

    def __init__(self, store: Store, present: set[str], earlier: audited.Audit | None) -> None:
        self.store, self.present, self.earlier = store, present, earlier
        self.digest = hashlib.sha256()
        self.end, self.seq, self.last = 0, 0, GENESIS
        self.hashes = verified.Hashes()
        self.tree: merkle.Tree | None = merkle.Tree()
        self.blocks, self.extents = 0, dict(earlier.extents) if earlier else {}
        self.specs: set[str] = set()
        if earlier is not None:
            self._resume(earlier)

    def _resume(self, earlier: audited.Audit) -> None:
        """The ledger still starts with the bytes verified then."""
        size = self.store.ledger.size()
        where = str(self.store.ledger.path)
        if size < earlier.end:
            raise CorruptionError(
                where,
                f"is {size} bytes, shorter than the {earlier.end} verified on "
                f"{earlier.full_at}: entries were removed",
            )
        with self.store.fs.open_read(LEDGER) as f:
            left = earlier.end
            while left and (chunk := f.read(min(left, 1 << 20))):
                self.digest.update(chunk)
                left -= len(chunk)
        if self.digest.hexdigest() != earlier.ledger:
            raise CorruptionError(
                where,
                f"its first {earlier.size} entries are not the ones verified on "
                f"{earlier.full_at}: the history was rewritten",
                hint="`replay verify --store` (without --skip-verified) names the entry",
            )
        self.end, self.seq, self.last, self.tree = earlier.end, earlier.size, earlier.last, None

    def run(self, catalog: _Catalog) -> None:
        chain = self.store.ledger.chain(self.end, self.seq, self.last, self.digest.update)
        seen: set[tuple[str, int]] = set()
        for pos, entry, block, body in self.store.manifests(self.end, chain):
            ref = entry["block"]
            if (ref["segment"], ref["offset"]) not in seen:
                seen.add((ref["segment"], ref["offset"]))
                for idx in range(block.part_count):
                    block.part(idx)
                reach = ref["offset"] + ref["length"]
                self.extents[ref["segment"]] = max(self.extents.get(ref["segment"], 0), reach)
            manifest = _parsed(body)
            self._require_objects(manifest)
            catalog.entry(entry, manifest, block)
            if self.tree is not None:
                self.hashes.append(entry["hash"])
                self.tree.append(merkle.leaf_hash(canonical_entry(entry)))
            self.end, self.seq, self.last = pos, entry["seq"], entry["hash"]
        self.blocks = len(seen)

    def _require_objects(self, m: dict[str, Any]) -> None:
        for digest in (m["version"], m["env"]):
            _require(self.present, digest, f"run {m['run_id']}")
        if m["version"] not in self.specs:
            self.specs.add(m["version"])
            spec = decode(Spec, self.store.get_object(m["version"]), m["version"])
            for digest in spec.objects():
                _require(self.present, digest, f"pipeline version {m['version']}")

    def audit(self, tree: merkle.Tree, present: set[str]) -> audited.Audit:
        """What this walk and the verification it extends proved, to keep."""
        return audited.Audit(
            full_at=self.earlier.full_at if self.earlier else datetime.now(UTC).isoformat(),
            size=self.seq,
            root=tree.root(self.seq).hex(),
            last=self.last,
            end=self.end,
            ledger=self.digest.hexdigest(),
            blocks=self.blocks + (self.earlier.blocks if self.earlier else 0),
            extents=self.extents,
            objects=tuple(sorted(present)),
        )


def _parsed(body: bytes) -> dict[str, Any]:
    """A manifest's JSON: orjson's (5x faster), json's where orjson refuses what json reads
    (integers past 64 bits)."""
    try:
        parsed: dict[str, Any] = orjson.loads(body)
    except ValueError:
        parsed = json.loads(body)
    return parsed


def _extends(store: Store, tree: merkle.Tree, earlier: audited.Audit) -> None:
    """The ledger's Merkle tree (as this user verified it) has, at the size verified then,
    the root kept then."""
    if tree.size < earlier.size or tree.root(earlier.size).hex() != earlier.root:
        raise CorruptionError(
            str(store.ledger.path),
            f"its first {earlier.size} entries do not have the Merkle root verified on "
            f"{earlier.full_at}: the history was rewritten",
        )


class _Catalog:
    """The catalog compared along the walk. The files are the truth and the catalog only an
    index: a catalog that cannot be opened is said so, not a failure, and a disagreement
    waits until every file has been checked."""

    def __init__(self, stack: ExitStack, store: Store, after: int) -> None:
        self.comparison: Comparison | None = None
        self.note = ""
        self.failure: ReplayError | None = None
        self.after = after
        with self._guarded():
            self.comparison = stack.enter_context(compared(store, after))

    def entry(self, entry: dict[str, Any], manifest: dict[str, Any], block: Block) -> None:
        if self.comparison is not None:
            with self._guarded():
                self.comparison.entry(entry, manifest, block)

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        import duckdb

        try:
            yield
        except (duckdb.Error, CatalogError) as exc:
            self.note, self.comparison = f"not checked ({str(exc).splitlines()[0]})", None
        except (CorruptionError, NotFoundError) as exc:
            self.failure, self.comparison = exc, None

    def result(self) -> str:
        """What the comparison found; its first disagreement raises here."""
        count = None
        if self.comparison is not None:
            with self._guarded():
                count = self.comparison.finish()
        if self.failure is not None:
            raise self.failure
        if count is None:
            return self.note
        if self.after:
            return f"{count} runs past entry {self.after} match the ledger"
        return f"{count} runs match the ledger"


def _require(present: set[str], digest: str, who: str) -> None:
    if digest not in present:
        raise NotFoundError(
            f"object {digest} named by {who} is missing from the store",
            hint="restore it from a backup or an evidence bundle",
        )


def _verify_checkpoints(
    store: Store, tree: merkle.Tree, signers: tuple[str, ...] | None = None
) -> int:
    found = stored(store)
    if not found:
        if signers:
            raise CorruptionError(
                store.fs.where("checkpoints"),
                "holds no checkpoint: nothing signed by the pinned key "
                f"({', '.join(signers)}) vouches for this history",
            )
        return 0
    for path, cp in found:
        _require_pinned(path, cp.key_id, signers)
        try:
            pem = public_key_pem(store, cp.key_id)
        except FileNotFoundError:
            raise CorruptionError(path, f"signed by unknown key {cp.key_id}") from None
        if not cp.verify(keys.load_public(pem)):
            raise CorruptionError(path, "signature does not verify")
        if cp.tree_size > tree.size:
            raise CorruptionError(
                path,
                f"covers {cp.tree_size} entries but the ledger "
                f"has only {tree.size}: entries were removed",
            )
        if hexroot(tree, cp.tree_size) != cp.root:
            raise CorruptionError(
                path,
                "its root does not match the ledger: an entry "
                f"among the first {cp.tree_size} was changed",
            )
    return len(found)


def _require_pinned(where: str, key_id: str, signers: tuple[str, ...] | None) -> None:
    if signers is not None and key_id not in signers:
        raise UntrustedCheckpointError(where, key_id, signers)


def _verify_head(
    store: Store,
    tree: merkle.Tree,
    head: Checkpoint,
    signers: tuple[str, ...] | None,
    where: str = "--checkpoint",
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
