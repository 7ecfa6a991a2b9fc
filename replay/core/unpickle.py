"""The one place pipeline-replay turns bytes into live objects.

Unpickling runs code. Bytes reach here only with the digest they were verified against
(objects re-hash on read; bundles check signatures first), and this module checks the
digest once more, so nothing unverified is ever loaded. skops files go through here too:
they build objects by type name, and only the types skops trusts by default are built; so
do torch files, loaded with torch's restricted unpickler (tensors and plain containers).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import cloudpickle  # noqa: F401 - its reducers must be registered before loading

from replay.core.digest import sha256
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
    return _Unpickler(io.BytesIO(data)).load()


# Where each module of ours was before the subpackages: recorded pickles name them by path.
MOVED = {
    "replay.audit": "replay.catalog.check",
    "replay.bundle": "replay.evidence.bundle",
    "replay.capture": "replay.capture.record",
    "replay.catalog": "replay.catalog.index",
    "replay.catalog_ingest": "replay.catalog.ingest",
    "replay.catalogcheck": "replay.catalog.truth",
    "replay.cells": "replay.core.cells",
    "replay.checkpoint": "replay.store.checkpoint",
    "replay.cli": "replay.cli.app",
    "replay.cli_evidence": "replay.cli.evidence",
    "replay.cli_witness": "replay.cli.witness",
    "replay.codecapture": "replay.capture.code",
    "replay.commit": "replay.store.commit",
    "replay.compare": "replay.engine.diff",
    "replay.components": "replay.capture.bind",
    "replay.container": "replay.docker.sandbox",
    "replay.context": "replay.core.context",
    "replay.declared": "replay.core.declared",
    "replay.delta": "replay.engine.delta",
    "replay.demo": "replay.cli.demo",
    "replay.digest": "replay.core.digest",
    "replay.doctor": "replay.catalog.repair",
    "replay.dvcdata": "replay.capture.dvc",
    "replay.engine": "replay.engine.replay",
    "replay.environment": "replay.capture.environment",
    "replay.evidence": "replay.evidence.export",
    "replay.fsutil": "replay.core.fsutil",
    "replay.history": "replay.store.history",
    "replay.ids": "replay.core.ids",
    "replay.imagetar": "replay.docker.imagetar",
    "replay.keys": "replay.core.keys",
    "replay.kinds": "replay.core.kinds",
    "replay.lazy": "replay.core.lazy",
    "replay.ledger": "replay.store.ledger",
    "replay.lineage": "replay.engine.lineage",
    "replay.loader": "replay.capture.loader",
    "replay.merkle": "replay.core.merkle",
    "replay.models": "replay.capture.models",
    "replay.objects": "replay.store.objects",
    "replay.ownership": "replay.core.ownership",
    "replay.pipeline": "replay.core.pipeline",
    "replay.queries": "replay.catalog.queries",
    "replay.rebuild": "replay.engine.recorded",
    "replay.recordchanges": "replay.engine.records",
    "replay.render": "replay.cli.render",
    "replay.report": "replay.evidence.report",
    "replay.report_context": "replay.evidence.facts",
    "replay.runner": "replay.capture.runner",
    "replay.segments": "replay.store.segments",
    "replay.shapes": "replay.evidence.shapes",
    "replay.stepclock": "replay.engine.stepclock",
    "replay.store": "replay.store.store",
    "replay.tablediff": "replay.engine.tablediff",
    "replay.timeparse": "replay.core.timeparse",
    "replay.timetravel": "replay.engine.timetravel",
    "replay.trust": "replay.core.trust",
    "replay.unpickle": "replay.core.unpickle",
    "replay.verify": "replay.evidence.verify",
    "replay.witness": "replay.evidence.witness",
}


class _Unpickler(pickle.Unpickler):
    """cloudpickle's bytes, loaded as ``cloudpickle.loads`` would (it is ``pickle.loads``),
    with our moved modules found where they are now."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED.get(module, module), name)


def _skops(data: bytes, digest: str) -> Any:
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=data)
    if untrusted:
        raise CaptureError(
            f"skops model {digest} holds types skops does not trust: {', '.join(untrusted)}",
            hint="review them, then load the file with your own loader: "
            "replay.Model(path, loader=lambda p: skops.io.load(p, trusted=[...]))",
        )
    return skops.io.loads(data)
