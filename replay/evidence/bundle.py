"""The bundle container: a canonical tar of regular files, read without trusting it.

A bundle is an uncompressed POSIX (ustar) tar whose members are sorted by path, each with
mode 0644, owner 0, mtime 0 and no other metadata, so the same contents always give the same
bytes. Reading walks the file once, header by header, and refuses before reading a member's
content: anything but a regular file (links, devices, sparse, pax and GNU extension members),
a name outside the bundle layout, a size the file cannot hold, more members or bytes than
any bundle we write. Every header, padding and trailing byte must be the canonical one, so
nothing can change unnoticed; contents are hashed while streaming, never held whole.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from replay.errors import ReplayError, UsageError

# Limits on what verify will read. The largest bundles we write carry a few `docker save`
# images (the project image is 1.09 GB) beside row data (10 credit runs x 10,000 rows make
# 79 MB), so 4 GiB per member and 16 GiB in all leave room while bounding a hostile bundle
# to a minute or two of hashing. 100,000 members is 10,000 runs of ~10 files each: export
# replays every run (~0.5 s each), so that is already hours of exporting, while walking
# that many headers takes verify about a second.
MAX_MEMBER = 4 << 30
MAX_BUNDLE = 16 << 30
MAX_MEMBERS = 100_000

BLOCK, RECORD = 512, 20 * 512  # tar's block, and the record a tar file is padded to
CHUNK = 1 << 20  # read and hash this much at a time: memory stays flat whatever the size
ZERO = bytes(BLOCK)
RUN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # a UUID run id
LAYOUT = re.compile(
    rf"""
    MANIFEST\.json | MANIFEST\.sig | public_key\.pem | report\.html | report\.pdf
  | statement\.intoto\.json | ledger/(checkpoint\.json | entries\.jsonl | proofs\.json)
  | objects/sha256/[0-9a-f]{{2}}/[0-9a-f]{{62}} | images/[0-9a-f]{{64}}\.tar
  | reports/{RUN}\.json | runs/{RUN}/(tape\.json | [A-Za-z_][A-Za-z0-9_.-]{{0,63}}\.arrow)
""",
    re.VERBOSE,
)  # step names are [A-Za-z_][A-Za-z0-9_.-]{0,63} (replay.core.pipeline)
NOT_REGULAR = {
    b"1": "hard link",
    b"2": "symbolic link",
    b"3": "character device",
    b"4": "block device",
    b"5": "directory",
    b"6": "FIFO",
    b"S": "GNU sparse member",
    b"x": "pax extended header",
    b"g": "pax global header",
    b"L": "GNU long-name header",
    b"K": "GNU long-link header",
}


class BundleError(ReplayError):
    """A bundle is malformed, unsafe or fails verification: refused."""

    exit_code = 15

    def __init__(self, part: str, message: str, *, hint: str = "") -> None:
        super().__init__(
            f"{part}: {message}",
            hint=hint or "the bundle cannot be trusted; ask its sender for a fresh export",
        )
        self.part = part


class MalformedBundleError(BundleError):
    """The bundle cannot even be read safely: not a canonical ustar of the layout, over a
    limit, or signed JSON of the wrong shape. `verify` exits 15 for these and 1 for a
    well-formed bundle whose digests, proofs or signature do not hold."""


@dataclass(frozen=True, slots=True)
class Member:
    offset: int  # where its content starts in the bundle file
    size: int
    digest: str  # sha256 of its content, computed while the bundle was first read


class Members(Mapping[str, bytes]):
    """The files of a bundle on disk, read on demand. Every read re-hashes and refuses
    bytes that changed since the bundle was checked, so nothing unchecked is ever used."""

    def __init__(self, path: Path | None = None, index: Mapping[str, Member] | None = None) -> None:
        self.path, self.index = path, dict(index or {})

    def __getitem__(self, name: str) -> bytes:
        if name not in self.index:
            raise KeyError(name)
        return b"".join(self.chunks(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, name: object) -> bool:  # Mapping's own would read the member
        return name in self.index

    def digest(self, name: str) -> str:
        return self.index[name].digest

    def size(self, name: str) -> int:
        return self.index[name].size

    def chunks(self, name: str) -> Iterator[bytes]:
        """The member's bytes a chunk at a time; raises at the end if they changed."""
        member, h, left = self.index[name], hashlib.sha256(), self.index[name].size
        assert self.path is not None
        try:
            with self.path.open("rb") as f:
                f.seek(member.offset)
                while left and (chunk := f.read(min(CHUNK, left))):
                    h.update(chunk)
                    left -= len(chunk)
                    yield chunk
        except OSError as exc:  # deleted or unreadable since it was checked
            raise BundleError(name, f"cannot be read again ({exc.strerror})") from None
        if left or "sha256:" + h.hexdigest() != member.digest:
            raise BundleError(name, "changed on disk since it was checked (not used)")


