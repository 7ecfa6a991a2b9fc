"""The task a Dask worker runs: replay one chunk of a job's runs and write their results in
one file, once.

Submitted by reference (``replay.engine.batch.task.replay_chunk``) with plain arguments, so
no code travels through the scheduler. Each worker process opens the store itself and keeps
it (with the specs, code and models its cache loaded) for every later chunk. One file per
chunk, not per run: one durable write (a sync, or a PUT) for a thousand results, where a
file each cost a sync each and a few percent of the replays' time.

Where the runs replay is a ``Replayer``: in this process (``in_process``), or inside their
recorded image (``replay.docker.batch``, which submits its own task over ``run_chunk``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from replay.engine.batch.jobs import path, read_results, results_body, write_results
from replay.engine.batch.summary import Row, rows_of
from replay.engine.replay import replay, replay_many
from replay.errors import ReplayError
from replay.store.store import Store

# (store, run ids, mode, swap) -> the attempt's file, as ``jobs.results_body`` makes it
Replayer = Callable[[Store, list[str], str, dict[str, str]], bytes]
# A chunk's task, submitted by reference: (store URL, job, file, run ids, mode, swap) -> rows
Task = Callable[[str, str, str, list[str], str, dict[str, str]], list[Row]]


@functools.lru_cache(maxsize=4)
def open_store(url: str) -> Store:
    """The store at ``url``, opened once per process."""
    return Store.open(url, create=False)


def run_chunk(
    url: str,
    job: str,
    name: str,
    run_ids: list[str],
    mode: str,
    swap: dict[str, str],
    replayer: Replayer,
) -> list[Row]:
    """Replay ``run_ids`` with ``replayer`` and write their results as the file ``name``; a
    row for every run, as the stored file says. Returns once the file is durable. When the
    file is there already (Dask ran this task before) nothing is replayed or written again."""
    store = open_store(url)
    if not store.fs.exists(path(job, name)):
        write_results(store, job, name, replayer(store, run_ids, mode, swap))
    # Read back: when a twin of this task wrote first, its results are the ones that count.
    return rows_of(read_results(store, job, name))


def replay_chunk(
    url: str, job: str, name: str, run_ids: list[str], mode: str, swap: dict[str, str]
) -> list[Row]:
    """``run_chunk`` replaying in the worker's own process."""
    return run_chunk(url, job, name, run_ids, mode, swap, in_process)


def in_process(store: Store, run_ids: list[str], mode: str, swap: Any) -> bytes:
    """Each run replayed here, and the runs that could not be replayed at all with why (the
    rest go on), as an attempt's file."""
    results: list[str] = []
    try:
        for report in replay_many(store, run_ids, mode=mode, swap=swap):
            results.append(report.json_text())
        return results_body(results, {})
    except ReplayError:
        pass  # of which run (finding them all at once fails for one): the rest one by one
    failed: dict[str, str] = {}
    for run_id in run_ids[len(results) :]:
        try:
            results.append(replay(store, run_id, mode=mode, swap=swap).json_text())
        except ReplayError as exc:
            failed[run_id] = str(exc)
    return results_body(results, failed)
