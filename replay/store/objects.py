"""Content-addressed, immutable blobs under ``objects/sha256/ab/cdef…``.

Created only if absent, through the store's ``fs`` (in a folder: written to a temporary name,
fsynced, then renamed into place), so a reader never sees half an object and an object once
written is never rewritten. Every read re-hashes and refuses bytes that no longer match
their name: an object that changed on disk is an error, never data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from replay.core.digest import hex_of, sha256
from replay.errors import CorruptionError, NotFoundError, StoreError
from replay.store.fs import StoreFS

FOLDER = "objects"


def relative_path(digest: str) -> str:
    """Where an object lives under a store's (or a bundle's) ``objects/`` folder."""
    h = hex_of(digest)
    return f"sha256/{h[:2]}/{h[2:]}"


class ObjectStore:
    def __init__(self, fs: StoreFS) -> None:
        self.fs = fs
        self.root = Path(fs.where(FOLDER))
        self._known: set[str] = set()

    def path(self, digest: str) -> Path:
        return self.root / relative_path(digest)

    def put(self, data: bytes | memoryview) -> str:
        digest = sha256(data)
        if digest in self._known:
            return digest
        try:
            self.fs.put_if_absent(f"{FOLDER}/{relative_path(digest)}", data)
        except OSError as exc:
            raise StoreError(
                f"cannot write object {digest}: {exc.strerror}",
                hint="check free space and permissions of the store",
            ) from exc
        self._known.add(digest)
        return digest

    def get(self, digest: str) -> bytes:
        try:
            data = self.fs.read(f"{FOLDER}/{relative_path(digest)}")
        except FileNotFoundError:
            raise NotFoundError(
                f"object {digest} is missing from the store",
                hint="restore it from a backup or an evidence bundle",
            ) from None
        if sha256(data) != digest:
            raise CorruptionError(str(self.path(digest)), f"bytes no longer match {digest}")
        return data

    def has(self, digest: str) -> bool:
        return digest in self._known or self.fs.exists(f"{FOLDER}/{relative_path(digest)}")

    def starting_with(self, hexprefix: str) -> list[str]:
        """The digests of the stored objects whose hex starts with ``hexprefix`` (2+ digits)."""
        sub = hexprefix[:2]
        return [
            f"sha256:{sub}{name}"
            for name in self.fs.list(f"{FOLDER}/sha256/{sub}")
            if name.startswith(hexprefix[2:]) and not name.startswith(".tmp-")
        ]

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        base = f"{FOLDER}/sha256"
        for sub in self.fs.list(base):
            for name in self.fs.list(f"{base}/{sub}"):
                if not name.startswith(".tmp-"):
                    digest = "sha256:" + sub + name
                    yield digest, self.path(digest)
