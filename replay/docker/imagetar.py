"""What a ``docker save`` tarball proves about itself, read without extracting anything.

An image ID is the sha256 of the image's config, and the config lists the sha256 of every
uncompressed layer (``rootfs.diff_ids``). Checking both ties every byte of the tarball to
the ID a run recorded; the tar is only read, never unpacked, so its paths cannot escape.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from typing import Any

from replay.errors import ImageTarError as ImageTarError  # in the one error tree


def image_id(data: bytes) -> str:
    """The verified image ID (``sha256:…``) of a ``docker save`` tarball of one image."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = {posixpath.normpath(m.name): m for m in tar.getmembers()}
            manifest = json.loads(_read(tar, members, "manifest.json"))
            if not isinstance(manifest, list) or len(manifest) != 1:
                raise ImageTarError("manifest.json must describe exactly one image")
            raw_config = _read(tar, members, manifest[0]["Config"])
            config: Any = json.loads(raw_config)
            diff_ids = config["rootfs"]["diff_ids"]
            layers = manifest[0]["Layers"]
            if len(layers) != len(diff_ids):
                raise ImageTarError(f"{len(layers)} layers but the config lists {len(diff_ids)}")
            for layer, want in zip(layers, diff_ids, strict=True):
                got = "sha256:" + hashlib.sha256(_read(tar, members, layer)).hexdigest()
                if got != want:
                    raise ImageTarError(f"layer {layer} hashes to {got}, the config says {want}")
    except ImageTarError:
        raise
    except (tarfile.TarError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise ImageTarError(f"not a docker save tarball ({type(exc).__name__}: {exc})") from None
    return "sha256:" + hashlib.sha256(raw_config).hexdigest()


def _read(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    """A member's bytes, following links only to other members of the same tar."""
    for _ in range(8):
        member = members.get(posixpath.normpath(name))
        if member is None:
            raise ImageTarError(f"{name} is missing from the tarball")
        if member.issym() or member.islnk():
            base = posixpath.dirname(member.name) if member.issym() else ""
            name = posixpath.normpath(posixpath.join(base, member.linkname))
            continue
        f = tar.extractfile(member)
        if f is None:
            raise ImageTarError(f"{name} is not a regular file")
        return f.read()
    raise ImageTarError(f"{name}: too many links")
