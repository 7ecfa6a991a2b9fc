"""Replaying many distinct runs in one process against the bare pipeline on the same rows.

    python benchmarks/bench_replay_many.py [--runs 1000] [--rounds 3]

Records N distinct 1-row credit runs, then alternates, per round: the bare pipeline over each
run's row, ``replay.replay_many`` over all N ids on a freshly opened store (nothing loaded
yet, as a new incident-review process), and one ``replay.replay`` call per full id. Medians
of runs/s. Every replay must be exact.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_capture import bare_runner

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace


def rate(n: int, work: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    work()
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = build_workspace(Path(tmp) / "workspace")
        pipeline = make_pipeline(workspace)
        root = Path(tmp) / "store"
        store = replay.Store.open(root, durable=False)
        table = make_applications(args.runs, seed=1)
        singles = [table.slice(i, 1) for i in range(args.runs)]
        ids = [
            replay.record(pipeline, row, store=store, record_key="application_id").run_id
            for row in singles
        ]
        store.flush()
        bare = bare_runner(pipeline, store)

        def many() -> None:
            reports = replay.replay_many(replay.Store.open(root), ids)
            assert all(r.verdict == "exact" for r in reports)

        def one_at_a_time() -> None:
            fresh = replay.Store.open(root)
            assert all(replay.replay(fresh, r).verdict == "exact" for r in ids)

        figures: dict[str, list[float]] = {"bare": [], "replay_many": [], "replay each": []}
        for _ in range(args.rounds):
            figures["bare"].append(rate(args.runs, lambda: [bare(row) for row in singles]))
            figures["replay_many"].append(rate(args.runs, many))
            figures["replay each"].append(rate(args.runs, one_at_a_time))
    base = statistics.median(figures["bare"])
    print(f"{args.runs:,} distinct 1-row credit runs, {args.rounds} rounds (median)")
    print(f"{'':>12} {'runs/s':>8} {'÷ bare':>7}")
    for name, values in figures.items():
        mid = statistics.median(values)
        print(f"{name:>12} {mid:8.1f} {mid / base:6.2f}x")


if __name__ == "__main__":
    main()
