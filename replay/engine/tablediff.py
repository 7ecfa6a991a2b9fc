"""What differs between two tables: column by column, numbers and vectors within their
tolerances, categories exactly, and per business record. Values, not state: every result is
a frozen dataclass whose truth means "something changed"."""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CATEGORY_SAMPLES = 5
ROW_SAMPLES = 5
ELEMENT_SLICE = 1 << 18  # numbers compared at a time
_LISTS = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
_OFFSETS = {
    pa.large_string(): pa.string(),
    pa.string_view(): pa.string(),
    pa.large_binary(): pa.binary(),
    pa.binary_view(): pa.binary(),
}


@dataclass(frozen=True)
class ColumnDiff:
    """One column that changed: ``col``, ``col#2`` (the second of that name), ``col.field``
    (a struct's), ``col.keys`` / ``col.values`` (a map's). ``max_abs`` is inf where a change
    has no size: to or from null or NaN, a vector of another length."""

    column: str
    rows_changed: int
    max_abs: float | None = None
    max_rel: float | None = None
    tolerance: float | None = None
    changes: tuple[tuple[str, str, int], ...] = ()  # (recorded, replayed, rows), most first
    rows: tuple[int, ...] = ()  # the first few rows that changed

    def __post_init__(self) -> None:
        # Read back from JSON these are lists; the value keeps its tuples (and stays hashable).
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "changes", tuple(tuple(c) for c in self.changes))

    @property
    def within_tolerance(self) -> bool:
        # A zero that changed sign (-0.0 against 0.0) is a change of size 0, so within any
        # declared tolerance: a tolerance says "results this close are the same result", and
        # a sum taken in another order (another BLAS kernel, another thread count) lands on
        # -0.0 for 0.0 exactly as it lands a few ulps away, the noise tolerances are declared
        # for. A step whose decisions read the sign of a zero (1/x, atan2, copysign) must not
        # declare one; without a tolerance the flip is a change like any other bit.
        return (
            self.max_abs is not None
            and self.tolerance is not None
            and math.isfinite(self.max_abs)
            and self.max_abs <= self.tolerance
        )


NOTHING_FOUND = "digests differ; no column difference found (chunking/encoding?)"
SCHEMA_KINDS = ("retyped", "encoding", "nullability", "metadata")


@dataclass(frozen=True)
class TableDiff:
    """What differs between two tables. Beside the values: ``order``, the replayed order of
    the columns both tables have, when it is another; ``retyped``; ``encoding``, columns of
    the same values in another encoding (dictionary or plain, another dictionary, 32- or
    64-bit offsets); ``nullability``, a field nullable on one side only; ``metadata``, a
    field's metadata or a nested field's name or metadata. Each changes the digest, and
    none is within a tolerance. (Schema metadata never reaches a digest.)"""

    rows: tuple[int, int]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    retyped: tuple[str, ...] = ()
    columns: tuple[ColumnDiff, ...] = ()
    order: tuple[str, ...] = ()
    encoding: tuple[str, ...] = ()
    nullability: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Read back from JSON these are lists; the value keeps its tuples (and stays hashable).
        for name in ("rows", "added", "removed", "order", *SCHEMA_KINDS):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "columns", tuple(self.columns))

    def __bool__(self) -> bool:
        return bool(
            self.rows[0] != self.rows[1]
            or self.added
            or self.removed
            or self.columns
            or self.schema_changes()
        )

    @property
    def equivalent(self) -> bool:
        """Only numeric differences, each within the tolerance its pipeline declared, and
        nothing beside the values."""
        return (
            self.rows[0] == self.rows[1]
            and not (self.added or self.removed or self.schema_changes())
            and all(c.within_tolerance for c in self.columns)
        )

    def schema_changes(self) -> tuple[str, ...]:
        """What changed beside the values, in words: ``column order b, a``, ``type of c``."""
        order = (f"column order {', '.join(self.order)}",) if self.order else ()
        words = {
            "retyped": "type",
            "encoding": "encoding",
            "nullability": "nullability",
            "metadata": "metadata",
        }
        return order + tuple(
            f"{words[k]} of {', '.join(getattr(self, k))}" for k in SCHEMA_KINDS if getattr(self, k)
        )

    def reason(self) -> str | None:
        """Why two tables whose digests differ are not the same when no value changed (the
        values' changes are the diff itself): their schemas, or that nothing was found."""
        if self.rows[0] != self.rows[1] or self.added or self.removed or self.columns:
            return None
        changes = self.schema_changes()
        if not changes:
            return NOTHING_FOUND
        return f"digests differ; same values, another schema: {'; '.join(changes)}"


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _is_list(t: pa.DataType) -> bool:
    return any(is_(t) for is_ in _LISTS)


