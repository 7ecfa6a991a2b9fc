"""Content-addressed, immutable blobs under ``objects/sha256/ab/cdef…``.

Written to a temporary name in the same folder tree, fsynced, then renamed into place, so a
reader never sees half an object. Every read re-hashes and refuses bytes that no longer match
their name: an object that changed on disk is an error, never data.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from replay.core.digest import hex_of, sha256
from replay.core.fsutil import fsync_dir, open_nofollow, write_durable
from replay.errors import CorruptionError, NotFoundError, StoreError


def relative_path(digest: str) -> str:
    """Where an object lives under a store's (or a bundle's) ``objects/`` folder."""
    h = hex_of(digest)
    return f"sha256/{h[:2]}/{h[2:]}"


def _create_temp(folder: Path) -> tuple[int, Path]:
    """A new temporary file in ``folder``, opened for writing.

    Created read-only (0444) through ``open``, so the kernel applies the umask: an object is
    immutable, and readable by exactly whom the store's owner lets read new files (0444
    under umask 022, 0440 under 027, 0400 under 077). O_EXCL never opens an existing name,
    a symbolic link included. The pid in the name lets `replay doctor` tell a dead writer's
    leftover from a live writer's work in progress.
    """
    while True:
        tmp = folder / f".tmp-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            return open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise StoreError(
                f"cannot write an object in {folder}: {exc.strerror}",
                hint="check free space and permissions of the store",
            ) from exc


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._known: set[str] = set()

    def path(self, digest: str) -> Path:
        return self.root / relative_path(digest)

    def put(self, data: bytes | memoryview) -> str:
        digest = sha256(data)
        if digest in self._known:
            return digest
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _create_temp(target.parent)
            try:
                write_durable(fd, data)
                os.replace(tmp, target)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise StoreError(
                    f"cannot write object {digest}: {exc.strerror}",
                    hint="check free space and permissions of the store",
                ) from exc
            fsync_dir(target.parent)
        self._known.add(digest)
        return digest

    def get(self, digest: str) -> bytes:
        target = self.path(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"object {digest} is missing from the store",
                hint="restore it from a backup or an evidence bundle",
            ) from None
        if sha256(data) != digest:
            raise CorruptionError(str(target), f"bytes no longer match {digest}")
        return data

    def has(self, digest: str) -> bool:
        return digest in self._known or self.path(digest).exists()

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        base = self.root / "sha256"
        if not base.exists():
            return
        for sub in sorted(base.iterdir()):
            for f in sorted(sub.iterdir()):
                if not f.name.startswith(".tmp-"):
                    yield "sha256:" + sub.name + f.name, f
