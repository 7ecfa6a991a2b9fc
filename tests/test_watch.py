"""The files a binding was captured from: each run learns whether one changed since."""

from __future__ import annotations

import os
from pathlib import Path

from replay.capture.watch import SETTLE_NS, Watched

LATER = SETTLE_NS + 1  # a check that began this long after the capture's stat


def rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def after_a_tick(path: Path) -> None:
    """Return once the filesystem's clock stamps a write later than ``path``'s ctime."""
    probe = path.with_name("probe")
    while True:
        probe.write_bytes(b"tick")
        if probe.stat().st_ctime_ns > path.stat().st_ctime_ns:
            return


def test_an_untouched_file_is_unchanged(tmp_path: Path) -> None:
    (path := tmp_path / "m.pkl").write_bytes(b"v1")
    watch = Watched.of(path)
    assert watch.unchanged(watch.seen_ns) and watch.unchanged(watch.seen_ns + LATER)


def test_a_small_file_rewritten_with_its_old_size_and_mtime_is_noticed_before_it_settles(
    tmp_path: Path,
) -> None:
    (path := tmp_path / "m.pkl").write_bytes(b"v1")
    watch = Watched.of(path)
    rewrite_keeping_size_and_mtime(path, b"v2")
    assert not watch.unchanged(watch.seen_ns)


def test_a_small_file_settles_once_found_unchanged_by_a_check_begun_after_a_tick(
    tmp_path: Path,
) -> None:
    (path := tmp_path / "m.pkl").write_bytes(b"v1")
    watch = Watched.of(path)
    assert watch.unchanged(watch.seen_ns) and not watch.settled  # within a tick: hashed again
    assert watch.unchanged(watch.seen_ns + LATER) and watch.settled


def test_a_settled_file_rewritten_with_its_old_size_and_mtime_is_told_by_its_ctime(
    tmp_path: Path,
) -> None:
    (path := tmp_path / "m.pkl").write_bytes(b"v1")
    watch = Watched.of(path)
    assert watch.unchanged(watch.seen_ns + LATER) and watch.settled
    after_a_tick(path)  # what SETTLE_NS waits for in a process that runs on
    rewrite_keeping_size_and_mtime(path, b"v2")
    assert not watch.unchanged(watch.seen_ns + LATER)


def test_a_file_that_changed_does_not_settle(tmp_path: Path) -> None:
    (path := tmp_path / "m.pkl").write_bytes(b"v1")
    watch = Watched.of(path)
    rewrite_keeping_size_and_mtime(path, b"v2")
    assert not watch.unchanged(watch.seen_ns + LATER) and not watch.settled


def test_a_file_that_appears_where_none_was_is_a_change(tmp_path: Path) -> None:
    watch = Watched.of(path := tmp_path / "m.pkl.dvc")
    assert watch.unchanged(watch.seen_ns)
    path.write_bytes(b"outs: []\n")
    assert not watch.unchanged(watch.seen_ns)
