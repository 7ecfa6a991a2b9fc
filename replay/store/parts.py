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


def parts(fs: StoreFS) -> list[Part]:
    """Every part on the store (other names in the folder are not parts)."""
    found = (_NAME.fullmatch(name) for name in fs.list(FOLDER))
    return sorted(Part(int(m[1]), int(m[2])) for m in found if m and int(m[1]) < int(m[2]))


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


def frontier(fs: StoreFS) -> int:
    """Where the chain of parts ends: a new catalog keeps records rows from there."""
    have = chain(parts(fs))
    return have[-1].stop if have else 0
