"""Digests and canonical JSON: the two ways pipeline-replay names content.

A digest is always shown as ``sha256:<hex>``. Tables are hashed through the Arrow IPC stream
of one contiguous batch with schema metadata dropped, so the same values give the same digest
whatever chunking or pandas metadata they arrived with.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Collection
from typing import Any

import msgspec
import pyarrow as pa

PREFIX = "sha256:"


def sha256(data: bytes | memoryview) -> str:
    return PREFIX + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    """The bare hex of a ``sha256:<hex>`` digest (raises ValueError on anything else)."""
    if not digest.startswith(PREFIX) or len(digest) != len(PREFIX) + 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    hexpart = digest[len(PREFIX) :]
    int(hexpart, 16)
    return hexpart


# What json.dumps(obj, **these options) would make for every call, made once.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN/Infinity: one byte string per value."""
    return _CANONICAL.encode(obj).encode()


def json_digest(obj: Any) -> str:
    return sha256(canonical_json(obj))


def normalize_table(table: pa.Table) -> pa.Table:
    """One contiguous batch, no schema metadata: the form tables are hashed and stored in."""
    # In this order: combining a table just made by replace_schema_metadata costs 14 µs more
    # (pyarrow 25). A step's output usually has no metadata left to drop: a 1-row credit run
    # normalizes five tables, each after a step has left the caches cold.
    table = table.combine_chunks()
    return table if table.schema.metadata is None else table.replace_schema_metadata(None)


def table_bytes(table: pa.Table) -> pa.Buffer:
    """Arrow IPC stream bytes of a normalized table (also the stored form of row data)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def column_identity(field: pa.Field, column: pa.ChunkedArray) -> tuple[Any, ...] | None:
    """What makes two columns the same without reading them: the same buffers, offset,
    length and field. Nested and dictionary arrays hold state (child offsets, dictionaries)
    that their buffer list does not show, so they get no identity. Only meaningful while
    both columns are alive: a freed buffer's address can be reused."""
    if column.num_chunks != 1 or not has_identity(field.type):
        return None
    return (field.with_name(""), *array_identity(column.chunk(0)))


def has_identity(kind: pa.DataType) -> bool:
    return not (pa.types.is_nested(kind) or pa.types.is_dictionary(kind))


def array_identity(arr: pa.Array) -> tuple[Any, ...]:
    """``column_identity`` of an array of a type that has one, but for its field."""
    return (
        len(arr),
        arr.offset,
        tuple((b.address, b.size) if b is not None else None for b in arr.buffers()),
    )


def ipc_digest(table: pa.Table) -> str:
    """The digest of a normalized table."""
    return sha256(memoryview(table_bytes(table)))


@functools.lru_cache(maxsize=256)
def names_digest(names: tuple[str, ...]) -> str:
    return json_digest(list(names))


def digest_parts(
    table: pa.Table, personal: Collection[str], memo: dict[tuple[Any, ...], str] | None = None
) -> dict[str, Any] | None:
    """For a normalized table holding personal columns, the digests a redacted copy can still
    prove: the other columns together, and each personal column alone. None without personal
    data. ``memo`` (kept only while the tables are alive) digests a personal column that
    several tables of a run pass along once."""
    found = [c for c in table.column_names if c in personal]
    if not found:
        return None
    return {
        "columns": names_digest(tuple(table.column_names)),  # the order, without the names
        "rest": ipc_digest(table.drop_columns(found)),
        "personal": {c: _column_digest(table, c, memo) for c in found},
    }


def _column_digest(table: pa.Table, name: str, memo: dict[tuple[Any, ...], str] | None) -> str:
    i = table.schema.get_field_index(name)  # -1 when the name is not unique
    key = column_identity(table.schema.field(i), table.column(i)) if i >= 0 else None
    if memo is None or key is None:
        return ipc_digest(table.select([name]))
    key = (name, *key)  # the name is part of the one-column table that is hashed
    if key not in memo:
        memo[key] = ipc_digest(table.select([name]))
    return memo[key]


def combine_parts(parts: dict[str, Any]) -> str:
    return sha256(text_json({"format": "redactable-1", **parts}))


# msgspec writes text, integers and dicts of them (keys sorted) byte for byte as
# canonical_json does (tests/test_manifest_json.py), several times faster.
_SORTED = msgspec.json.Encoder(order="sorted").encode


def text_json(obj: dict[str, Any]) -> bytes:
    """``canonical_json(obj)``; fast for a dict of text and integers (four tables' parts and
    two ledger lines a run), the exact way for anything else."""
    return _SORTED(obj) if _text_or_ints(obj) else canonical_json(obj)


def _text_or_ints(obj: dict[Any, Any]) -> bool:
    for k, v in obj.items():  # a loop, not all() over a generator: a third of the time
        if type(k) is not str:
            return False
        if type(v) is not str and type(v) is not int and not (type(v) is dict and _text_or_ints(v)):
            return False
    return True


def table_digest(table: pa.Table, personal: Collection[str] = ()) -> str:
    """The content digest of a table; with personal columns, one that survives redaction."""
    table = normalize_table(table)
    parts = digest_parts(table, personal) if personal else None
    return combine_parts(parts) if parts else ipc_digest(table)
