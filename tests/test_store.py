"""The store: content-addressed objects, format guard, read-only mode."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import replay
from replay.errors import CorruptionError, NotFoundError, ReadOnlyStoreError, StoreFormatError


def test_an_object_is_stored_once_under_its_sha256(store: replay.Store) -> None:
    a = store.put_object(b"model bytes")
    b = store.put_object(b"model bytes")
    assert a == b and a.startswith("sha256:")
    assert store.objects.path(a).parent.name == a[7:9]
    assert sum(1 for _ in store.objects) == 1


def test_reading_an_object_whose_bytes_changed_is_refused(store: replay.Store) -> None:
    digest = store.put_object(b"weights v1")
    path = store.objects.path(digest)
    path.write_bytes(b"weights v2")
    with pytest.raises(CorruptionError, match="no longer match"):
        store.get_object(digest)


def test_a_missing_object_is_not_found(store: replay.Store) -> None:
    with pytest.raises(NotFoundError, match="missing"):
        store.get_object("sha256:" + "ab" * 32)


def test_opening_a_store_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    replay.Store.open(tmp_path / "s")
    (tmp_path / "s" / "FORMAT").write_text(json.dumps({"format": 99}))
    with pytest.raises(StoreFormatError, match="format 99"):
        replay.Store.open(tmp_path / "s")


def test_opening_a_missing_store_without_create_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="replay init"):
        replay.Store.open(tmp_path / "nowhere", create=False)


def test_the_default_store_comes_from_replay_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_STORE", str(tmp_path / "env-store"))
    assert replay.Store.open().root == tmp_path / "env-store"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_store_without_write_permission_opens_read_only(
    tmp_path: Path,
    toy,
) -> None:
    replay.Store.open(tmp_path / "s")
    os.chmod(tmp_path / "s", 0o555)
    try:
        assert replay.Store.open(tmp_path / "s").readonly
    finally:
        os.chmod(tmp_path / "s", 0o755)


def test_recording_into_a_read_only_store_is_refused(tmp_path: Path, toy) -> None:
    from conftest import rows

    replay.Store.open(tmp_path / "s")
    ro = replay.Store.open(tmp_path / "s", readonly=True)
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        replay.record(toy, rows(2), store=ro)
