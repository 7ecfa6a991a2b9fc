"""A store's files as a read-only pyarrow filesystem, so Parquet on the store is read through
the same seam (credentials, endpoint, errors) as everything else, and every request counted.

pyarrow's own S3 filesystem would need its own configuration and cannot say how many
requests a query made; reading through ``StoreFS.read_range`` is one GET per range pyarrow
asks for (a Parquet footer, then the column chunks of the row groups a filter keeps).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from replay.store.fs import StoreFS


@dataclass
class Reads:
    """Requests made and bytes read, over every file opened through one filesystem."""

    requests: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += n


class _Ranged(io.RawIOBase):
    """One file, read by ranges on demand (pyarrow reads at offsets: nothing is prefetched)."""

    def __init__(self, fs: StoreFS, path: str, size: int, reads: Reads) -> None:
        self._fs, self._path, self._size, self._reads = fs, path, size, reads
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._size}[whence]
        self._at = base + offset
        return self._at

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._at))
        if n:
            data = self._fs.read_range(self._path, self._at, n)
            self._reads.add(len(data))
            buffer[: len(data)] = data
            n = len(data)
        self._at += n
        return n


class _Handler(pafs.FileSystemHandler):  # type: ignore[misc]
    def __init__(self, fs: StoreFS, reads: Reads) -> None:
        self.fs, self.reads = fs, reads
        self.sizes: dict[str, int] = {}

    def size(self, path: str) -> int:
        if path not in self.sizes:
            self.sizes[path] = self.fs.size(path)
            self.reads.add(0)
        return self.sizes[path]

    def get_type_name(self) -> str:
        return "replay-store"

    def normalize_path(self, path: str) -> str:
        return path

    def equals(self, other: Any) -> bool:
        return isinstance(other, _Handler) and other.fs == self.fs

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return [pafs.FileInfo(p, pafs.FileType.File, size=self.size(p)) for p in paths]

    def open_input_file(self, path: str) -> pa.NativeFile:
        return pa.PythonFile(_Ranged(self.fs, path, self.size(path), self.reads), mode="r")

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError("a store is read through this filesystem, never written")

    get_file_info_selector = create_dir = delete_dir = delete_dir_contents = _read_only
    delete_root_dir_contents = delete_file = move = copy_file = _read_only
    open_output_stream = open_append_stream = _read_only


def arrow_fs(fs: StoreFS) -> tuple[pafs.PyFileSystem, Reads]:
    """``fs`` as a pyarrow filesystem (paths are store paths) and its request counter."""
    reads = Reads()
    return pafs.PyFileSystem(_Handler(fs, reads)), reads
