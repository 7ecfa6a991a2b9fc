"""The capture cost alone, against the machine's limits for the same bytes.

    python benchmarks/bench_limits.py [--runs N]

A one-step no-op pipeline is recorded durably, one 1-row run at a time; its cost per run is
set against what the bytes it writes (segment block and commit frame + ledger line) cost the
machine at the least: one sha256 over them, and one write + fsync of them to a file in the
same folder.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from bench_capture import fsynced_writes, timed

import replay


def per_run_bytes(store: replay.Store) -> float:
    seg = sum(p.stat().st_size for p in (store.root / "segments").glob("*.seg"))
    return (seg + store.ledger.path.stat().st_size) / sum(1 for _ in store.entries())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = replay.Store.open(Path(tmp) / "store")
        pipe = replay.Pipeline("noop", [replay.Step("id", lambda t: t)])
        row = pa.table({"id": ["A-1"], "x": [1.0]})
        replay.record(pipe, row, store=store)
        t0 = time.perf_counter()
        for _ in range(args.runs):
            replay.record(pipe, row, store=store, record_key="id")
        capture = (time.perf_counter() - t0) / args.runs
        size = int(per_run_bytes(store))
        data = os.urandom(size)
        sha = statistics.median(
            timed(lambda: hashlib.sha256(data).digest(), 1) for _ in range(2001)
        )
        fsync = fsynced_writes(Path(tmp), (size,), 501)
    print(f"bytes written per run (block, frame + ledger line): {size}")
    print(f"{'':34} {'us/run':>9} {'x capture':>10}")
    print(f"{'capture (durable record, 1 row)':34} {capture * 1e6:9.1f} {1:10.2f}")
    print(f"{'sha256 of those bytes':34} {sha * 1e6:9.1f} {sha / capture:10.3f}")
    print(f"{'write + fsync of those bytes':34} {fsync * 1e6:9.1f} {fsync / capture:10.3f}")
    print(
        f"capture costs {capture / (sha + fsync):.2f}x the machine's floor (sha256 + one "
        "fsync'd write); it does one (the segment log: block and commit frame)"
    )


if __name__ == "__main__":
    main()
