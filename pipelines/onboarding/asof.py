"""As-of lookups: what the bank knew about a customer at a given moment, and nothing later.

Balance snapshots arrive late and get restated, so "the latest snapshot" depends on when one
asks. A decision taken at time `now` may only use snapshots stamped at or before `now`; a
replay of that decision asks with the same `now` and gets the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def latest_as_of(
    table: pa.Table,
    snapshots: pa.Table,
    now: datetime,
    *,
    key: str,
    time: str,
    columns: Sequence[str],
) -> pa.Table:
    """For each row of `table` (same order), `columns` of its `key`'s latest snapshot whose
    `time` is at or before `now`; null where the key has none."""
    stamp = pa.scalar(now, snapshots.schema.field(time).type)
    known = snapshots.filter(pc.less_equal(snapshots[time], stamp))
    known = known.sort_by([(key, "ascending"), (time, "ascending")])
    keys = known[key].to_numpy(zero_copy_only=False)
    # After the sort, a key's latest snapshot is the last row before the key changes.
    last = np.append(keys[1:] != keys[:-1], True) if len(keys) else np.zeros(0, bool)
    latest = known.filter(pa.array(last))
    # index_in + take is a left join that keeps the table's row order (Table.join does not).
    rows = pc.index_in(table[key], value_set=latest[key].combine_chunks())
    return pa.table({name: latest[name].take(rows) for name in columns})
