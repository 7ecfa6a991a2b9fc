"""The bundle container: a canonical tar of regular files, read without trusting it.

A bundle is an uncompressed POSIX (ustar) tar whose members are sorted by path, each with
mode 0644, owner 0, mtime 0 and no other metadata, so the same contents always give the same
bytes. Reading refuses absolute paths, ``..``, links and anything but regular files before
looking at a single content byte, and then insists the file is byte for byte the canonical
tar of what it holds — so no header, padding or trailing byte can change unnoticed.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from replay.errors import ReplayError

MAX_MEMBER = 4 << 30  # a bigger single member is not a bundle we wrote


class BundleError(ReplayError):
    """A bundle is malformed, unsafe or fails verification."""

    exit_code = 1

    def __init__(self, part: str, message: str, *, hint: str = "") -> None:
        super().__init__(f"{part}: {message}",
                         hint=hint or "the bundle cannot be trusted; ask its sender for "
                                      "a fresh export")
        self.part = part


def _safe_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise BundleError(name, "absolute path in bundle (refused)")
    if any(part in ("..", "") for part in name.split("/")) or "\\" in name:
        raise BundleError(name, "path escapes the bundle folder (refused)")
    return name


def write(files: Mapping[str, bytes]) -> bytes:
    """The canonical tar of ``files`` (path → bytes)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(_safe_name(name))
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    return out.getvalue()


def read(data: bytes) -> dict[str, bytes]:
    """The files of a bundle, after refusing anything unsafe or non-canonical."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            files = _members(tar)
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError("bundle", f"truncated or not a bundle ({exc})") from None
    if write(files) != data:
        raise BundleError("bundle", "is not byte for byte the canonical bundle of its "
                          "contents (a header, padding or trailing byte was changed)")
    return files


def _members(tar: tarfile.TarFile) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for m in tar.getmembers():
        name = _safe_name(m.name)
        if m.issym() or m.islnk():
            raise BundleError(name, f"{'symbolic' if m.issym() else 'hard'} link in bundle "
                              f"(to {m.linkname!r}; refused)")
        if not m.isreg():
            raise BundleError(name, "not a regular file (refused)")
        if name in files:
            raise BundleError(name, "appears twice in the bundle")
        if m.size > MAX_MEMBER:
            raise BundleError(name, f"member of {m.size} bytes is too large")
        f = tar.extractfile(m)
        assert f is not None
        files[name] = f.read()
        if len(files[name]) != m.size:
            raise BundleError(name, "truncated member")
    return files


def extract(files: Mapping[str, bytes], target: Path) -> None:
    """Write verified files under ``target`` and nowhere else."""
    root = target.resolve()
    for name, content in files.items():
        path = (root / _safe_name(name)).resolve()
        if root not in path.parents:
            raise BundleError(name, "path escapes the target folder (refused)")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as f:  # never follow or replace what is already there
            f.write(content)
