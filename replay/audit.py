"""``verify --store``: check every byte a store holds, stop at the first inconsistency.

Objects are re-hashed; the ledger's chain, entry hashes and manifest digests are checked;
every block an entry points at must match its header digest and every part its own digest;
every object a pipeline spec names must be present; every checkpoint must be signed by the
key it names and match the ledger prefix it covers. Nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from replay import keys, merkle
from replay.checkpoint import ledger_leaves, public_key_path, stored
from replay.errors import CorruptionError, NotFoundError
from replay.objects import spec_digests
from replay.store import Store


def verify_store(store: Store, progress: Callable[[str], None] | None = None) -> dict[str, int]:
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
            for digest in spec_digests(json.loads(store.get_object(m["version"]))):
                _require(store, digest, f"pipeline version {m['version']}")
    tick("checkpoints")
    checkpoints = _verify_checkpoints(store)
    return {"objects": objects, "runs": runs, "blocks": len(blocks), "checkpoints": checkpoints}


def _require(store: Store, digest: str, who: str) -> None:
    if not store.objects.has(digest):
        raise NotFoundError(f"object {digest} named by {who} is missing from the store",
                            hint="restore it from a backup or an evidence bundle")


def _verify_checkpoints(store: Store) -> int:
    found = stored(store)
    if not found:
        return 0
    leaves = ledger_leaves(store)
    for path, cp in found:
        try:
            pem = public_key_path(store, cp.key_id).read_bytes()
        except FileNotFoundError:
            raise CorruptionError(str(path), f"signed by unknown key {cp.key_id}") from None
        if not cp.verify(keys.load_public(pem)):
            raise CorruptionError(str(path), "signature does not verify")
        if cp.tree_size > len(leaves):
            raise CorruptionError(str(path), f"covers {cp.tree_size} entries but the ledger "
                                  f"has only {len(leaves)}: entries were removed")
        if "sha256:" + merkle.root(leaves[:cp.tree_size]).hex() != cp.root:
            raise CorruptionError(str(path), "its root does not match the ledger: an entry "
                                  f"among the first {cp.tree_size} was changed")
    return len(found)
