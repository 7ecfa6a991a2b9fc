"""Verified reads: nothing a run names is unpickled before its ledger entry is checked.

Before ``rebuild.load_run`` hands a run to code that unpickles, ``check_entry`` verifies the
entry's own hash, that it is the entry the verified chain holds at its sequence number (so a
rewritten line, even one whose ``hash`` field was recomputed, is refused), and, when the store
claims to be checkpointed, that a checkpoint signed by a pinned key covers it.

The verified prefix (entry hashes, the Merkle tree of the entries, the byte offset reached)
is kept per process and per store: each entry is hashed once, when first read past the
prefix; a read of a run already in the prefix costs one entry hash and a lookup. It is also
kept outside the store, in the user's cache (``verified``), once the store is checkpointed
with a pinned key or holds VERIFIED_KEPT_FROM entries: a later process starts from it
instead of hashing the ledger again, and notices a history rewritten or truncated under it.

Checkpoint coverage is required when a stored checkpoint is signed by a pinned key (trust
store, REPLAY_TRUSTED_KEYS), or when REPLAY_REQUIRE_CHECKPOINT=1: a store that claims signed
history must prove every run it replays from it (run ``replay checkpoint`` after recording).
A store nobody checkpoints with a pinned key still gets the chain check.
"""

from __future__ import annotations

import itertools
import os
import shlex
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from replay.core import keys, merkle
from replay.core.digest import sha256
from replay.core.trust import ENV as TRUST_ENV
from replay.core.userdirs import cache_folder
from replay.errors import CorruptionError, UntrustedSignerError
from replay.store import verified
from replay.store.checkpoint import FOLDER as CHECKPOINTS
from replay.store.checkpoint import kept, key_name, largest
from replay.store.ledger import GENESIS, NAME, canonical_entry, hash_holds
from replay.store.lookup import start_of
from replay.store.store import Store

REQUIRE_ENV = "REPLAY_REQUIRE_CHECKPOINT"
POLICY_EVERY = 60  # seconds: how often a read of a store on S3 looks at its checkpoints again
HASHED_KEPT = 1 << 16
# Below this many entries the whole ledger hashes in under 0.1 s: nothing is kept for it
# (unless the store is checkpointed: then its head is the user's record of its history).
VERIFIED_KEPT_FROM = 4096


@dataclass
class _Prefix:
    end: int = 0
    hashes: verified.Hashes = field(default_factory=verified.Hashes)
    tree: merkle.Tree = field(default_factory=merkle.Tree)  # of the entries verified
    covered: int = 0  # entries covered by a pinned, verified checkpoint
    # ((checkpoints/ changed, env), required, pins): re-read when a checkpoint comes or goes
    policy: tuple[tuple[int, str | None, str | None], bool, tuple[str, ...]] | None = None
    # id -> entry object already hashed, the most recent HASHED_KEPT: one forgotten is
    # hashed again (a few µs), never trusted unhashed.
    hashed: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)


_prefixes: dict[Path, _Prefix] = {}


def _prefix(store: Store) -> _Prefix:
    prefix = _prefixes.get(store.root)
    if prefix is None:
        prefix = _prefixes[store.root] = _resumed(store)
    return prefix


def _resumed(store: Store) -> _Prefix:
    """The prefix this user verified before, if the ledger still ends it with the same
    entry at the same offset; else an empty one (the ledger is hashed from the start, and
    ``_check_cache`` compares it with what was kept)."""
    kept = verified.load(cache_path(store))
    if kept is None:
        return _Prefix()
    head, hashes, tree = kept
    try:
        start = start_of(store.fs, head.end)
        line = bytes(store.fs.read_range(NAME, start, head.end - start))
        last = orjson.loads(line)
    except (OSError, ValueError):
        return _Prefix()
    if (
        not line.endswith(b"\n")
        or not isinstance(last, dict)
        or last.get("seq") != tree.size
        or last.get("hash") != hashes[-1]
        or not hash_holds(last)
    ):
        return _Prefix()
    return _Prefix(end=head.end, hashes=hashes, tree=tree)


