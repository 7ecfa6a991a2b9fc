"""Running a job: the chunks of its plan that have runs without a result, replayed on the
cluster, and every run's row gathered once (earlier results read back, not replayed again)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection

from replay.engine.batch import cluster, jobs
from replay.engine.batch.summary import BatchSummary, Row, row_of
from replay.engine.batch.task import Task, replay_chunk
from replay.store.store import Store

CHUNK = 1000  # runs per task at most: a task's overhead is milliseconds, a run's replay ms
PER_WORKER = 4  # chunks per worker at least, for balance and a progress bar that moves
Progress = Callable[[int, int], None]  # runs done, runs in all


def chunk_size(pending: int, workers: int, most: int = CHUNK, per_worker: int = PER_WORKER) -> int:
    return max(1, min(most, math.ceil(pending / (per_worker * max(workers, 1)))))


def run_job(
    store: Store,
    job: jobs.Job,
    *,
    address: str | None = None,
    workers: int = 2,
    most: int = CHUNK,
    progress: Progress | None = None,
    task: Task = replay_chunk,
    per_worker: int = PER_WORKER,
) -> BatchSummary:
    """Replay every run of ``job`` that has no result yet, each chunk by ``task``, in chunks
    of at most ``most`` runs, ``per_worker`` chunks a worker if they are fewer; the summary
    of all its runs."""
    started = time.perf_counter()
    rows: dict[str, Row] = {}
    tried: dict[int, int] = {}  # chunk -> attempts so far
    for chunk, attempt, earlier in jobs.stored(store, job.job):
        tried[chunk] = max(tried.get(chunk, 0), attempt + 1)
        for result in earlier.results:  # not its failed runs: they are tried again
            rows.setdefault(result["run_id"], row_of(result))
    pending = [r for r in job.runs if r.run_id not in rows]
    total = len(job.runs)
    if progress:
        progress(len(rows), total)
    used = 0
    if pending:
        with cluster.client(address, workers) as dask:
            size = chunk_size(total, cluster.workers_of(dask), most, per_worker)
            todo = _attempts(jobs.plan(store, job, size), rows, tried)
            url = store.url if store.remote else str(store.location)
            for got in cluster.run_chunks(dask, url, job.job, todo, job.mode, job.swap, task):
                rows.update((r["run_id"], r) for r in got)
                if progress:
                    progress(len(rows), total)
            used = cluster.workers_of(dask)
    return BatchSummary(
        job.job,
        job.mode,
        job.swap,
        tuple(rows[r.run_id] for r in job.runs),
        replayed=len(pending),
        seconds=time.perf_counter() - started,
        workers=used,
    )


def _attempts(
    plan: list[list[jobs.Run]], done: Collection[str], tried: dict[int, int]
) -> list[tuple[str, list[str]]]:
    """The next attempt at each chunk with runs left: the file it writes, and those runs."""
    todo = []
    for i, chunk in enumerate(plan):
        left = [r.run_id for r in chunk if r.run_id not in done]
        if left:
            todo.append((jobs.chunk_name(i, tried.get(i, 0)), left))
    return todo
