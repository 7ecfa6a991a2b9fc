"""find and time-range queries over a store holding 10 million recorded rows.

    python benchmarks/bench_query.py [--runs 1000] [--rows 10000]

Builds the store with a one-step pipeline (the fast path: batches of --rows rows), lets the
catalog ingest it once, then times `find KEY` and a time-range `runs` query as a user would
call them (each opens the catalog and refreshes it first). Goal: < 200 ms each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from bench_capture import timed

import replay
from replay.catalog import queries

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = replay.Store.open(Path(tmp) / "store", durable=False)
        pipe = replay.Pipeline("bulk", [replay.Step("id", lambda t: t)])
        t0 = time.perf_counter()
        for i in range(args.runs):
            ids = np.arange(i * args.rows, (i + 1) * args.rows)
            batch = pa.table(
                {"key": pa.array([f"K{n:09d}" for n in ids]), "x": pa.array(ids, pa.float64())}
            )
            replay.record(pipe, batch, store=store, record_key="key", at=T0 + timedelta(minutes=i))
        store.flush()
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        total = queries.sql(store, "select count(*) as n from records").column(0)[0].as_py()
        ingest = time.perf_counter() - t0
        probe = [f"K{n:09d}" for n in np.random.default_rng(1).integers(0, total, 20)]
        find = [timed(lambda k=k: queries.find(store, k), 1) for k in probe]
        window = [
            timed(
                lambda i=i: queries.runs(
                    store, since=T0 + timedelta(minutes=i), until=T0 + timedelta(minutes=i + 30)
                ),
                1,
            )
            for i in range(0, args.runs, max(1, args.runs // 20))
        ]
    print(
        f"store: {args.runs} runs, {total:,} recorded rows "
        f"(recorded in {built:.1f} s, catalog ingest {ingest:.1f} s, once)"
    )
    print(f"{'query':34} {'median ms':>10} {'max ms':>8}")
    for name, times in (("find KEY", find), ("runs --since/--until (30 min)", window)):
        print(f"{name:34} {statistics.median(times) * 1e3:10.1f} {max(times) * 1e3:8.1f}")


if __name__ == "__main__":
    main()
