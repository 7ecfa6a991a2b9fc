"""The compacted parts a store holds: Parquet files of record keys, each for the runs with
ledger sequence numbers in [start, stop) (written by replay.catalog.compact)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from replay.store.fs import StoreFS

FOLDER = "compacted"
_NAME = re.compile(r"(\d{12})-(\d{12})\.parquet")


@dataclass(frozen=True, order=True)
class Part:
    start: int
    stop: int

    @property
    def path(self) -> str:
        return f"{FOLDER}/{self.start:012d}-{self.stop:012d}.parquet"

    def covers(self, other: Part) -> bool:
        """Whether this is another part holding every run ``other`` holds."""
        return self != other and self.start <= other.start and other.stop <= self.stop


def _named(name: str) -> Part | None:
    """The part a file name in the folder names (other names are not parts)."""
    m = _NAME.fullmatch(name)
    return Part(int(m[1]), int(m[2])) if m and int(m[1]) < int(m[2]) else None


def parts(fs: StoreFS) -> list[Part]:
    """Every part on the store."""
    return sorted(p for p in map(_named, fs.list(FOLDER)) if p)


def written(fs: StoreFS) -> dict[Part, int]:
    """Every part on the store and when it was written, in ns on the store's clock."""
    named = ((_named(name), ns) for name, ns in fs.mtimes(FOLDER).items())
    return {part: ns for part, ns in named if part}


def chain(found: list[Part]) -> list[Part]:
    """The parts covering [0, end) with no gap, each reaching as far as any part from its
    start: merged parts win over the ones they cover."""
    furthest = {part.start: part for part in sorted(found)}  # the longest from each start
    out: list[Part] = []
    at = 0
    while at in furthest:
        out.append(furthest[at])
        at = furthest[at].stop
    return out


def superseded(written: dict[Part, int]) -> dict[Part, int]:
    """The parts the chain no longer uses, each covered by a part of the chain, with when
    the first part covering it was written: a reader that listed the parts after that takes
    the covering part (or one reaching further) instead, so only one that listed them
    before may still read it."""
    used = chain(list(written))
    return {
        part: min(ns for other, ns in written.items() if other.covers(part))
        for part in written
        if part not in used and any(c.covers(part) for c in used)
    }


def frontier(fs: StoreFS) -> int:
    """Where the chain of parts ends: a new catalog keeps records rows from there."""
    have = chain(parts(fs))
    return have[-1].stop if have else 0
