"""Bulk replay on Dask against the same runs replayed in one process (issue 17).

    python benchmarks/bench_batch.py [--runs 2000] [--rounds 3]

Records N distinct 1-row credit runs, starts two LocalClusters (1 and 2 worker processes,
one thread each) and warms each with a small job, then alternates, per round: the N runs
through ``replay.replay_many`` in this process on a freshly opened store; the N runs split
over two bare processes (no Dask: what the machine gives two workers at that moment); and a
``replay.batch`` job of the same N runs on 1 worker and on 2 (each writing its N results to
the store). Medians of runs/s and the ratios the issue sets goals for: 2 workers >= 1.7x one
on 2 cores; the engine's overhead per run (1 worker against in-process) < 5%. Cluster start
is timed once, apart. Every replay must be exact. Nothing here asserts a time: the machine
is shared, so read the ratios of one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace
from replay.engine.batch.cluster import local_cluster

T0 = datetime(2026, 3, 14, tzinfo=UTC)


def rate(n: int, work: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    work()
    return n / (time.perf_counter() - t0)


def replay_part(root: Path, ids: list[str]) -> None:
    reports = replay.replay_many(replay.Store.open(root), ids)
    assert all(r.verdict == "exact" for r in reports)


def record_runs(root: Path, workspace: Path, n: int) -> list[str]:
    pipeline = make_pipeline(workspace)
    store = replay.Store.open(root, durable=False)
    table = make_applications(n, seed=1)
    ids = [
        replay.record(
            pipeline,
            table.slice(i, 1),
            store=store,
            record_key="application_id",
            at=T0 + timedelta(seconds=i),
        ).run_id
        for i in range(n)
    ]
    store.flush()
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        ids = record_runs(root, build_workspace(Path(tmp) / "workspace"), args.runs)
        window = {"pipeline": "credit-decision", "since": T0, "until": T0 + timedelta(days=1)}
        replay.runs(replay.Store.open(root), limit=1)  # the catalog ingests the runs now
        clusters, started = {}, {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            clusters[workers] = local_cluster(workers)
            started[workers] = time.perf_counter() - t0
        jobs = iter(range(1_000_000))

        def in_process() -> None:
            replay_part(root, ids)

        # What this machine gives two processes now, without Dask: the ceiling for 2 workers.
        pool = multiprocessing.get_context("spawn").Pool(2)
        pool.starmap(replay_part, [(root, ids[:5])] * 2)

        def bare_two() -> None:
            half = len(ids) // 2
            pool.starmap(replay_part, [(root, ids[:half]), (root, ids[half:])])

        def batch(workers: int, **window: Any) -> Callable[[], None]:
            def run() -> None:
                summary = replay.batch(
                    replay.Store.open(root),
                    **window,
                    cluster=clusters[workers].scheduler_address,
                    job=f"bench-{workers}-{next(jobs)}",
                )
                assert summary.by_verdict == {"exact": len(summary.rows)}, summary.by_verdict

            return run

        for workers in (1, 2):  # each worker imports, opens the store, loads the pipeline
            batch(workers, pipeline="credit-decision", since=T0, until=T0 + timedelta(seconds=9))()
        figures: dict[str, list[float]] = {
            "in-process": [],
            "2 processes": [],
            "1 worker": [],
            "2 workers": [],
        }
        for _ in range(args.rounds):
            figures["in-process"].append(rate(args.runs, in_process))
            figures["2 processes"].append(rate(args.runs, bare_two))
            figures["1 worker"].append(rate(args.runs, batch(1, **window)))
            figures["2 workers"].append(rate(args.runs, batch(2, **window)))
        for cluster in clusters.values():
            cluster.close()
        pool.close()
    mid = {name: statistics.median(values) for name, values in figures.items()}
    print(f"{args.runs:,} distinct 1-row credit runs, {args.rounds} rounds alternated (median)")
    print(f"cluster start: 1 worker {started[1]:.1f} s, 2 workers {started[2]:.1f} s (not timed)")
    for name, value in mid.items():
        runs = ", ".join(f"{v:.0f}" for v in figures[name])
        print(f"{name:>11} {value:8.1f} runs/s   (rounds: {runs})")
    print(f"2 workers ÷ 1 worker   {mid['2 workers'] / mid['1 worker']:.2f}x  (goal ≥ 1.7x)")
    ceiling = mid["2 processes"] / mid["in-process"]
    print(f"2 bare processes ÷ 1   {ceiling:.2f}x  (what the machine gives two now)")
    overhead = 1 - mid["1 worker"] / mid["in-process"]
    print(f"1 worker vs in-process {overhead:+.1%} overhead per run (goal < 5%)")


if __name__ == "__main__":
    main()
