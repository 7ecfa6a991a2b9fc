"""``batch``: replay every production run of an incident window on a Dask cluster, as a job
on the store that a later call resumes (see replay.engine.batch), and optionally leave an
analyst the report (``replay.evidence.batchreport``).

The window is selected in the catalog, as ``export --since/--until`` selects one; the engine
below takes the runs by id.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from replay.capture.environment import IMAGE_ID, REPO_DIGEST
from replay.catalog.queries import runs as runs_in
from replay.core.kinds import PRODUCTION
from replay.docker.batch import CHUNKS_PER_WORKER, task_in_image
from replay.docker.sandbox import Limits
from replay.engine.batch import jobs
from replay.engine.batch.run import CHUNK, PER_WORKER, Progress, run_job
from replay.engine.batch.summary import BatchSummary
from replay.engine.batch.task import replay_chunk
from replay.engine.recorded import load_run
from replay.engine.replay import MODES, apply_swap
from replay.errors import NotFoundError, UsageError
from replay.store.store import Store


def batch(
    store: Store,
    pipeline: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    mode: str = "chained",
    swap: dict[str, str] | None = None,
    cluster: str | None = None,
    job: str | None = None,
    resume: str | None = None,
    workers: int = 2,
    chunk: int = CHUNK,
    report: Path | None = None,
    progress: Progress | None = None,
    in_container: bool = False,
    limits: Limits | None = None,
) -> BatchSummary:
    """Replay every production run of ``pipeline`` whose logical clock lies in
    [``since``, ``until``] on Dask distributed: the scheduler at ``cluster``
    (``tcp://HOST:PORT``), or a LocalCluster of ``workers`` processes. Each result is written
    once under ``replays/<job>/``; ``resume`` names a job to finish, replaying only the runs
    without a result (the window and the rest are the job's). ``in_container``: each chunk
    replays inside its runs' recorded image, on the Docker engine of the worker that runs it
    (a folder store only: the container has no network), within ``limits`` (default
    ``Limits()``; this call's, so a resume may raise them). ``report``: a folder for the
    Parquet rows and the HTML page."""
    if resume is not None:
        if any(v is not None for v in (pipeline, since, until, swap, job)) or in_container:
            raise UsageError(
                f"--resume {resume} replays the job as it was asked",
                hint="leave out --pipeline, --since, --until, --swap, --job and --in-container",
            )
        record = jobs.load(store, resume)
    else:
        record = _new_job(store, pipeline, since, until, mode, swap or {}, job, in_container)
    summary = run_job(
        store,
        record,
        address=cluster,
        workers=workers,
        most=chunk,
        progress=progress,
        task=task_in_image(limits) if record.in_container else replay_chunk,
        per_worker=CHUNKS_PER_WORKER if record.in_container else PER_WORKER,
    )
    if report is not None:
        from replay.evidence.batchreport import write_report

        write_report(summary, record, report)
    return summary


def _new_job(
    store: Store,
    pipeline: str | None,
    since: datetime | None,
    until: datetime | None,
    mode: str,
    swap: dict[str, str],
    job: str | None,
    in_container: bool,
) -> jobs.Job:
    if mode not in MODES:
        raise UsageError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if in_container and store.remote:
        raise UsageError(
            "--in-container needs a store folder: the container has no network to reach "
            f"{store.url}",
            hint="replay from a folder every worker sees at the same path, or leave out "
            "--in-container",
        )
    found = runs_in(store, pipeline=pipeline, since=since, until=until, kind=PRODUCTION, limit=None)
    if not found:
        raise NotFoundError(
            f"no production runs of {pipeline or 'any pipeline'} in the window",
            hint="check the window with `replay runs --pipeline P --since T1 --until T2`",
        )
    found.reverse()  # oldest first
    if in_container:
        _in_images(found)
    if swap:  # refused here, once, rather than by every chunk on the cluster
        apply_swap(store, load_run(store, store.entry(found[0]["run_id"])).spec, swap)
    return jobs.create(
        store,
        job or jobs.new_job_id(),
        [jobs.Run(r["run_id"], r["version"], r["image"] or "") for r in found],
        pipeline=pipeline,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        mode=mode,
        swap=swap,
        in_container=in_container,
    )


def _in_images(found: list[dict[str, Any]]) -> None:
    """Refuse, before anything runs, a window with runs recorded outside any image."""
    outside = [r["run_id"] for r in found if not _an_image(r["image"] or "")]
    if outside:
        raise UsageError(
            f"{len(outside)} runs of the window were recorded outside a container image "
            f"(the first: {outside[0]}), so there is no image to replay them in",
            hint="leave out --in-container to replay them on the workers themselves",
        )


def _an_image(recorded: str) -> bool:
    return bool(REPO_DIGEST.fullmatch(recorded) or IMAGE_ID.fullmatch(recorded))
