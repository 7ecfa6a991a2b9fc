"""``replay batch --in-container``: the task a Dask worker runs for a chunk of runs inside
the image they were recorded in, on the worker's own Docker engine.

One container per chunk (``replay.engine.batch.contained`` replays all of its runs and
prints the chunk's results file), in the sandbox ``replay run --in-container`` uses: the
store mounted read-only, no network, a non-root user, the limits. A chunk's runs share
their pipeline version and image (``jobs.chunks``), so the first run says where all replay.
The image is found, or pulled by its repo digest, once per worker process and engine.

An image this engine cannot get, a container that fails (its memory limit, say), fails the
chunk's runs with its one-line reason (a ``--resume`` tries them again); no engine at all
stops the job.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from replay.core.manifest import ImageRef
from replay.docker.client import engine
from replay.docker.sandbox import STORE_MOUNT, Limits, placement, resolve, run_in
from replay.engine.batch.jobs import parse_results, results_body
from replay.engine.batch.task import Task, run_chunk
from replay.engine.recorded import load_run
from replay.errors import (
    ContainerFailedError,
    CorruptionError,
    EngineUnavailableError,
    ReplayError,
)
from replay.store.store import Store

ENTRYPOINT = ("python3", "-m", "replay.engine.batch.contained")
# A chunk's container starts cold (measured with the credit chain: 0.4 s to create, start and
# remove it, 0.4 s for Python and the imports, 1.3-2.2 s to load the pipeline, its data and
# models), where a worker's process keeps all of it warm: one chunk a worker, as long as
# chunks stay within ``CHUNK`` runs.
CHUNKS_PER_WORKER = 1


def task_in_image(limits: Limits | None = None) -> Task:
    """The task of a chunk replayed in its runs' recorded image, within ``limits`` (default:
    ``Limits()``): functions by reference and plain values, so Dask ships no code."""
    return functools.partial(run_chunk, replayer=functools.partial(in_container, limits=limits))


@functools.lru_cache(maxsize=4)
def _client(where: str | None) -> Any:
    """The engine at ``DOCKER_HOST`` (``where``), connected once per process."""
    return engine(where)


@functools.lru_cache(maxsize=64)
def _image(where: str | None, recorded: ImageRef) -> Any:
    """The engine's image for a recorded one: looked up, or pulled, once per process."""
    return resolve(_client(where), recorded)


def in_container(
    store: Store,
    run_ids: list[str],
    mode: str,
    swap: dict[str, str],
    limits: Limits | None = None,
) -> bytes:
    """The chunk replayed in one container of its recorded image, as an attempt's file."""
    where = os.environ.get("DOCKER_HOST")
    asked = {"store": STORE_MOUNT, "run_ids": run_ids, "mode": mode, "swap": swap}
    try:
        first = load_run(store, store.entry(run_ids[0]))
        place = placement(store, first, functools.partial(_image, where))
        command = [json.dumps(asked)]
        limits = limits or Limits()
        body = run_in(_client(where), place, command, store, limits, entrypoint=ENTRYPOINT)
        _check(body, run_ids, place.label)
    except EngineUnavailableError:
        raise  # no chunk can run on this worker: the job stops, saying why
    except ReplayError as exc:  # the image, its container, the chunk's first run
        return results_body([], dict.fromkeys(run_ids, str(exc)))
    return body


def _check(body: bytes, run_ids: list[str], label: str) -> None:
    """Refuse a file that is not the chunk's: each asked run once, no other."""
    try:
        got = parse_results(body, label)
        seen = [r["run_id"] for r in got.results] + list(got.failed)
    except (CorruptionError, KeyError, TypeError):
        seen = []
    if sorted(seen) != sorted(run_ids):
        raise ContainerFailedError(
            f"the replay in {label} printed no results file of the chunk's runs",
            hint="is the image a pipeline-replay image of a version with `batch --in-container`?",
        )
