"""The IPC form of the tables of one schema, worked out once and kept for the next run.

A normalized table's Arrow IPC stream is its schema message, its record batch messages and
an end marker. For a 1-row table the schema message is most of the bytes and of the work,
and a table with personal columns is hashed as several streams (its other columns, each
personal column alone; see ``digest_parts``), then stored as one more. Capture meets the
same schemas run after run: a ``TableForm`` keeps a schema's messages and where its
personal columns are, so a run serializes only its record batches, into the very bytes
``table_bytes`` writes and the very digests ``digest_parts`` gives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from replay.core.digest import (
    PREFIX,
    array_identity,
    digest_parts,
    has_identity,
    ipc_digest,
    names_digest,
    table_bytes,
)

EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # an IPC stream's end-of-stream marker


class _Message:
    """A schema message, and the hash of a stream that begins with it (copied, not redone:
    a 20-column schema message is a kilobyte)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.data = bytes(schema.serialize())
        self._hashed = hashlib.sha256(self.data)

    def digest(self, batch: pa.RecordBatch) -> str:
        """The digest of the IPC stream of ``batch`` after this message."""
        h = self._hashed.copy()
        h.update(batch.serialize())
        h.update(EOS)
        return PREFIX + h.hexdigest()


@dataclass(frozen=True)
class _Personal:
    name: str
    index: int
    message: _Message  # of this column alone
    identity: bool  # whether its arrays have one (see ``column_identity``)


@dataclass(frozen=True)
class _Split:
    """How ``digest_parts`` splits a table of the form."""

    columns: str  # the digest of the column order
    rest_message: _Message  # of the other columns, in order
    personal: tuple[_Personal, ...]


@dataclass(frozen=True)
class TableForm:
    schema: pa.Schema
    message: _Message | None  # None: dictionaries: the IPC writer sends batches of their own
    found: tuple[str, ...]  # the personal columns, in table order (names may repeat)
    split: _Split | None  # None: no personal column, or one named twice (digest_parts then)
    reusable: bool  # not with extension types: their authors define when two are equal

    @classmethod
    def of(cls, schema: pa.Schema, personal: Collection[str]) -> TableForm:
        """The form of normalized tables of ``schema`` (no schema metadata)."""
        kinds = _kinds(schema)
        message = None if pa.DictionaryType in kinds else _Message(schema)
        found = tuple(c for c in schema.names if c in personal)
        split = None
        rest = [f for f in schema if f.name not in personal]
        if message is not None and found and rest and len(set(found)) == len(found):
            split = _Split(
                names_digest(tuple(schema.names)),
                _Message(pa.schema(rest)),
                tuple(
                    _Personal(c, i, _Message(pa.schema([f])), has_identity(f.type))
                    for i, (c, f) in enumerate(zip(schema.names, schema, strict=True))
                    if c in personal
                ),
            )
        reusable = not any(issubclass(k, pa.BaseExtensionType) for k in kinds)
        return cls(schema, message, found, split, reusable)

    def fits(self, schema: pa.Schema) -> bool:
        """Whether tables of ``schema`` have this form (fields, types and metadata alike)."""
        return self.reusable and schema.equals(self.schema, check_metadata=True)

    def stream(self, table: pa.Table) -> pa.Buffer:
        """``table_bytes(table)`` of a normalized table of this form."""
        return self._stream(table, self._batch(table))

    def stored(
        self, table: pa.Table, memo: dict[tuple[Any, ...], str] | None
    ) -> tuple[dict[str, Any] | None, pa.Buffer]:
        """``parts(table, memo)`` and ``stream(table)``, from one look at its batch."""
        batch = self._batch(table)
        return self._parts(table, batch, memo), self._stream(table, batch)

    def _stream(self, table: pa.Table, batch: pa.RecordBatch | None) -> pa.Buffer:
        if self.message is None or batch is None:
            return table_bytes(table)
        return pa.py_buffer(b"".join((self.message.data, batch.serialize(), EOS)))

    def digest(self, table: pa.Table) -> str:
        """``ipc_digest(table)`` of a normalized table of this form."""
        batch = self._batch(table)
        if self.message is None or batch is None:
            return ipc_digest(table)
        return self.message.digest(batch)

    def parts(
        self, table: pa.Table, memo: dict[tuple[Any, ...], str] | None
    ) -> dict[str, Any] | None:
        """``digest_parts(table, personal, memo)`` of a normalized table of this form."""
        return self._parts(table, self._batch(table), memo) if self.found else None

    def _parts(
        self,
        table: pa.Table,
        batch: pa.RecordBatch | None,
        memo: dict[tuple[Any, ...], str] | None,
    ) -> dict[str, Any] | None:
        if not self.found:
            return None
        split = self.split
        if split is None or batch is None:
            return digest_parts(table, self.found, memo)
        rest = batch
        for column in reversed(split.personal):  # faster than selecting the others
            rest = rest.remove_column(column.index)
        return {
            "columns": split.columns,
            "rest": split.rest_message.digest(rest),
            "personal": {c.name: self._personal(c, batch, memo) for c in split.personal},
        }

    @staticmethod
    def _personal(
        column: _Personal, batch: pa.RecordBatch, memo: dict[tuple[Any, ...], str] | None
    ) -> str:
        if memo is None or not column.identity:
            return column.message.digest(batch.select([column.index]))
        # A column passed along unchanged is hashed once a run: its one-column schema and
        # its buffers name the stream hashed (bytes hash faster than a field).
        key = (column.message.data, *array_identity(batch.column(column.index)))
        if key not in memo:
            memo[key] = column.message.digest(batch.select([column.index]))
        return memo[key]

    @staticmethod
    def _batch(table: pa.Table) -> pa.RecordBatch | None:
        # The writer writes a table batch by batch; a normalized table with rows is one.
        batches = table.to_batches()
        return batches[0] if len(batches) == 1 else None


class Forms:
    """The last form seen of each kind of table (the input, each step's output) of one
    pipeline: bounded by its tables, and a schema that changes simply replaces it."""

    def __init__(self, personal: Collection[str]) -> None:
        self._personal = personal
        self._last: dict[str, TableForm] = {}

    def of(self, kind: str, schema: pa.Schema) -> TableForm:
        form = self._last.get(kind)
        if form is None or not form.fits(schema):
            form = self._last[kind] = TableForm.of(schema, self._personal)
        return form


def _kinds(schema: pa.Schema) -> set[type]:
    """The classes of every type in ``schema``, nested ones too."""
    kinds: set[type] = set()
    todo = list(schema.types)
    while todo:
        kind = todo.pop()
        kinds.add(type(kind))
        todo += [kind.field(i).type for i in range(kind.num_fields)]
        if isinstance(kind, pa.BaseExtensionType):
            todo.append(kind.storage_type)
    return kinds
