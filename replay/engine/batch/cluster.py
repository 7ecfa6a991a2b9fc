"""The client side of a batch: a Dask cluster (a LocalCluster of processes on this machine,
or a scheduler's address), chunks submitted to it by reference, and their rows counted home
as they finish. Dask is imported here only, when a batch starts.

Dask's failures are ours at this door: a scheduler that does not answer, a chunk that kept
killing its workers, a scheduler gone mid-job all become ClusterError (exit 16) naming what
to do; the job's results so far stay on the store for ``--resume``.
"""

from __future__ import annotations

import importlib
import logging
import secrets
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from replay.engine.batch.summary import Row
from replay.engine.batch.task import Task, replay_chunk
from replay.errors import ClusterError, ReplayError

CONNECT_TIMEOUT = "10s"
# A LocalCluster has no dashboard: nobody reads the profile a worker samples every 10 ms
# (~2% of a replay), nor its system monitor; each server checks its event loop is not blocked
# once a second rather than 50 times (the warning it would log is silenced anyway), and memory
# once a second rather than 10 times. The idle cluster took 2.0-2.5% of a core in the client
# process and 1.4% in a worker, which slowed the replays; now 0.5% and 0.3%.
QUIET = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def _distributed() -> Any:
    # Untyped, and imported by `replay batch` only: nothing else pays for it.
    return importlib.import_module("distributed")


def local_cluster(workers: int) -> Any:
    """A LocalCluster of ``workers`` processes on this machine, one thread each, no
    dashboard; close it when done."""
    distributed = _distributed()
    with importlib.import_module("dask").config.set(QUIET):  # nannies pass it to workers
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # Its HTTP server (health, metrics) on a free port: 8787 may be taken.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            host="127.0.0.1",
            silence_logs=logging.ERROR,
        )


@contextmanager
def client(address: str | None, workers: int) -> Iterator[Any]:
    """A Dask client: of the scheduler at ``address``, or of a LocalCluster of ``workers``
    processes (one thread each, no dashboard) that ends with it."""
    distributed = _distributed()
    with ExitStack() as stack:
        try:  # only the start: an error of the job itself is not the cluster's
            if address is None:
                cluster = stack.enter_context(local_cluster(workers))
                dask = stack.enter_context(distributed.Client(cluster))
            else:
                _answers(address)
                dask = stack.enter_context(distributed.Client(address, timeout=CONNECT_TIMEOUT))
        except (OSError, TimeoutError) as exc:
            where = f"the Dask scheduler at {address}" if address else "a local Dask cluster"
            raise ClusterError(
                f"cannot reach {where}: {exc}",
                hint="start it (`dask scheduler`, then `dask worker ADDRESS`) or leave out "
                "--cluster to run on this machine",
            ) from None
        yield dask


def _answers(address: str) -> None:
    """Fail at once when nothing listens at a TCP address (Dask would retry until its
    timeout)."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not address.startswith("tcp://") or not port.isdigit():
        return  # another transport: Dask says what it thinks of it
    with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
        pass


def run_chunks(
    dask: Any,
    url: str,
    job: str,
    chunks: list[tuple[str, list[str]]],
    mode: str,
    swap: dict[str, str],
    task: Task = replay_chunk,
) -> Iterator[list[Row]]:
    """Each chunk's rows, as chunks finish (in any order); ``chunks``: the name of the file
    each writes, and its runs; ``task``: an importable function that replays one."""
    distributed = _distributed()
    session = secrets.token_hex(4)  # a resumed job's chunks are new tasks, not the old ones
    futures = [
        dask.submit(task, url, job, name, ids, mode, swap, key=f"replay-{job}-{session}-{i}")
        for i, (name, ids) in enumerate(chunks)
    ]
    try:
        for future in distributed.as_completed(futures):
            yield future.result()
    except distributed.KilledWorker as exc:
        raise ClusterError(
            f"a chunk of job {job} killed every worker that ran it ({exc})",
            hint=f"check the workers' memory, then `replay batch --resume {job}`",
        ) from None
    except (OSError, TimeoutError, distributed.client.FutureCancelledError) as exc:
        raise ClusterError(
            f"the Dask cluster went away during job {job}: {exc}",
            hint=f"the results so far are kept: `replay batch --resume {job}`",
        ) from None
    except ReplayError:
        raise
    except Exception as exc:  # raised on a worker: what it was, not a traceback from afar
        raise ClusterError(
            f"a chunk of job {job} failed on a worker: {type(exc).__name__}: {exc}",
            hint=f"the results so far are kept: fix the cause, then `replay batch --resume {job}`",
        ) from exc


def workers_of(dask: Any) -> int:
    return len(dask.scheduler_info(n_workers=-1)["workers"])