def depth(t: pa.DataType) -> int | None:
    """Levels of lists above a number (0: a number, 1: a vector); None if no number below."""
    if _is_numeric(t):
        return 0
    inner = depth(t.value_type) if _is_list(t) else None
    return None if inner is None else inner + 1


def _py_text(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=repr)
    return repr(value)


def _as_text(col: pa.Array) -> pa.Array:
    """Each value as text, null as ∅: Arrow's cast where it has one; nested values as JSON
    and the few types Arrow cannot cast (bytes not UTF-8, intervals) through Python."""
    if not pa.types.is_nested(col.type):
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pc.fill_null(pc.cast(col, pa.string()), "∅")
    return pa.array([_py_text(v) for v in col.to_pylist()], pa.string())


def _common_type(x: pa.DataType, y: pa.DataType) -> pa.DataType:
    """Integers stay integers, so 2**53 and 2**53 + 1 still differ; mixed with uint64 they
    have no exact common type and go to float64 like everything else."""
    if x == y and pa.types.is_floating(x):
        return x  # float32 embeddings stay float32: half the memory to compare
    if not (pa.types.is_integer(x) and pa.types.is_integer(y)):
        return pa.float64()
    if x == y == pa.uint64():
        return pa.uint64()
    return pa.float64() if pa.uint64() in (x, y) else pa.int64()


def _sizes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|x - y| and its ratio to the larger magnitude, element by element, in float64."""
    wide_x, wide_y = x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)
    if x.dtype.kind in "iu":
        hi, lo = np.maximum(x, y), np.minimum(x, y)
        # Unsigned arithmetic wraps: the exact gap even where x - y overflows int64.
        delta = (hi.astype(np.uint64) - lo.astype(np.uint64)).astype(np.float64)
    else:  # float32 - float32 is exact in float64
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: sized by the caller
            delta = np.abs(wide_x - wide_y)
    scale = np.maximum(np.abs(wide_x), np.abs(wide_y))
    # A change of size 0 (a zero that changed sign) is 0 relative to anything.
    rel = np.divide(
        delta, scale, out=np.where(delta == 0, 0.0, np.inf), where=np.isfinite(delta) & (scale > 0)
    )
    return delta, rel


def elements(x: pa.Array, y: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which paired numbers changed, and (for those) by how much, absolute and relative.
    NaN and NaN are the same; a change to or from null or NaN has no size: inf; -0.0 and
    0.0 differ (as their digests do), by 0."""
    target = _common_type(x.type, y.type)
    # Unsafe only where the target is float64: an integer past 2**53 rounds, never wraps.
    vx, vy = (
        pc.fill_null(pc.cast(v, target, safe=False), 0).to_numpy(zero_copy_only=False)
        for v in (x, y)
    )
    ok_x, ok_y = (v.is_valid().to_numpy(zero_copy_only=False) for v in (x, y))
    nan_x, nan_y, sign_x, sign_y = (
        f(v) if v.dtype.kind == "f" else np.zeros(len(v), bool)
        for f in (np.isnan, np.signbit)
        for v in (vx, vy)
    )
    changed = (ok_x != ok_y) | (ok_x & ok_y & ((vx != vy) | (sign_x != sign_y)) & ~(nan_x & nan_y))
    sizeless = ((ok_x != ok_y) | (nan_x != nan_y))[changed]
    delta, rel = _sizes(vx[changed], vy[changed])
    delta[sizeless], rel[sizeless] = np.inf, np.inf
    return changed, delta, rel


def _leaves(a: pa.Array, b: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]:
    """The numbers under two columns of (nested) lists, paired, with the row each is from;
    and the rows set aside because a list there is null on one side or of another length."""
    rows, reshaped = np.arange(len(a)), [np.empty(0, np.intp)]
    while _is_list(a.type):
        la, lb = (pc.fill_null(pc.list_value_length(v), -1).to_numpy() for v in (a, b))
        same = la == lb
        reshaped.append(rows[~same])
        if not same.all():  # filtering copies every value: only when some rows must go
            keep = pa.array(same)
            a, b = a.filter(keep), b.filter(keep)
        a, b = pc.list_flatten(a), pc.list_flatten(b)
        rows = np.repeat(rows[same], np.maximum(la[same], 0))  # a null list has no values
    return a, b, rows, np.concatenate(reshaped)


