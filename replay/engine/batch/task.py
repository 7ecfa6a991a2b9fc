"""The task a Dask worker runs: replay one chunk of a job's runs and write each result once.

Submitted by reference (``replay.engine.batch.task.replay_chunk``) with plain arguments, so
no code travels through the scheduler. Each worker process opens the store itself and keeps
it (with the specs, code and models its cache loaded) for every later chunk. A run whose
result exists is not replayed again: Dask may run a finished task a second time.
"""

from __future__ import annotations

import functools
import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from replay.engine.batch.jobs import read_result, result_path
from replay.engine.batch.summary import Row, failed_row, row_of
from replay.engine.replay import replay_many
from replay.errors import ReplayError
from replay.store.store import Store

# A result is durable when its put returns (a file and its folder synced: ~4 ms on this
# machine's loaded disk, a third of a small run's replay); the waits overlap the next replays.
WRITER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="replay-results")


@functools.lru_cache(maxsize=4)
def open_store(url: str) -> Store:
    """The store at ``url``, opened once per process."""
    return Store.open(url, create=False)


def replay_chunk(
    url: str, job: str, run_ids: list[str], mode: str, swap: dict[str, str]
) -> list[Row]:
    """Replay the runs of a chunk that have no result yet; a row for every run of it. Returns
    once every result it wrote is durable."""
    store = open_store(url)
    rows = []
    todo = []
    for run_id in run_ids:
        try:
            rows.append(row_of(read_result(store, job, run_id)))
        except FileNotFoundError:
            todo.append(run_id)
    writes: list[Future[bool]] = []
    rows += _replay(store, job, todo, mode, swap, writes)
    for written in writes:
        written.result()
    return rows


def _replay(
    store: Store, job: str, run_ids: list[str], mode: str, swap: Any, writes: list[Future[bool]]
) -> list[Row]:
    """Replay ``run_ids`` in order, each result handed to the writer; a run that cannot be
    replayed at all gets a failed row (and no result), and the rest go on."""
    rows: list[Row] = []
    while len(rows) < len(run_ids):
        try:
            for report in replay_many(store, run_ids[len(rows) :], mode=mode, swap=swap):
                data = report.as_json()
                body = json.dumps(data, sort_keys=True).encode()
                writes.append(
                    WRITER.submit(store.fs.put_if_absent, result_path(job, report.run_id), body)
                )
                rows.append(row_of(data))
        except ReplayError as exc:
            rows.append(failed_row(run_ids[len(rows)], str(exc)))
    return rows
