"""Digests and canonical JSON: the two ways pipeline-replay names content.

A digest is always shown as ``sha256:<hex>``. Tables are hashed through the Arrow IPC stream
of one contiguous batch with schema metadata dropped, so the same values give the same digest
whatever chunking or pandas metadata they arrived with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

import pyarrow as pa

PREFIX = "sha256:"


def sha256(data: bytes | memoryview) -> str:
    return PREFIX + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    """The bare hex of a ``sha256:<hex>`` digest (raises ValueError on anything else)."""
    if not digest.startswith(PREFIX) or len(digest) != len(PREFIX) + 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    hexpart = digest[len(PREFIX):]
    int(hexpart, 16)
    return hexpart


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN/Infinity: one byte string per value."""
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode()


def json_digest(obj: Any) -> str:
    return sha256(canonical_json(obj))


def normalize_table(table: pa.Table) -> pa.Table:
    """One contiguous batch, no schema metadata: the form tables are hashed and stored in."""
    return table.replace_schema_metadata(None).combine_chunks()


def table_bytes(table: pa.Table) -> pa.Buffer:
    """Arrow IPC stream bytes of a normalized table (also the stored form of row data)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _plain_digest(table: pa.Table) -> str:
    return sha256(memoryview(table_bytes(normalize_table(table))))


def digest_parts(table: pa.Table, personal: Collection[str]) -> dict[str, Any] | None:
    """For a table holding personal columns, the digests a redacted copy can still prove:
    the other columns together, and each personal column alone. None without personal data."""
    found = [c for c in table.column_names if c in personal]
    if not found:
        return None
    return {"columns": json_digest(table.column_names),  # the order, without the names
            "rest": _plain_digest(table.drop_columns(found)),
            "personal": {c: _plain_digest(table.select([c])) for c in found}}


def combine_parts(parts: dict[str, Any]) -> str:
    return json_digest({"format": "redactable-1", **parts})


def table_digest(table: pa.Table, personal: Collection[str] = ()) -> str:
    """The content digest of a table; with personal columns, one that survives redaction."""
    parts = digest_parts(table, personal) if personal else None
    return combine_parts(parts) if parts else _plain_digest(table)
