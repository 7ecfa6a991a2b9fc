"""The store's one door to its files: every read and write of a store goes through its ``fs``,
with paths relative to the store's root ('/'-separated; never absolute, never ``..``), the way
dvc-objects joins every path through ``self.fs``.

Two interfaces, split where an object store (issue 17) differs from a folder:

- ``StoreFS``, what every backend offers: files read whole, by range or as a stream; listing;
  immutable objects created only if absent (S3's ``If-None-Match: *``: an existing name is
  never rewritten); small documents replaced whole. Objects, blocks read back, FORMAT and
  checkpoints need no more.
- ``LogFS`` adds what only a disk has: logs appended and synced in place, a lock between
  processes, and the boot id that says whether unsynced writes may have been lost. The
  segment writer and the ledger use it; on object storage each writer's group commit becomes
  one ``put_if_absent`` of its own log object instead (``log/<writer>/<seq>-…``: its block
  and its ledger lines), so an S3 backend implements ``StoreFS`` only: ``put_if_absent`` a
  PUT with ``If-None-Match: *`` (412: already there), ``write_atomic`` a PUT, ``read_range``
  a ranged GET, ``list`` a LIST.

``LocalFS`` is a folder, with the durability the store promises: whole files are written to a
temporary name, fsynced, renamed into place and their folder fsynced; appends are synced with
fdatasync; nothing is opened through a symbolic link standing in a store file's place; new
files get modes that follow the umask.
"""

from __future__ import annotations

import fcntl
import functools
import mmap
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import pyarrow as pa

from replay.core.fsutil import fsync_dir, open_nofollow, sync_data, write_all, write_durable
from replay.errors import StoreError

Data = bytes | memoryview
BOOT_ID = "/proc/sys/kernel/random/boot_id"  # Linux: a new random id at every boot


Mapped = bytes | mmap.mmap  # a whole file to search: find, rfind, slices


class StoreFS(Protocol):
    def __hash__(self) -> int:
        """Equal, and hashed alike, for one place (blocks read back are cached by it)."""
        ...

    def where(self, path: str) -> str:
        """The file's full name, for messages."""
        ...

    def exists(self, path: str) -> bool: ...

    def size(self, path: str) -> int:
        """Raises FileNotFoundError for a missing file."""
        ...

    def list(self, folder: str) -> list[str]:
        """The names in ``folder``, sorted; none when it does not exist."""
        ...

    def names(self, folder: str, start_after: str = "") -> Iterator[str]:
        """``list``'s names after ``start_after``, in order, as they are read (on object
        storage a request per 1,000: a caller that stops early asks for no more)."""
        ...

    def changed(self, path: str) -> int:
        """When ``path`` (a file, or a folder's names) last changed, in ns; 0 when absent.
        What a cache of it is stamped with."""
        ...

    def mtimes(self, folder: str) -> dict[str, int]:
        """The files in ``folder`` and when each was last written, in ns since the epoch on
        the store's clock (the file system's, S3's), not this machine's; none when it does
        not exist."""
        ...

    def read(self, path: str) -> bytes: ...

    def read_range(self, path: str, offset: int, length: int) -> memoryview:
        """Up to ``length`` bytes from ``offset`` (fewer where the file ends)."""
        ...

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        """A stream of the file from ``offset``, for reading it line by line."""
        ...

    def mapped(self, path: str) -> AbstractContextManager[Mapped]:
        """The whole file to search (``find``, ``rfind``, slices), without copying it where
        the backend can map it; FileNotFoundError when it does not exist."""
        ...

    def put_if_absent(self, path: str, data: Data) -> bool:
        """Create ``path`` holding ``data`` unless it exists; whether this call created it.

        A reader sees the whole file or none. Meant for names that say what they hold (an
        object's digest): two writers racing on one name write the same bytes.
        """
        ...

    def write_atomic(self, path: str, data: Data) -> None:
        """Replace ``path`` by ``data``, durably: a reader sees the old file or the new."""
        ...