def verified_tree(store: Store) -> merkle.Tree:
    """The Merkle tree of the whole ledger as this process verified it (hash chain, and the
    history last verified): what export proves runs in and signs, without reading the
    ledger again."""
    prefix = _prefix(store)
    _extend(store, prefix)
    return prefix.tree


def check_entry(store: Store, entry: dict[str, Any]) -> None:
    """Refuse (CorruptionError, exit 9) an entry the verified history does not hold."""
    prefix, seq, where = _in_chain(store, entry)
    if seq <= prefix.covered:
        return
    _check_coverage(store, prefix, seq, where)


def check_in_chain(store: Store, entry: dict[str, Any]) -> None:
    """``check_entry`` but for checkpoint coverage: what export checks before it signs the
    checkpoint that will cover the entry."""
    _in_chain(store, entry)


def _in_chain(store: Store, entry: dict[str, Any]) -> tuple[_Prefix, int, str]:
    prefix = _prefix(store)
    seq = entry.get("seq")
    where = f"ledger entry {seq} (run {entry.get('run_id')})"
    # Entries are immutable once read (Store.cache keeps them): each object is hashed once.
    if prefix.hashed.get(id(entry)) is not entry:
        if not isinstance(seq, int) or seq < 1 or not hash_holds(entry):
            raise CorruptionError(str(store.ledger.path), f"{where} does not match its hash")
        prefix.hashed[id(entry)] = entry
        if len(prefix.hashed) > HASHED_KEPT:
            prefix.hashed.popitem(last=False)
    assert isinstance(seq, int)
    if seq > len(prefix.hashes):
        _extend(store, prefix)
    if seq > len(prefix.hashes) or prefix.hashes[seq - 1] != entry["hash"]:
        raise CorruptionError(
            str(store.ledger.path),
            f"{where} is not the entry the hash "
            "chain holds at that position: the ledger was rewritten",
        )
    return prefix, seq, where


def _extend(store: Store, prefix: _Prefix) -> None:
    """Hash and chain-check the entries past the verified prefix."""
    size = store.ledger.size()
    if size < prefix.end:
        raise CorruptionError(
            str(store.ledger.path),
            f"is {size} bytes, shorter than the "
            f"{prefix.end} already verified: entries were removed",
        )
    prev = prefix.hashes[-1] if prefix.hashes else GENESIS
    for pos, entry in store.ledger.chain(prefix.end, len(prefix.hashes), prev):
        prefix.hashes.append(entry["hash"])
        prefix.tree.append(merkle.leaf_hash(canonical_entry(entry)))
        prefix.end = pos
    _check_cache(store, prefix)


def adopt(store: Store, end: int, hashes: verified.Hashes, tree: merkle.Tree) -> None:
    """The whole ledger, up to byte ``end``, chain-checked and hashed by the caller
    (``verify --store``): this process's verified prefix from now on, compared with the
    history this user verified before and kept like any other."""
    prefix = _prefixes.get(store.root)
    if prefix is None or prefix.tree.size < tree.size:
        prefix = _prefixes[store.root] = _Prefix(end=end, hashes=hashes, tree=tree)
    _check_cache(store, prefix)


def _check_cache(store: Store, prefix: _Prefix) -> None:
    """The history last verified (the user's record of it) must be a prefix of today's."""
    path = cache_path(store)
    kept = verified.read_head(path)
    size, root = (kept.size, kept.root) if kept is not None else (-1, "")
    done = prefix.tree.size
    if size > 0 and (size > done or prefix.tree.root(size).hex() != root):
        raise CorruptionError(
            str(store.ledger.path),
            f"its first {size} entries are not the "
            f"ones verified before ({path}): the history was rewritten or "
            "truncated",
            hint="if you replaced this store yourself (deleted "
            "and recreated it), forget what was verified of the old one: "
            f"rm -r {shlex.quote(str(path))} {shlex.quote(str(path.with_suffix('')))}",
        )
    if done and size != done and _worth_keeping(store, prefix, kept):
        verified.save(path, prefix.end, prefix.hashes, prefix.tree)


