"""The one place pipeline-replay turns bytes into live objects.

Unpickling runs code. Bytes reach here only with the digest they were verified against
(objects re-hash on read; bundles check signatures first), and this module checks the
digest once more, so nothing unverified is ever loaded. skops files go through here too:
they build objects by type name, and only the types skops trusts by default are built; so
do torch files, loaded with torch's restricted unpickler (tensors and plain containers).
"""

from __future__ import annotations

import io
from typing import Any

import cloudpickle

from replay.digest import sha256
from replay.errors import CaptureError, CorruptionError


def unpickle_trusted(data: bytes, digest: str, *, fmt: str = "pickle") -> Any:
    """Load verified pickle, joblib, skops or torch bytes; refuses bytes that do not match
    ``digest``, and a skops file naming types skops does not trust."""
    if sha256(data) != digest:
        raise CorruptionError(digest, "refusing to unpickle bytes that do not match their digest")
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    if fmt == "skops":
        return _skops(data, digest)
    if fmt == "torch":
        import torch

        # weights_only: torch's restricted unpickler, tensors and plain containers only.
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return cloudpickle.loads(data)


def _skops(data: bytes, digest: str) -> Any:
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=data)
    if untrusted:
        raise CaptureError(
            f"skops model {digest} holds types skops does not trust: {', '.join(untrusted)}",
            hint="review them, then load the file with your own loader: "
                 "replay.Model(path, loader=lambda p: skops.io.load(p, trusted=[...]))")
    return skops.io.loads(data)