class LogFile(Protocol):
    """An open log: read anywhere, written at its end (or, opened for repair, in place)."""

    def size(self) -> int: ...

    def read_at(self, offset: int, length: int) -> bytes: ...

    def append(self, data: Data) -> None:
        """Write at the end; durable only after ``sync``."""
        ...

    def write_at(self, offset: int, data: Data) -> None:
        """Overwrite in place (repair only: never on a log opened to append)."""
        ...

    def truncate(self, size: int) -> None: ...

    def sync(self) -> None:
        """Make what was written (or cut) durable, with the size that finds it."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> LogFile: ...

    def __exit__(self, *exc: object) -> None: ...


class LogFS(StoreFS, Protocol):
    def open_log(self, path: str, *, append: bool = True) -> LogFile:
        """The log at ``path`` (created if absent), to append to (or, not ``append``, to
        write in place: a small record such as the ledger's sealed size)."""
        ...

    def open_existing(self, path: str) -> LogFile:
        """The log at ``path`` to repair in place; FileNotFoundError when absent."""
        ...

    def sync_folder(self, folder: str) -> None:
        """Make the names of files created in ``folder`` durable."""
        ...

    def locked(self, path: str) -> AbstractContextManager[None]:
        """Hold the exclusive lock named ``path`` (against other processes too)."""
        ...

    def is_link(self, path: str) -> bool:
        """Whether a symbolic link stands at ``path`` (repair refuses to follow one)."""
        ...

    def boot_id(self) -> str:
        """Which boot of the machine holding the files this is: what was written and not
        synced is there as long as it has not changed ("" when unknown: assume it has)."""
        ...

    def remove(self, path: str) -> None:
        """Delete the file at ``path`` if it is there (repair: a dead writer's temporary)."""
        ...


def _create_temp(folder: Path, mode: int) -> tuple[int, Path]:
    """A new temporary file in ``folder`` (created with its parents if need be), opened for
    writing.

    Created with ``mode`` through ``open``, so the kernel applies the umask (an object's 0444
    is 0444 under umask 022, 0440 under 027, 0400 under 077). O_EXCL never opens an existing
    name, a symbolic link included. The pid in the name lets `replay doctor` tell a dead
    writer's leftover from a live writer's work in progress.
    """
    while True:
        tmp = folder / f".tmp-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            return open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), tmp
        except FileExistsError:
            continue
        except FileNotFoundError:  # the folder is missing: made here, not checked every time
            folder.mkdir(parents=True, exist_ok=True)


def _open_creating(target: Path, flags: int = 0) -> int:
    """Open ``target`` read-write, creating it (and its folder, the first time) if absent."""
    flags |= os.O_RDWR | os.O_CREAT
    try:
        return open_nofollow(target, flags)
    except FileNotFoundError:  # the folder is missing: made here, not checked on every open
        target.parent.mkdir(parents=True, exist_ok=True)
        return open_nofollow(target, flags)


def check_name(store: str, path: str) -> str:
    """``path`` when it names a file inside the store (relative, without ``.`` or ``..``)."""
    if path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
        raise StoreError(
            f"{path!r} is not a name inside the store {store}",
            hint="a store's files are named relative to its folder; restore what named it",
        )
    return path


@functools.lru_cache(maxsize=1024)  # the ledger, its lock, the segments folder: every commit
def _inside(root: Path, path: str) -> Path:
    return root / check_name(str(root), path)


@dataclass(slots=True)
class LocalFile:
    """A ``LogFile`` on a descriptor of this process."""

    name: str  # relative to the store's root
    fd: int
    appending: bool

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read_at(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def append(self, data: Data) -> None:
        write_all(self.fd, data)

    def write_at(self, offset: int, data: Data) -> None:
        # Linux's pwrite on an O_APPEND descriptor appends, whatever the offset.
        assert not self.appending, "write_at on a log opened to append"
        os.pwrite(self.fd, data, offset)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def sync(self) -> None:
        sync_data(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class LocalFS:
    """A store in a folder on this machine (equal, and hashed alike, for one root)."""

    root: Path

    def _local(self, path: str) -> Path:
        return _inside(self.root, path)

    def where(self, path: str) -> str:
        return str(self._local(path))

    def exists(self, path: str) -> bool:
        return self._local(path).exists()

    def size(self, path: str) -> int:
        return self._local(path).stat().st_size

    def list(self, folder: str) -> list[str]:
        try:
            return sorted(p.name for p in self._local(folder).iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def names(self, folder: str, start_after: str = "") -> Iterator[str]:
        return (name for name in self.list(folder) if name > start_after)

    def changed(self, path: str) -> int:
        try:
            return self._local(path).stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def mtimes(self, folder: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for name in self.list(folder):
            try:
                found = self._local(f"{folder}/{name}").stat()
            except FileNotFoundError:  # deleted since it was listed
                continue
            if stat.S_ISREG(found.st_mode):
                out[name] = found.st_mtime_ns
        return out

    def read(self, path: str) -> bytes:
        return self._local(path).read_bytes()

    def read_range(self, path: str, offset: int, length: int) -> memoryview:
        # Mapped, not copied: a big batch's block is read without holding it twice.
        with pa.memory_map(str(self._local(path))) as f:
            f.seek(offset)
            return memoryview(f.read_buffer(length))

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        f = open(self._local(path), "rb")  # noqa: SIM115 - the caller closes it
        f.seek(offset)
        return f

    @contextmanager
    def mapped(self, path: str) -> Iterator[Mapped]:
        with open(self._local(path), "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                yield b""  # an empty file cannot be mapped
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                yield view

    def put_if_absent(self, path: str, data: Data) -> bool:
        target = self._local(path)
        if target.exists():
            return False
        self._replace(target, data, 0o444)  # immutable
        return True

    def write_atomic(self, path: str, data: Data) -> None:
        self._replace(self._local(path), data, 0o644)

    def _replace(self, target: Path, data: Data, mode: int) -> None:
        fd, tmp = _create_temp(target.parent, mode)
        try:
            write_durable(fd, data)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(target.parent)

    def open_log(self, path: str, *, append: bool = True) -> LocalFile:
        flags = os.O_APPEND if append else 0
        return LocalFile(path, _open_creating(self._local(path), flags), appending=append)

    def open_existing(self, path: str) -> LocalFile:
        # Its own descriptor, without O_APPEND, so that write_at writes where it says.
        return LocalFile(path, open_nofollow(self._local(path), os.O_RDWR), appending=False)

    def sync_folder(self, folder: str) -> None:
        fsync_dir(self._local(folder))

    @contextmanager
    def locked(self, path: str) -> Iterator[None]:
        fd = _open_creating(self._local(path))  # never written: the file only names the lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def is_link(self, path: str) -> bool:
        return self._local(path).is_symlink()

    def remove(self, path: str) -> None:
        self._local(path).unlink(missing_ok=True)

    def boot_id(self) -> str:
        try:
            return Path(BOOT_ID).read_text().strip()
        except OSError:  # not Linux
            return ""

    def makedirs(self, folder: str) -> None:
        self._local(folder).mkdir(parents=True, exist_ok=True)

    def writable(self) -> bool:
        return os.access(self.root, os.W_OK)
