"""What changed per business record between two outputs of a pipeline (a counterfactual, a
diff of two runs): decision flips first, vectors shown by how far they moved."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from replay.engine.tablediff import depth, elements


@dataclass(frozen=True)
class RecordChange:
    key: str
    flipped: bool  # a category changed (a decision, a reason code), not just a score/vector
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def _numeric_columns(before: pa.Table, after: pa.Table) -> tuple[set[str], set[str]]:
    """Columns of numbers on both sides, and among them the vectors."""
    da, db = ({f.name: depth(f.type) for f in t.schema} for t in (before, after))
    numeric = {c for c, d in da.items() if d is not None and db.get(c) is not None}
    return numeric, {c for c in numeric if da[c] and db[c]}


def _count(values: list[Any] | None) -> str | None:
    return None if values is None else f"{len(values)} values"


def _flat(value: list[Any]) -> list[Any]:
    return [x for v in value for x in (_flat(v) if isinstance(v, list) else [v])]


def _vector_change(before: Any, after: Any) -> tuple[str | None, str | None]:
    """A changed vector as its size and how far it moved, not hundreds of numbers."""
    xs, ys = (None if v is None else _flat(v) for v in (before, after))
    if xs is None or ys is None or len(xs) != len(ys):
        return _count(xs), _count(ys)
    # Shown, not judged: float64 (null as NaN) is precise enough to say how far.
    _, delta, _ = elements(*(pa.array(np.array(v, np.float64)) for v in (xs, ys)))
    return _count(xs), f"max |Δ| {delta.max(initial=0.0):.3g}"


def record_changes(
    before: pa.Table, after: pa.Table, key: str | None, decisions: Collection[str] = ()
) -> list[RecordChange]:
    """Per business record: what changed between two outputs, decision flips first. A flip
    is a change of a declared decision column; without any declared, of a column that is not
    a number or a vector of numbers. Vectors are shown by how far they moved."""
    if key is None or key not in before.column_names or key not in after.column_names:
        before = before.append_column("#row", pa.array(range(before.num_rows)))
        after = after.append_column("#row", pa.array(range(after.num_rows)))
        key = "#row"
    columns = [c for c in before.column_names if c in after.column_names and c != key]
    numeric, vectors = _numeric_columns(before, after)
    index = {str(k): i for i, k in enumerate(after.column(key).to_pylist())}
    b_rows, a_rows = before.to_pylist(), after.to_pylist()
    out = []
    for row in b_rows:
        j = index.get(str(row[key]))
        if j is None:
            continue
        changes = {c: (row[c], a_rows[j][c]) for c in columns if row[c] != a_rows[j][c]}
        if changes:
            flipped = any(c in decisions if decisions else c not in numeric for c in changes)
            out.append(
                RecordChange(
                    str(row[key]),
                    flipped,
                    {c: _vector_change(*v) if c in vectors else v for c, v in changes.items()},
                )
            )
    return sorted(out, key=lambda r: (not r.flipped, r.key))
