"""Whether the files a binding was captured from are still as they were.

Before each run, ``bind`` asks every watched file whether it changed since its capture: the
run then uses, and records, what is on disk when it starts. A stat tells most changes (the
identity, size and times of a file; ctime too, as ``cp -p`` keeps size and mtime). It misses
one: a rewrite that keeps the size within one tick of a coarse timestamp clock (the kernel's
tick, or a second or two on some filesystems) keeps all three times. So a small file's bytes
are hashed too, on every run, until it *settles*: once a check that began longer than
``SETTLE_NS`` after its capture's stat found it unchanged, any later write lands on a later
tick and moves its ctime, so the stat alone tells it (on a filesystem whose clock does not
step back). A large file is never hashed on a run: it is rewritten by writing for longer
than a tick, which moves its times.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replay.capture.models import tree_paths

SMALL_FILE = 64 * 1024  # files up to this size are hashed until they settle
SETTLE_NS = 3_000_000_000  # longer than the coarsest timestamp tick (FAT: 2 s)
Stat = tuple[int, int, int, int, int]


@dataclass(eq=False)
class Watched:
    """A file (or folder) as a capture saw it; ``settled`` once its stat alone tells a change."""

    path: Path
    stat: Stat | None  # None: it did not exist
    small: bool
    content: bytes | None  # a small file's sha256 (None: unreadable)
    seen_ns: int  # the monotonic clock just after the stat
    settled: bool = False

    @classmethod
    def of(cls, path: Path) -> Watched:
        st = _stat(path)
        seen_ns = time.monotonic_ns()
        small = st is not None and stat.S_ISREG(st.st_mode) and st.st_size <= SMALL_FILE
        return cls(path, _sig(st), small, _content(path) if small else None, seen_ns)

    @property
    def key(self) -> tuple[Any, ...]:
        """What two watches of one file agree on when they saw it alike."""
        return (self.path, self.stat, self.content)

    def unchanged(self, now_ns: int) -> bool:
        """Whether the file is as captured, checked from ``now_ns`` (the monotonic clock read
        before this check began)."""
        if _sig(_stat(self.path)) != self.stat:
            return False
        if not self.small or self.settled:
            return True
        if _content(self.path) != self.content:
            return False
        self.settled = now_ns - self.seen_ns > SETTLE_NS
        return True


def unchanged(watches: tuple[Watched, ...] | frozenset[Watched]) -> bool:
    now_ns = time.monotonic_ns()  # before any stat: see Watched.unchanged
    return all(w.unchanged(now_ns) for w in watches)


def watched(path: Path) -> tuple[Watched, ...]:
    """The files (and folders) whose change means a file component must be captured again."""
    own = tuple(tree_paths(path)) if path.is_dir() else (path,)
    extra: tuple[Path, ...] = (path.with_name(path.name + ".dvc"),)
    for parent in path.parents:
        if (parent / ".git").is_dir():  # a new commit moves the rev a DVC version names
            git = parent / ".git"
            extra += (git / "HEAD", git / "refs" / "heads", git / "packed-refs")
            break
    return tuple(Watched.of(p) for p in (*own, *extra))


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _sig(st: os.stat_result | None) -> Stat | None:
    if st is None:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _content(path: Path) -> bytes | None:
    # os.open and os.read, not open(): 1.5 µs less per file, on every run until it settles.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # unreadable: capturing it says so; until then its stat tells changes
        return None
    try:
        return hashlib.sha256(os.read(fd, SMALL_FILE + 1)).digest()
    finally:
        os.close(fd)
