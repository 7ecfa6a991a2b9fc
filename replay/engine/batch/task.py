"""The task a Dask worker runs: replay one chunk of a job's runs and write each result once.

Submitted by reference (``replay.engine.batch.task.replay_chunk``) with plain arguments, so
no code travels through the scheduler. Each worker process opens the store itself and keeps
it (with the specs, code and models its cache loaded) for every later chunk. A run whose
result exists is not replayed again: Dask may run a finished task a second time.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from replay.engine.batch.jobs import result_path
from replay.engine.batch.summary import Row, failed_row, row_of
from replay.engine.replay import ReplayReport, replay_many
from replay.errors import ReplayError
from replay.store.store import Store


@functools.lru_cache(maxsize=4)
def open_store(url: str) -> Store:
    """The store at ``url``, opened once per process."""
    return Store.open(url, create=False)


def write_result(store: Store, job: str, report: ReplayReport) -> Row:
    """Store a run's result unless one is there already; its row."""
    data = report.as_json()
    store.fs.put_if_absent(
        result_path(job, report.run_id), json.dumps(data, sort_keys=True).encode()
    )
    return row_of(data)


def replay_chunk(
    url: str, job: str, run_ids: list[str], mode: str, swap: dict[str, str]
) -> list[Row]:
    """Replay the runs of a chunk that have no result yet; a row for every run of it."""
    store = open_store(url)
    rows = []
    todo = []
    for run_id in run_ids:
        try:
            rows.append(row_of(json.loads(store.fs.read(result_path(job, run_id)))))
        except FileNotFoundError:
            todo.append(run_id)
    return rows + _replay(store, job, todo, mode, swap)


def _replay(store: Store, job: str, run_ids: list[str], mode: str, swap: Any) -> list[Row]:
    """Replay ``run_ids`` in order; a run that cannot be replayed at all gets a failed row
    (and no result), and the rest go on."""
    rows: list[Row] = []
    while len(rows) < len(run_ids):
        try:
            for report in replay_many(store, run_ids[len(rows) :], mode=mode, swap=swap):
                rows.append(write_result(store, job, report))
        except ReplayError as exc:
            rows.append(failed_row(run_ids[len(rows)], str(exc)))
    return rows
