"""Trusted signers: who signs the evidence a user accepts is configured, never read from it.

A trusted signer is an Ed25519 public key (PEM). The trust store is a folder of them beside
the signing key, in the user's config folder (``$XDG_CONFIG_HOME/pipeline-replay/trusted/``
or ``~/.config/pipeline-replay/trusted/``): one ``NAME.pem`` per key, under the name the
user gave it (``replay trust add BANK.pem --name "Bank X model risk"``).
``REPLAY_TRUSTED_KEYS`` adds keys for CI: a path list (``:``-separated) of key files and of
folders whose ``*.pem`` and ``*.pub`` files are keys, each named after its file.

``verify`` and ``open_bundle`` accept a bundle only when one of these keys signed it, or the
one key a caller pins with ``--key`` (the store is then not read). As sigstore-python's
policies, this fails closed: nothing pinned accepts nothing, and a private, malformed,
missing or world-writable key anywhere in the configuration is an error, never skipped.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from replay.core import keys
from replay.core.userdirs import config_folder
from replay.errors import NotFoundError, UsageError

ENV = "REPLAY_TRUSTED_KEYS"
STORE = "trust store"
PINNED = "--key"
SUFFIXES = (".pem", ".pub")
# A name becomes a file name: printable, no path separator.
_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]{1,80}")
_HEX = re.compile(r"[0-9a-f]{8,64}")

# `list` below is the command of that name (every CLI command is a library function of the
# same name): this module uses tuples and never the builtin.


@dataclass(frozen=True)
class TrustedKey:
    """A signer a user accepts: the name they gave it, its key id, and where it is pinned."""

    name: str
    key_id: str
    source: str  # STORE, ENV or PINNED
    path: Path | None = None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path) if self.path else None}


def folder() -> Path:
    return config_folder() / "trusted"


def public_key(data: bytes, where: str) -> Ed25519PublicKey:
    """The public key in ``data``; a private key is refused, never copied or kept."""
    if b"PRIVATE KEY-----" in data:
        raise UsageError(
            f"{where} is a private key; a signer is pinned by its public key",
            hint="give its public half (`replay keys init` writes it beside the "
            "private key, as .pub) and keep the private key where it is",
        )
    try:
        return keys.load_public(data)
    except UsageError as exc:
        raise UsageError(
            f"{where}: {exc.message}", hint="a trusted signer is an Ed25519 public key in PEM"
        ) from None


def _load(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read key {path}: {exc.strerror}") from None
    return public_key(data, str(path))


def _not_writable_by_others(path: Path) -> None:
    # A key file or folder anyone may write is a signer anyone may choose (as ssh refuses an
    # authorized_keys others can write); readable by others is fine for public keys.
    if path.stat().st_mode & stat.S_IWOTH:
        raise UsageError(
            f"{path} is writable by every user: anyone could choose whom you trust",
            hint=f"chmod o-w '{path}'",
        )


def _entry(path: Path, source: str) -> TrustedKey:
    _not_writable_by_others(path)
    return TrustedKey(path.stem, keys.key_id(_load(path)), source, path)


def _keys_in(where: Path, source: str) -> tuple[TrustedKey, ...]:
    _not_writable_by_others(where)
    return tuple(
        _entry(p, source)
        for p in sorted(where.iterdir())
        if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _stored() -> tuple[TrustedKey, ...]:
    where = folder()
    return _keys_in(where, STORE) if where.is_dir() else ()


def _from_env() -> tuple[TrustedKey, ...]:
    found: tuple[TrustedKey, ...] = ()
    for item in os.environ.get(ENV, "").split(os.pathsep):
        if not item:
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            found += _keys_in(path, ENV)
        elif path.exists():
            found += (_entry(path, ENV),)
        else:  # a typo would otherwise trust nothing without saying so
            raise UsageError(
                f"{ENV} names {path}, which does not exist",
                hint=f"list key files or folders of them, separated by {os.pathsep!r}",
            )
    return found


def _all() -> tuple[TrustedKey, ...]:
    return _stored() + _from_env()


def pinned(key: bytes | None = None) -> tuple[TrustedKey, ...]:
    """The signers a verification accepts: exactly ``key`` when given, else every trusted
    one (possibly none: then nothing is accepted)."""
    if key is not None:
        return (TrustedKey(PINNED, keys.key_id(public_key(key, PINNED)), PINNED),)
    return _all()


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or name.startswith(".") or name != name.strip():
        raise UsageError(
            f"--name {name!r} cannot name a trusted key",
            hint="use up to 80 printable characters, without '/' or '\\', not starting with '.'",
        )


def add(pem: Path, name: str) -> TrustedKey:
    """Trust the signer whose public key is in ``pem``, under ``name``; returns it with its
    key id. Adding the same key under the same name again changes nothing."""
    _check_name(name)
    key = _load(pem)
    kid = keys.key_id(key)
    for known in _stored():
        if known.key_id == kid and known.name == name:
            return known
        if known.key_id == kid:
            raise UsageError(
                f"{kid} is already trusted as {known.name!r}",
                hint=f"to rename it, `replay trust remove {kid}` first",
            )
        if known.name.casefold() == name.casefold():  # one file per name, on any filesystem
            raise UsageError(
                f"a key named {known.name!r} is already trusted ({known.key_id})",
                hint="choose another --name, or `replay trust remove` it first",
            )
    return _write(key, name, kid)


def _write(key: Ed25519PublicKey, name: str, kid: str) -> TrustedKey:
    where = folder()
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = where / f"{name}.pem"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UsageError(f"{path} already exists", hint="choose another --name") from None
    with os.fdopen(fd, "wb") as f:
        f.write(keys.public_pem(key))  # the key alone, re-encoded: no other byte is kept
    return TrustedKey(name, kid, STORE, path)


def _match(known: tuple[TrustedKey, ...], text: str) -> tuple[TrustedKey, ...]:
    named = tuple(k for k in known if k.name == text)
    digits = text.removeprefix("sha256:").lower()
    if named or not _HEX.fullmatch(digits):
        return named
    return tuple(k for k in known if k.key_id[7:].startswith(digits))


def remove(key_id_or_name: str) -> TrustedKey:
    """Stop trusting a signer of the trust store, given by its name, its key id or a unique
    prefix of the id (8 hex digits or more); returns it."""
    found = _match(_stored(), key_id_or_name)
    if not found:
        if _match(_from_env(), key_id_or_name):
            raise UsageError(
                f"{key_id_or_name!r} is trusted through {ENV}, not the trust store",
                hint=f"take it out of {ENV}",
            )
        raise NotFoundError(
            f"no trusted key is named {key_id_or_name!r} or has that id",
            hint="`replay trust list` shows them",
        )
    if len(found) > 1:
        raise UsageError(
            f"{key_id_or_name!r} matches {len(found)} trusted keys",
            hint="give the whole key id, or the name",
        )
    assert found[0].path is not None  # every key of the store is a file
    found[0].path.unlink()
    return found[0]


def list() -> tuple[TrustedKey, ...]:
    """Every trusted signer: the trust store's (by name), then REPLAY_TRUSTED_KEYS's."""
    return _all()


def allow_store(path: Path) -> Path:
    """Open a store another user owns (``replay.core.ownership``); returns the allow list."""
    from replay.core import ownership

    return ownership.allow(path)
