"""The one place pipeline-replay turns bytes into live objects.

Unpickling runs code. Bytes reach here only with the digest they were verified against
(objects re-hash on read; bundles check signatures first), and this module checks the
digest once more, so nothing unverified is ever loaded.
"""

from __future__ import annotations

import io
from typing import Any

import cloudpickle

from replay.digest import sha256
from replay.errors import CorruptionError


def unpickle_trusted(data: bytes, digest: str, *, fmt: str = "pickle") -> Any:
    """Load verified pickle (or joblib) bytes; refuses bytes that do not match ``digest``."""
    if sha256(data) != digest:
        raise CorruptionError(digest, "refusing to unpickle bytes that do not match their digest")
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    return cloudpickle.loads(data)
