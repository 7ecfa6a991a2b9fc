"""What the last ``verify --store`` of a store proved, kept in the user's cache beside the
verified history (``verified``) so that ``verify --store --skip-verified`` re-reads only what
was added since.

    verified/<name>.audit.json   one record, replaced atomically under verified/<name>.lock

The record names the ledger prefix verified (its entry count, Merkle root, the hash of its
last entry, the offset just past it and the sha256 of its bytes), the blocks verified (how
many, and how far into each segment log they reach), the objects re-hashed, and when the full
pass that the record builds on ran. It is the user's record, outside the store, and carries
its own digest: a record that is damaged, unreadable or of another shape vouches for nothing
(the next verification is a full one).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from replay.core.digest import canonical_json, sha256
from replay.store.fs import LocalFS

FORMAT = 1


@dataclass(frozen=True)
class Audit:
    full_at: str  # when the full pass this record builds on ran (ISO 8601, UTC)
    size: int  # ledger entries verified
    root: str  # hex Merkle root of those entries
    last: str  # the hash of entry ``size`` (GENESIS for none)
    end: int  # the ledger offset just past entry ``size``
    ledger: str  # sha256 of the ledger's bytes [0, end)
    blocks: int  # blocks whose every part was re-hashed
    extents: dict[str, int]  # segment log -> bytes from its start that those blocks reach
    objects: tuple[str, ...]  # digests of the objects re-hashed, sorted


def path_of(verified_head: Path) -> Path:
    """The record beside the verified history's head ``verified/<name>.json``."""
    return verified_head.with_name(f"{verified_head.stem}.audit.json")


def load(path: Path) -> Audit | None:
    """The record kept at ``path``, or None (none, or one that does not check out)."""
    try:
        fields = json.loads(LocalFS(path.parent).read(path.name))
        seal = fields.pop("check")
        if fields.pop("format") != FORMAT or seal != sha256(canonical_json(fields)):
            return None
        audit = Audit(**{**fields, "objects": tuple(fields["objects"])})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return audit if _sound(audit) else None


def _sound(audit: Audit) -> bool:
    counts = (audit.size, audit.end, audit.blocks, *audit.extents.values())
    texts = (audit.full_at, audit.root, audit.last, audit.ledger, *audit.objects)
    return all(type(n) is int and n >= 0 for n in counts) and all(isinstance(t, str) for t in texts)


def save(path: Path, audit: Audit, *, full: bool) -> None:
    """Keep ``audit``: always after a ``full`` pass (the whole store, as it is now), else
    unless another process kept one of a longer ledger meanwhile. Nothing is kept where the
    cache cannot be written (the store was still checked)."""
    fs = LocalFS(path.parent)
    body = {**asdict(audit), "objects": list(audit.objects)}
    fields = {"format": FORMAT, **body, "check": sha256(canonical_json(body))}
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with fs.locked(path.name.replace(".audit.json", ".lock")):
            old = load(path)
            if not full and old is not None and old.size > audit.size:
                return
            fs.write_atomic(path.name, canonical_json(fields))
    except OSError:
        pass
