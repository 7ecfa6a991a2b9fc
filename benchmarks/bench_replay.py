"""Replay time against the bare pipeline on the same rows (warm object cache).

    python benchmarks/bench_replay.py [--quick]

Replay reads the recorded rows, rebuilds every step from the store, re-executes and compares
each output by digest; the bare pipeline only executes. Both alternate in rounds; medians.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import tempfile
from pathlib import Path

from bench_capture import alternate, bare_runner

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    print(f"{'rows per run':>12} {'bare ms':>9} {'replay ms':>10} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        workspace = build_workspace(Path(tmp) / "workspace")
        pipeline = make_pipeline(workspace)
        store = replay.Store.open(Path(tmp) / "store")
        bare = bare_runner(pipeline, store)
        for n, repeat in ((1, 100), (100, 30), (10_000, 3)):
            rows = make_applications(n, seed=n)
            run_id = replay.record(pipeline, rows, store=store, record_key="application_id").run_id
            assert replay.replay(store, run_id).verdict == "exact"  # and warms the cache
            b, r = alternate(
                lambda rows=rows: bare(rows),
                lambda run_id=run_id: replay.replay(store, run_id),
                rounds,
                repeat,
            )
            print(f"{n:12,} {b * 1e3:9.2f} {r * 1e3:10.2f} {r / b:6.2f}x")


if __name__ == "__main__":
    main()
