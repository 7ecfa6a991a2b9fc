"""What differs: between two tables, two specs and two environments. Values, not state:
every result is a frozen dataclass whose truth means "something changed"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CATEGORY_SAMPLES = 5


@dataclass(frozen=True)
class ColumnDiff:
    column: str
    rows_changed: int
    max_abs: float | None = None
    max_rel: float | None = None
    tolerance: float | None = None
    changes: tuple[tuple[str, str, int], ...] = ()  # (recorded, replayed, rows), most first

    @property
    def within_tolerance(self) -> bool:
        return (self.max_abs is not None and self.tolerance is not None
                and self.max_abs <= self.tolerance)


@dataclass(frozen=True)
class TableDiff:
    rows: tuple[int, int]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    retyped: tuple[str, ...] = ()
    columns: tuple[ColumnDiff, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rows[0] != self.rows[1] or self.added or self.removed or self.retyped
                    or self.columns)

    @property
    def equivalent(self) -> bool:
        """Only numeric differences, each within the tolerance its pipeline declared."""
        return (self.rows[0] == self.rows[1] and not (self.added or self.removed
                                                       or self.retyped)
                and all(c.within_tolerance for c in self.columns))


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        col = pc.binary_join(pc.cast(col, pa.list_(pa.string())), "; ")
    return pc.fill_null(pc.cast(col, pa.string()), "∅")


def _numeric(column: str, a: pa.ChunkedArray, b: pa.ChunkedArray,
             tolerance: float | None) -> ColumnDiff | None:
    x = a.to_numpy(zero_copy_only=False).astype(np.float64)
    y = b.to_numpy(zero_copy_only=False).astype(np.float64)
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    if same.all():
        return None
    delta = np.abs(x - y)[~same]
    scale = np.maximum(np.abs(x), np.abs(y))[~same]
    rel = np.divide(delta, scale, out=np.full_like(delta, np.inf), where=scale > 0)
    return ColumnDiff(column, int((~same).sum()), float(np.nanmax(delta)),
                      float(np.nanmax(rel)), tolerance)


def _categorical(column: str, a: pa.ChunkedArray, b: pa.ChunkedArray) -> ColumnDiff | None:
    ta, tb = _as_text(a), _as_text(b)
    changed = pc.not_equal(ta, tb)
    count = pc.sum(changed).as_py() or 0
    if not count:
        return None
    pairs = pa.table({"a": pc.filter(ta, changed), "b": pc.filter(tb, changed)})
    top = pairs.group_by(["a", "b"]).aggregate([([], "count_all")]).sort_by(
        [("count_all", "descending")]).slice(0, CATEGORY_SAMPLES)
    return ColumnDiff(column, count, changes=tuple(
        (r["a"], r["b"], r["count_all"]) for r in top.to_pylist()))


def compare_tables(recorded: pa.Table, replayed: pa.Table,
                   tolerances: dict[str, float] | None = None) -> TableDiff:
    """Column by column: rows changed, largest differences, changed categories."""
    tolerances = tolerances or {}
    ra, rb = set(recorded.column_names), set(replayed.column_names)
    common = [c for c in recorded.column_names if c in rb]
    retyped = tuple(c for c in common if recorded.schema.field(c).type
                    != replayed.schema.field(c).type)
    diff = TableDiff((recorded.num_rows, replayed.num_rows),
                     tuple(sorted(rb - ra)), tuple(sorted(ra - rb)), retyped)
    if recorded.num_rows != replayed.num_rows:
        return diff
    columns = []
    for c in common:
        a, b = recorded.column(c), replayed.column(c)
        if c not in retyped and a.equals(b):
            continue
        if _is_numeric(a.type) and _is_numeric(b.type):
            found = _numeric(c, a, b, tolerances.get(c))
        else:
            found = _categorical(c, a, b)
        if found is not None:
            columns.append(found)
    return TableDiff(diff.rows, diff.added, diff.removed, retyped, tuple(columns))


@dataclass(frozen=True)
class RecordChange:
    key: str
    flipped: bool  # a category changed (a decision, a reason code), not just a score
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def record_changes(before: pa.Table, after: pa.Table, key: str | None) -> list[RecordChange]:
    """Per business record: what changed between two outputs, decision flips first."""
    if key is None or key not in before.column_names or key not in after.column_names:
        before = before.append_column("#row", pa.array(range(before.num_rows)))
        after = after.append_column("#row", pa.array(range(after.num_rows)))
        key = "#row"
    columns = [c for c in before.column_names if c in after.column_names and c != key]
    index = {str(k): i for i, k in enumerate(after.column(key).to_pylist())}
    b_rows, a_rows = before.to_pylist(), after.to_pylist()
    out = []
    for row in b_rows:
        j = index.get(str(row[key]))
        if j is None:
            continue
        changes = {c: (row[c], a_rows[j][c]) for c in columns if row[c] != a_rows[j][c]}
        if changes:
            flipped = any(not isinstance(v[0], (int, float)) or isinstance(v[0], bool)
                          for v in changes.values())
            out.append(RecordChange(str(row[key]), flipped, changes))
    return sorted(out, key=lambda r: (not r.flipped, r.key))


@dataclass(frozen=True)
class Change:
    """One component or environment field that differs: where, what, before, after."""

    where: str
    what: str
    before: Any
    after: Any


def spec_changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Components that differ between two pipeline specs, step by step."""
    out: list[Change] = []
    steps_a = {s["name"]: s for s in a["steps"]}
    steps_b = {s["name"]: s for s in b["steps"]}
    for name in [*steps_a, *(n for n in steps_b if n not in steps_a)]:
        sa, sb = steps_a.get(name), steps_b.get(name)
        if sa is None or sb is None:
            out.append(Change(name, "step", "present" if sa else None,
                              "present" if sb else None))
            continue
        for kind in ("code", "params", "inputs"):
            if sa.get(kind) != sb.get(kind):
                out.append(Change(name, kind, sa.get(kind), sb.get(kind)))
        for kind, key in (("models", "digest"), ("data", "sha256")):
            for comp in sorted(set(sa[kind]) | set(sb[kind])):
                va, vb = sa[kind].get(comp, {}), sb[kind].get(comp, {})
                if va.get(key) != vb.get(key):
                    label = "model" if kind == "models" else "data"
                    out.append(Change(name, f"{label} {comp}", _describe(va, key),
                                      _describe(vb, key)))
    return out