def _numeric(column: str, a: pa.Array, b: pa.Array, tolerance: float | None) -> ColumnDiff | None:
    """Numbers or vectors of numbers, element by element; a row changed if any element did."""
    x, y, rows, reshaped = _leaves(a, b)
    moved = np.zeros(len(a), bool)
    moved[reshaped] = True
    # A vector of another length is a change no tolerance covers.
    max_abs = max_rel = math.inf if reshaped.size else 0.0
    for start in range(0, len(x), ELEMENT_SLICE):  # scratch of a few MB, not gigabytes
        changed, delta, rel = elements(x.slice(start, ELEMENT_SLICE), y.slice(start, ELEMENT_SLICE))
        moved[rows[start : start + ELEMENT_SLICE][changed]] = True
        max_abs = max(max_abs, float(delta.max(initial=0.0)))
        max_rel = max(max_rel, float(rel.max(initial=0.0)))
    hit = np.flatnonzero(moved)
    return (
        ColumnDiff(
            column,
            int(hit.size),
            max_abs,
            max_rel,
            tolerance,
            rows=tuple(int(r) for r in hit[:ROW_SAMPLES]),
        )
        if hit.size
        else None
    )


def _categorical(column: str, a: pa.Array, b: pa.Array) -> ColumnDiff | None:
    ta, tb = _as_text(a), _as_text(b)
    changed = pc.not_equal(ta, tb)
    count = pc.sum(changed).as_py() or 0
    if not count:
        return None
    pairs = pa.table({"a": pc.filter(ta, changed), "b": pc.filter(tb, changed)})
    top = (
        pairs.group_by(["a", "b"])
        .aggregate([([], "count_all")])
        .sort_by([("count_all", "descending")])
        .slice(0, CATEGORY_SAMPLES)
    )
    hit = np.flatnonzero(changed.to_numpy(zero_copy_only=False))[:ROW_SAMPLES]
    return ColumnDiff(
        column,
        count,
        changes=tuple((r["a"], r["b"], r["count_all"]) for r in top.to_pylist()),
        rows=tuple(int(r) for r in hit),
    )


def _entries(m: pa.Array) -> tuple[pa.Array, pa.Array]:
    """A map's keys and its values as two list arrays, row for row."""
    # keys and items ignore a slice's offset, and a null mask wants offsets from 0.
    offsets = m.offsets.to_numpy()
    start, stop = int(offsets[0]), int(offsets[-1])
    fresh, mask = pa.array(offsets - start, pa.int32()), m.is_null()
    return (
        pa.ListArray.from_arrays(fresh, m.keys.slice(start, stop - start), mask=mask),
        pa.ListArray.from_arrays(fresh, m.items.slice(start, stop - start), mask=mask),
    )


def _labelled(names: list[str], arrays: list[Any]) -> dict[str, tuple[str, Any]]:
    """Label -> (name, array), by position: a repeated name is name#2, name#3, ..."""
    seen: Counter[str] = Counter()
    out = {}
    for name, array in zip(names, arrays, strict=True):
        seen[name] += 1
        out[name if seen[name] == 1 else f"{name}#{seen[name]}"] = (name, array)
    return out


def _struct(
    label: str, a: pa.Array, b: pa.Array, tolerance: float | None, tolerances: dict[str, float]
) -> list[ColumnDiff]:
    """Field by field, as label.field; a field without a tolerance of its own has its
    struct's."""
    # A null struct and one whose fields are null look alike field by field.
    present = _categorical(label, *(pc.if_else(s.is_null(), "∅", "{…}") for s in (a, b)))
    out = [] if present is None else [present]
    fa = _labelled(a.type.names, a.flatten())  # flatten: the struct's nulls in each field
    fb = _labelled(b.type.names, b.flatten())
    for f in (f for f in fa if f in fb):
        name = f"{label}.{f}"
        out += _compare(name, fa[f][1], fb[f][1], tolerances.get(name, tolerance), tolerances)
    return out


def _map(
    label: str, a: pa.Array, b: pa.Array, tolerance: float | None, tolerances: dict[str, float]
) -> list[ColumnDiff]:
    """Keys exactly, as label.keys; values by their type, as label.values."""
    (ka, va), (kb, vb) = _entries(a), _entries(b)
    keys = _categorical(f"{label}.keys", ka, kb)
    values = _compare(
        f"{label}.values", va, vb, tolerances.get(f"{label}.values", tolerance), tolerances
    )
    return values if keys is None else [keys, *values]


