"""Bulk replay on Dask against the same runs replayed in one process (issue 17).

    python benchmarks/bench_batch.py [--runs 2000] [--rounds 3]

Records N distinct 1-row credit runs, starts two LocalClusters (1 and 2 worker processes,
one thread each) and warms each with a small job, then alternates, per round: the N runs
through ``replay.replay_many`` in this process; the N runs split
over two bare processes (no Dask: what the machine gives two workers at that moment); the
task a worker runs (``replay_chunk``, on the chunks a 1-worker job cuts) in this process,
which tells the cost of writing results apart from Dask's; and a ``replay.batch`` job of the
same N runs on 1 worker and on 2 (each writing its N results to the store). Each process
replays on a store it opened once and keeps, as a worker does.

Printed: runs/s and the CPU time per run of every process that works (this one, which holds
the client, the schedulers and the nannies, and the workers or the bare processes), as
medians of the rounds; and the ratios the issue sets goals for, each taken within a round
(the load of a shared machine drifts between rounds), as the median and the spread of the
rounds: 2 workers >= 1.7x one on 2 cores; the engine's overhead per run (1 worker against
in-process) < 5%, in wall time and in CPU time (which other processes' load barely moves).
Cluster start is timed once, apart. Every replay must be exact. Nothing here asserts a time:
the machine is shared, so read the ratios of one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import distributed
import psutil

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace
from replay.engine.batch import jobs as batch_jobs
from replay.engine.batch.cluster import local_cluster
from replay.engine.batch.run import chunk_size
from replay.engine.batch.task import open_store, replay_chunk

T0 = datetime(2026, 3, 14, tzinfo=UTC)
Figure = tuple[float, float]  # runs/s, CPU ms per run


def busy(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(n: int, work: Callable[[], float | None], pids: Iterable[int] = ()) -> Figure:
    """runs/s of ``work``, and CPU ms per run of this process, of the processes ``pids``
    and of what ``work`` says it used elsewhere."""
    processes = [psutil.Process(), *map(psutil.Process, pids)]
    before = [busy(p) for p in processes]
    t0 = time.perf_counter()
    elsewhere = work() or 0.0
    wall = time.perf_counter() - t0
    used = elsewhere + sum(busy(p) - b for p, b in zip(processes, before, strict=True))
    return n / wall, used / n * 1e3


def replay_part(root: Path, ids: list[str]) -> float:
    """Replay ``ids`` in this process, on the store it opened first (warm, as a worker's);
    the CPU seconds it took."""
    t0 = time.process_time()
    reports = replay.replay_many(open_store(str(root)), ids)
    assert all(r.verdict == "exact" for r in reports)
    return time.process_time() - t0


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
        store = replay.Store.open(root)
        window = {"pipeline": "credit-decision", "since": T0, "until": T0 + timedelta(days=1)}
        replay.runs(store, limit=1)  # the catalog ingests the runs now
        clusters, started, pids = {}, {}, {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            clusters[workers] = local_cluster(workers)
            started[workers] = time.perf_counter() - t0
            with distributed.Client(clusters[workers]) as client:
                pids[workers] = list(client.run(os.getpid).values())
        jobs = iter(range(1_000_000))

        def in_process() -> None:
            replay_part(root, ids)

        replay_part(root, ids[:5])  # this process opens the store and loads the pipeline

        # What this machine gives two processes now, without Dask: the ceiling for 2 workers.
        pool = multiprocessing.get_context("spawn").Pool(2)
        pool.starmap(replay_part, [(root, ids[:5])] * 2)

        def bare_two() -> float:
            half = len(ids) // 2
            return sum(pool.starmap(replay_part, [(root, ids[:half]), (root, ids[half:])]))

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

        def task_here() -> None:
            # A 1-worker job's chunks, replayed and written in this process: no Dask.
            job = f"bench-task-{next(jobs)}"
            record = batch_jobs.create(
                store,
                job,
                [batch_jobs.Run(r, "", "") for r in ids],
                pipeline=None,
                since=None,
                until=None,
                mode="chained",
                swap={},
            )
            plan = batch_jobs.plan(store, record, chunk_size(len(ids), 1))
            url = str(store.location)
            for i, chunk in enumerate(plan):
                name = batch_jobs.chunk_name(i, 0)
                rows = replay_chunk(url, job, name, [r.run_id for r in chunk], "chained", {})
                assert all(r["verdict"] == "exact" for r in rows)

        for workers in (1, 2):  # each worker imports, opens the store, loads the pipeline
            batch(workers, pipeline="credit-decision", since=T0, until=T0 + timedelta(seconds=9))()
        figures: dict[str, list[Figure]] = {
            "in-process": [],
            "2 processes": [],
            "task here": [],
            "1 worker": [],
            "2 workers": [],
        }
        for _ in range(args.rounds):
            figures["in-process"].append(measure(args.runs, in_process))
            figures["2 processes"].append(measure(args.runs, bare_two))
            figures["task here"].append(measure(args.runs, task_here))
            figures["1 worker"].append(measure(args.runs, batch(1, **window), pids[1]))
            figures["2 workers"].append(measure(args.runs, batch(2, **window), pids[2]))
        for cluster in clusters.values():
            cluster.close()
        pool.close()
    report(figures, args.runs, args.rounds, started)


def report(
    figures: dict[str, list[Figure]], runs: int, rounds: int, started: dict[int, float]
) -> None:
    print(f"{runs:,} distinct 1-row credit runs, {rounds} rounds alternated (median)")
    print(f"cluster start: 1 worker {started[1]:.1f} s, 2 workers {started[2]:.1f} s (not timed)")
    for name, values in figures.items():
        rates = ", ".join(f"{r:.0f}" for r, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(
            f"{name:>11} {statistics.median(r for r, _ in values):7.1f} runs/s"
            f"  {cpu:6.2f} ms CPU/run   (rounds: {rates})"
        )
    wall = {name: [r for r, _ in values] for name, values in figures.items()}
    cpu = {name: [c for _, c in values] for name, values in figures.items()}
    ratio(wall, "2 workers", "1 worker", "2 workers ÷ 1 worker", "x  (goal ≥ 1.7x)")
    ratio(wall, "2 processes", "in-process", "2 bare processes ÷ 1", "x  (the machine's ceiling)")
    ratio(wall, "in-process", "task here", "task here, wall", " overhead per run", True)
    ratio(cpu, "task here", "in-process", "task here, CPU", " overhead per run", True)
    ratio(wall, "in-process", "1 worker", "1 worker, wall", " overhead (goal < 5%)", True)
    ratio(cpu, "1 worker", "in-process", "1 worker, CPU", " overhead (goal < 5%)", True)
    ratio(cpu, "2 workers", "1 worker", "2 workers ÷ 1, CPU", " more CPU per run", True)


def ratio(
    figures: dict[str, list[float]], a: str, b: str, label: str, note: str, overhead: bool = False
) -> None:
    """``a`` ÷ ``b`` taken round by round: the median and the spread (as an overhead: how
    much more than ``b``, per run)."""
    ratios = sorted(x / y for x, y in zip(figures[a], figures[b], strict=True))
    text = [f"{r - 1:+.1%}" if overhead else f"{r:.2f}" for r in ratios]
    spread = f"  rounds {text[0]} … {text[-1]}" if len(text) > 1 else ""
    print(f"{label:<22} {text[len(text) // 2]:>7}{note}{spread}")


if __name__ == "__main__":
    main()