def _describe(component: dict[str, Any], key: str) -> Any:
    dvc = component.get("dvc")
    if dvc:
        return {"sha256": component[key], "dvc_rev": dvc["rev"], "dvc_md5": dvc["md5"]}
    return component.get(key)


ENV_FIELDS = (("python", ("python", "version")), ("platform", ("platform", "release")),
              ("machine", ("platform", "machine")), ("cpu", ("cpu", "model")),
              ("numpy", ("blas", "numpy")), ("blas", ("blas", "build")),
              ("thread pools", ("blas", "threadpools")), ("thread settings", ("threads",)),
              ("packages", ("packages", "lock_sha256")), ("image", ("image", "digest")))


def _get(env: dict[str, Any], path: tuple[str, ...]) -> Any:
    for p in path:
        env = env.get(p, {}) if isinstance(env, dict) else {}
    return env if env != {} else None


def env_changes(recorded: dict[str, Any], current: dict[str, Any],
                locks: tuple[list[str], list[str]] | None = None) -> list[Change]:
    """Environment drift, field by field; with both package locks, the packages that moved."""
    out = [Change("environment", name, _get(recorded, path), _get(current, path))
           for name, path in ENV_FIELDS if _get(recorded, path) != _get(current, path)]
    fa, fb = set(recorded.get("cpu", {}).get("flags", [])), set(current.get("cpu", {})
                                                              .get("flags", []))
    if fa != fb:
        out.append(Change("environment", "cpu flags", sorted(fa - fb), sorted(fb - fa)))
    if locks is not None:
        old, new = (dict(p.split("==", 1) for p in lock) for lock in locks)
        for pkg in sorted(set(old) | set(new)):
            if old.get(pkg) != new.get(pkg):
                out.append(Change("package", pkg, old.get(pkg), new.get(pkg)))
    return out