def _worth_keeping(store: Store, prefix: _Prefix, kept: verified.Head | None) -> bool:
    """A checkpointed store's head follows every verification (the user's record of its
    history); otherwise what was verified is kept from VERIFIED_KEPT_FROM entries on, by
    SAVE_EVERY entries or more (each save syncs a file per tree level)."""
    if _policy(store, prefix)[0]:
        return True
    if kept is None or not kept.kept:
        return kept is not None or prefix.tree.size >= VERIFIED_KEPT_FROM
    return prefix.tree.size - kept.kept >= verified.SAVE_EVERY


def cache_path(store: Store) -> Path:
    """Where the size and root last verified are kept: in the user's cache folder, not in the
    store (whoever may write the store must not be able to rewrite what was verified, and a
    read never changes a store)."""
    name = sha256(str(store.root.resolve()).encode())[7:]
    return cache_folder() / "verified" / f"{name}.json"


def _policy(store: Store, prefix: _Prefix) -> tuple[bool, tuple[str, ...]]:
    stamp = (_checkpoints_stamp(store), os.environ.get(TRUST_ENV), os.environ.get(REQUIRE_ENV))
    if prefix.policy is None or prefix.policy[0] != stamp:
        from replay.core import trust

        found = kept(store.fs)  # listed as far as the first pinned one
        first = next(found, None)
        pins = tuple(k.key_id for k in trust.pinned()) if first or _required_by_env() else ()
        signed = (  # none pinned: nothing to list further
            first is not None
            and bool(pins)
            and any(k.by(pins) for k in itertools.chain([first], found))
        )
        prefix.policy = (stamp, signed or _required_by_env(), pins)
    return prefix.policy[1], prefix.policy[2]


def _checkpoints_stamp(store: Store) -> int:
    """When ``checkpoints/`` last changed: a folder's time. S3 keeps none, and listing every
    checkpoint (one per signed sealing epoch) at each read would grow with the store: there,
    the minute, so that a checkpoint that comes or goes is seen within one."""
    if store.remote is not None:
        return int(time.monotonic() // POLICY_EVERY)
    return store.fs.changed(CHECKPOINTS)


def _required_by_env() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def _check_coverage(store: Store, prefix: _Prefix, seq: int, where: str) -> None:
    required, pins = _policy(store, prefix)
    if not required:
        return
    if not pins:
        error = UntrustedSignerError("nobody")
        error.message = (
            f"{where}: {REQUIRE_ENV} requires a checkpoint signed by a pinned key, "
            "and no signer is pinned (trust store empty, REPLAY_TRUSTED_KEYS unset)"
        )
        error.args = (error.message,)
        raise error
    best = largest(store.fs, pins, seq)
    if best is None:
        raise CorruptionError(
            str(store.ledger.path),
            f"{where} is covered by no checkpoint signed by a pinned key ({', '.join(pins)})",
            hint="sign one with `replay checkpoint`: this store's runs are "
            "replayed once a pinned checkpoint covers them",
        )
    path, cp = best
    if not cp.verify(keys.load_public(store.fs.read(key_name(cp.key_id)))):
        raise CorruptionError(path, "signature does not verify")
    if (
        cp.tree_size > prefix.tree.size
        or "sha256:" + prefix.tree.root(cp.tree_size).hex() != cp.root
    ):
        raise CorruptionError(
            path,
            f"its root does not match the ledger: an entry among "
            f"the first {cp.tree_size} was changed",
        )
    prefix.covered = max(prefix.covered, cp.tree_size)