def _compare(
    label: str, a: pa.Array, b: pa.Array, tolerance: float | None, tolerances: dict[str, float]
) -> list[ColumnDiff]:
    """Structs field by field, maps as exact keys and values by type, numbers and vectors of
    numbers element by element, anything else exactly, as categories."""
    if pa.types.is_struct(a.type) and pa.types.is_struct(b.type):
        return _struct(label, a, b, tolerance, tolerances)
    if pa.types.is_map(a.type) and pa.types.is_map(b.type):
        return _map(label, a, b, tolerance, tolerances)
    levels = depth(a.type)
    found = (
        _numeric(label, a, b, tolerance)
        if levels is not None and levels == depth(b.type)
        else _categorical(label, a, b)
    )
    return [] if found is None else [found]


def _plain(t: pa.DataType) -> pa.DataType:
    """A type without its encoding: a dictionary's values; 32-bit offsets for 64 or views."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    return _OFFSETS.get(t, t)


def _bare(f: pa.Field) -> bytes:
    """A field as a digest sees it, but nullable and without metadata of its own."""
    return bytes(pa.schema([f.with_nullable(True).remove_metadata()]).serialize())


def _field_changes(a: pa.Field, b: pa.Field) -> list[str]:
    """How one column's field changed beside its values: kinds of SCHEMA_KINDS."""
    kinds = []
    if a.type != b.type:
        kinds.append("encoding" if _plain(a.type) == _plain(b.type) else "retyped")
    if a.nullable != b.nullable:
        kinds.append("nullability")
    # pyarrow's type equality ignores nested fields' names and metadata; a digest does not.
    if (a.metadata or {}) != (b.metadata or {}) or (a.type == b.type and _bare(a) != _bare(b)):
        kinds.append("metadata")
    return kinds


def _beside_values(
    recorded: pa.Table, replayed: pa.Table, ca: dict[str, Any], cb: dict[str, Any]
) -> TableDiff:
    """Everything that differs but the values: rows, columns added and removed, their
    order, and the fields of the columns both have, by kind of change."""
    common = [c for c in ca if c in cb]
    fa = _labelled(recorded.column_names, list(recorded.schema))
    fb = _labelled(replayed.column_names, list(replayed.schema))
    found: dict[str, list[str]] = {kind: [] for kind in SCHEMA_KINDS}
    for c in common:
        for kind in _field_changes(fa[c][1], fb[c][1]):
            found[kind].append(c)
    order = [c for c in cb if c in ca]
    return TableDiff(
        (recorded.num_rows, replayed.num_rows),
        tuple(sorted(cb.keys() - ca.keys())),
        tuple(sorted(ca.keys() - cb.keys())),
        tuple(found["retyped"]),
        order=() if order == common else tuple(order),
        encoding=tuple(found["encoding"]),
        nullability=tuple(found["nullability"]),
        metadata=tuple(found["metadata"]),
    )


def _has_floats(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _has_floats(t.value_type)
    return pa.types.is_floating(t) or any(_has_floats(t.field(i).type) for i in range(t.num_fields))


def _values(
    ca: dict[str, tuple[str, Any]],
    cb: dict[str, tuple[str, Any]],
    common: list[str],
    tolerances: dict[str, float],
) -> tuple[list[ColumnDiff], set[str]]:
    """The changes of the common columns' values; and the dictionary columns whose values
    are the same though their dictionaries or indices are not (another encoding)."""
    columns: list[ColumnDiff] = []
    encoded = set()
    for c in common:
        (name, a), (_, b) = ca[c], cb[c]
        if a.type == b.type and a.equals(b) and not _has_floats(a.type):
            continue  # (equals holds -0.0 and 0.0 the same)
        a, b = a.combine_chunks(), b.combine_chunks()
        found = _compare(c, a, b, tolerances.get(c, tolerances.get(name)), tolerances)
        if not found and pa.types.is_dictionary(a.type) and not a.equals(b):
            encoded.add(c)
        columns += found
    return columns, encoded


def compare_tables(
    recorded: pa.Table, replayed: pa.Table, tolerances: dict[str, float] | None = None
) -> TableDiff:
    """Column by column: rows changed, largest differences, changed categories; and what
    changed beside the values (order, types, encodings, nullability, metadata). Columns
    that share a name are compared by position, as name, name#2, ..."""
    ca = _labelled(recorded.column_names, recorded.columns)
    cb = _labelled(replayed.column_names, replayed.columns)
    common = [c for c in ca if c in cb]
    diff = _beside_values(recorded, replayed, ca, cb)
    if diff.rows[0] != diff.rows[1] or not diff.rows[0]:  # no values to pair up
        return diff
    columns, encoded = _values(ca, cb, common, tolerances or {})
    return replace(
        diff,
        columns=tuple(columns),
        encoding=tuple(c for c in common if c in encoded or c in diff.encoding),
    )
