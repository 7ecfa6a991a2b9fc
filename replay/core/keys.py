"""Ed25519 signing keys: made once, kept outside any store or bundle, private file 0600."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from replay.core.digest import sha256
from replay.core.userdirs import config_folder
from replay.errors import NotFoundError, UsageError


def default_key_path() -> Path:
    env = os.environ.get("REPLAY_SIGNING_KEY")
    if env:
        return Path(env)
    return config_folder() / "signing-key.pem"


def public_path(private: Path) -> Path:
    return private.with_name(private.stem + ".pub")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def init_key(path: Path | None = None, *, forbidden: tuple[Path, ...] = ()) -> Path:
    """Create a signing key; refuses to overwrite one or to live inside a store."""
    path = path or default_key_path()
    for folder in forbidden:
        if _inside(path, folder):
            raise UsageError(
                f"{path} is inside {folder}",
                hint="keep the private key outside every store and bundle",
            )
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(
            f"a signing key already exists at {path}",
            hint="use it, or choose another path with --out",
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    public_path(path).write_bytes(public_pem(key.public_key()))
    return path


def _read_private(path: Path) -> bytes:
    """A private key's bytes, refused (as ssh does) when others than its owner may read or
    change the file: anyone who can read it can sign as the store."""
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode  # the file read, not whatever the name is now
        if mode & 0o077:
            raise UsageError(
                f"{path} is accessible by others (mode {stat.S_IMODE(mode):04o}): "
                "refusing to sign with a private key others can read",
                hint=f"chmod 600 {path}",
            )
        return f.read()


def load_private(path: Path | None = None) -> Ed25519PrivateKey:
    path = path or default_key_path()
    try:
        pem = _read_private(path)
    except FileNotFoundError:
        raise NotFoundError(
            f"no signing key at {path}", hint="create one with `replay keys init`"
        ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: encrypted
        raise UsageError(f"{path} is not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:  # a damaged key can name any algorithm
        raise UsageError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError("the public key is not an Ed25519 key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    return sha256(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def verify_signature(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
        return True
    except InvalidSignature:
        return False


def signed_by(key: Ed25519PublicKey, expected_id: str, signature: str, body: bytes) -> bool:
    """Whether ``signature`` (base64) is ``key``'s over ``body`` and the key's id is
    ``expected_id``; a damaged signature verifies nothing."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:  # binascii.Error
        return False
    return key_id(key) == expected_id and verify_signature(key, raw, body)