def load(path: Path) -> Members:
    """Index the bundle at ``path`` in one streaming pass, after refusing anything unsafe
    or non-canonical; contents are hashed on the way and read later only on demand."""
    try:
        with path.open("rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"cannot read bundle {path}: not a regular file")
            return Members(path, _index(f, info.st_size))
    except OSError as exc:
        raise UsageError(f"cannot read bundle {path}: {exc.strerror}") from None


def read(data: bytes) -> dict[str, bytes]:
    """The files of a bundle held in memory, after the same refusals as ``load``."""
    index = _index(io.BytesIO(data), len(data))
    return {name: data[m.offset : m.offset + m.size] for name, m in index.items()}


def _index(f: BinaryIO, length: int) -> dict[str, Member]:
    if length > MAX_BUNDLE:
        raise MalformedBundleError(
            "bundle",
            f"{length:,} bytes, more than the {MAX_BUNDLE:,} any bundle may hold (refused unread)",
        )
    index: dict[str, Member] = {}
    at, last = 0, ""
    while (block := _block(f, at, length)) != ZERO:
        if len(index) == MAX_MEMBERS:
            raise MalformedBundleError(
                "bundle",
                f"more than {MAX_MEMBERS:,} members, more than any bundle may hold (refused)",
            )
        name, size = _header(block, at, length, last)
        index[name] = Member(at + BLOCK, size, _hash_content(f, name, size))
        at, last = at + BLOCK + _padded(size), name
    _check_end(f, at, length)
    return index


def _block(f: BinaryIO, at: int, length: int) -> bytes:
    block = f.read(BLOCK) if at + BLOCK <= length else b""
    if len(block) != BLOCK:
        raise MalformedBundleError(
            "bundle", f"truncated or not a bundle (it ends inside the header at byte {at:,})"
        )
    return block


def _header(block: bytes, at: int, length: int, last: str) -> tuple[str, int]:
    """The member's name and size, once its header is proven to be the canonical header of
    a regular file of the layout whose content the file holds."""
    name = _safe_name(_name_of(block, at))
    _regular(name, block)
    size = _size_of(name, block)
    if BLOCK + _padded(size) > length - at:
        raise MalformedBundleError(
            "bundle",
            f"truncated or not a bundle ({name}'s header "
            f"says {size:,} bytes; the file holds "
            f"{max(length - at - BLOCK, 0):,} more)",
        )
    if not LAYOUT.fullmatch(name):
        raise MalformedBundleError(name, "is not a name of the bundle layout (refused)")
    if name <= last:
        raise MalformedBundleError(
            name,
            "appears twice in the bundle"
            if name == last
            else f"is out of order (after {last}; members are sorted)",
        )
    if block != _canonical_header(name, size):
        raise MalformedBundleError(
            name,
            "header is not byte for byte the canonical one (a "
            "mode, owner, time or other field was changed)",
        )
    return name, size


def _name_of(block: bytes, at: int) -> str:
    raw = block[:100].split(b"\0", 1)[0]
    if block[257:263] == b"ustar\0":  # only POSIX headers have a prefix field
        prefix = block[345:500].split(b"\0", 1)[0]
        raw = prefix + b"/" + raw if prefix else raw
    if not raw:
        raise MalformedBundleError("bundle", f"member at byte {at:,} has no name (refused)")
    if not re.fullmatch(rb"[!-~]*", raw):  # no layout name has a space, newline or escape
        raise MalformedBundleError(
            "bundle", f"member at byte {at:,}: its name {raw!r} is not printable ASCII (refused)"
        )
    return raw.decode("ascii")


def _regular(name: str, block: bytes) -> None:
    flag = block[156:157]
    if flag in (b"1", b"2"):
        link = block[157:257].split(b"\0", 1)[0].decode("ascii", "replace")
        raise MalformedBundleError(name, f"{NOT_REGULAR[flag]} in bundle (to {link!r}; refused)")
    if flag != b"0":
        kind = NOT_REGULAR.get(flag, f"member of type {flag!r}")
        raise MalformedBundleError(
            name, f"{kind} in bundle (refused: a bundle holds regular ustar files only)"
        )
    if block[257:265] != b"ustar\x0000":
        raise MalformedBundleError(
            name, "is not a POSIX ustar header (GNU or old tar format; refused)"
        )


def _size_of(name: str, block: bytes) -> int:
    field = block[124:136]
    if not re.fullmatch(rb"[0-7]{11}\0", field):  # the only form a canonical header has
        raise MalformedBundleError(name, f"size field {field!r} is not 11 octal digits (refused)")
    size = int(field[:11], 8)
    if size > MAX_MEMBER:
        raise MalformedBundleError(
            name,
            f"member of {size:,} bytes, more than the "
            f"{MAX_MEMBER:,} any member may hold (refused unread)",
        )
    return size


def _hash_content(f: BinaryIO, name: str, size: int) -> str:
    h, left = hashlib.sha256(), size
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise MalformedBundleError("bundle", f"truncated or not a bundle ({name} ends early)")
        h.update(chunk)
        left -= len(chunk)
    if f.read(_padded(size) - size).strip(b"\0"):
        raise MalformedBundleError(
            name, "padding after it is not zero (not the canonical bundle of its contents)"
        )
    return "sha256:" + h.hexdigest()


def _check_end(f: BinaryIO, at: int, length: int) -> None:
    """Two zero blocks, then zeros up to a whole record, then nothing: as tar writes it."""
    end = -(-(at + 2 * BLOCK) // RECORD) * RECORD
    if length < end:
        raise MalformedBundleError("bundle", "truncated or not a bundle (its end is cut short)")
    if length > end or f.read(end - at - BLOCK).strip(b"\0"):
        raise MalformedBundleError(
            "bundle",
            "is not byte for byte the canonical bundle of "
            "its contents (bytes were added after its end)",
        )


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _safe_name(name: str) -> str:
    if name.startswith("/"):
        raise MalformedBundleError(name, "absolute path in bundle (refused)")
    parts = name.split("/")
    if ".." in parts or "" in parts or "\\" in name:
        raise MalformedBundleError(name, "path escapes the bundle folder (refused)")
    return name


def _layout_name(name: str) -> str:
    if not LAYOUT.fullmatch(_safe_name(name)):
        raise MalformedBundleError(name, "is not a name of the bundle layout (refused)")
    return name


def _canonical_header(name: str, size: int) -> bytes:
    """The ustar header tarfile writes for a 0644 file of owner 0 and mtime 0, spelled out
    so the bytes do not change with Python's version. A name over 100 characters is split
    at its first '/' that leaves a prefix of at most 155 and a name of at most 100 (every
    name of the layout can be)."""
    prefix, rest = (part.encode() for part in _split(name))
    size_field = b"%011o\0" % size
    checksum = _CONSTANT_SUM + sum(prefix) + sum(rest) + sum(size_field)
    return b"".join(
        (
            rest.ljust(100, b"\0"),
            _MODE_OWNER,
            size_field,
            _MTIME,
            b"%06o\0 " % checksum,
            _TYPE_TO_MAGIC,
            prefix.ljust(155, b"\0"),
            bytes(12),
        )
    )


_MODE_OWNER = b"0000644\0" + b"0000000\0" * 2  # mode, uid, gid
_MTIME = b"00000000000\0"
# type "0", no link name, "ustar" "00", empty user and group names and device numbers
_TYPE_TO_MAGIC = b"0" + bytes(100) + b"ustar\x0000" + bytes(32 + 32 + 8 + 8)
_CONSTANT_SUM = sum(_MODE_OWNER) + sum(_MTIME) + sum(_TYPE_TO_MAGIC) + 8 * ord(" ")


def _split(name: str) -> tuple[str, str]:
    if len(name) <= 100:
        return "", name
    parts = name.split("/")
    for i in range(1, len(parts)):
        prefix, rest = "/".join(parts[:i]), "/".join(parts[i:])
        if len(prefix) <= 155 and len(rest) <= 100:
            return prefix, rest
    raise MalformedBundleError(
        name,
        f"name of {len(name)} characters does not fit a ustar "
        "header (at most 100 after a '/', 155 before it; refused)",
    )


def write(files: Mapping[str, bytes]) -> bytes:
    """The canonical tar of ``files`` (path → bytes); only names of the layout."""
    out = io.BytesIO()
    for name in sorted(files):
        data = files[name]
        out.write(_canonical_header(_layout_name(name), len(data)))
        out.write(data)
        out.write(bytes(_padded(len(data)) - len(data)))
    out.write(bytes(-(-(out.tell() + 2 * BLOCK) // RECORD) * RECORD - out.tell()))
    return out.getvalue()


def extract(files: Mapping[str, bytes], target: Path) -> None:
    """Write verified files of the layout under ``target`` and nowhere else, never over
    anything already there: when any of them exists, nothing is written."""
    root = target.resolve()
    paths = {name: _target(root, name) for name in files}
    taken = [name for name, path in paths.items() if path.is_symlink() or path.exists()]
    if taken:
        raise BundleError(
            taken[0],
            f"already exists in {target} ({len(taken)} of the "
            f"bundle's {len(paths)} files do); nothing was extracted",
            hint="extract into a new or empty folder: a bundle never replaces a file",
        )
    try:
        for name, path in paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_new(path, files.chunks(name) if isinstance(files, Members) else [files[name]])
    except OSError as exc:  # not a folder, no permission, disk full: the user's to fix
        raise UsageError(f"cannot extract into {target}: {exc.strerror}") from None


def _target(root: Path, name: str) -> Path:
    path = root / _layout_name(name)
    if root not in path.resolve().parents:  # a folder on the way links out of the target
        raise BundleError(name, "path escapes the target folder (refused)")
    return path  # unresolved: a link in its place counts as taken, never as a way through


def _write_new(path: Path, chunks: Iterable[bytes]) -> None:
    try:
        f = path.open("xb")  # never follow or replace what is already there
    except FileExistsError:
        raise BundleError(
            str(path),
            "appeared while the bundle was being extracted (not replaced)",
            hint="extract into a new or empty folder",
        ) from None
    with f:
        try:
            for chunk in chunks:
                f.write(chunk)
        except BundleError:
            path.unlink()  # bytes that changed since verification are not left behind
            raise
