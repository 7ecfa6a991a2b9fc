"""A batch job on the store, under ``replays/<job>/``: ``job.json`` says what was asked,
``runs-<hex>.json`` the runs it covers (named by its digest, which job.json holds),
``plan.json`` how they are cut into chunks (fixed by the first call that runs the job, so
that every later call, on any cluster, cuts them alike), and ``chunk-<i>-<k>.json`` the
results of attempt ``k`` at chunk ``i``, written in one go. Attempt 0 replays all of the
chunk's runs, attempt k those that no earlier attempt could replay; so a call that sees the
same files as another tries the same runs under the same name, and a task Dask runs twice
writes nothing the second time. Every file is created with ``put_if_absent``, the store's
If-None-Match: each run's result is written once, by the first attempt that replayed it, and
a job resumes from the results already there. Nothing here touches the ledger or the
segments.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from replay.core.digest import sha256
from replay.errors import CorruptionError, NotFoundError, UsageError
from replay.store.store import Store

FOLDER = "replays"
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CHUNK_FILE = re.compile(r"chunk-(\d+)-(\d+)\.json")


@dataclass(frozen=True)
class Run:
    """A run to replay, with what its chunk must share: pipeline version and image."""

    run_id: str
    version: str
    image: str


@dataclass(frozen=True)
class Job:
    job: str
    pipeline: str | None
    since: str | None
    until: str | None
    mode: str
    swap: dict[str, str]
    runs_digest: str
    created: str
    in_container: bool = False  # each chunk in its runs' recorded image
    runs: tuple[Run, ...] = ()

    def as_json(self) -> dict[str, Any]:
        # Not ``asdict``: it would deep-copy every run, to drop them.
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "runs"}


def new_job_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def path(job: str, name: str) -> str:
    return f"{FOLDER}/{job}/{name}"


def runs_path(job: str, digest: str) -> str:
    return path(job, f"runs-{digest.removeprefix('sha256:')}.json")


def chunk_name(index: int, attempt: int) -> str:
    return f"chunk-{index}-{attempt}.json"


@dataclass(frozen=True)
class Results:
    """An attempt's file: each replayed run's result (``ReplayReport.as_json``), and the runs
    it could not replay with why (a later call of the job retries them)."""

    results: list[dict[str, Any]]
    failed: dict[str, str]


def _read_json(store: Store, where: str, what: str) -> Any:
    try:
        return json.loads(store.fs.read(where))
    except ValueError:
        raise CorruptionError(store.fs.where(where), f"{what} that is not JSON") from None


def results_body(results: list[str], failed: dict[str, str]) -> bytes:
    """An attempt's file: each replayed run's result (already JSON text), and the failed."""
    return f'{{"failed":{json.dumps(failed)},"results":[{",".join(results)}]}}'.encode()


def write_results(store: Store, job: str, name: str, body: bytes) -> bool:
    """Write an attempt's file (``results_body``) durably, unless it exists; whether this
    call wrote it."""
    return store.fs.put_if_absent(path(job, name), body)


def parse_results(body: bytes, where: str) -> Results:
    """An attempt's file read from ``body``; CorruptionError naming ``where`` when it is
    not one."""
    try:
        data = json.loads(body)
        return Results(list(data["results"]), dict(data["failed"]))
    except (KeyError, TypeError, ValueError):
        raise CorruptionError(where, "not a batch result file (two lists, as JSON)") from None


def read_results(store: Store, job: str, name: str) -> Results:
    """An attempt's file; FileNotFoundError when it is not there."""
    return parse_results(store.fs.read(path(job, name)), store.fs.where(path(job, name)))


def stored(store: Store, job: str) -> Iterator[tuple[int, int, Results]]:
    """Every attempt's file (one listing of the job's folder): chunk, attempt, results."""
    for name in store.fs.list(f"{FOLDER}/{job}"):
        if found := CHUNK_FILE.fullmatch(name):
            yield int(found[1]), int(found[2]), read_results(store, job, name)


def plan(store: Store, job: Job, size: int) -> list[list[Run]]:
    """The job's chunks: cut with at most ``size`` runs each by the first call that runs
    the job, and as that call cut them by every later one (whatever ``size`` it asks)."""
    where = path(job.job, "plan.json")
    store.fs.put_if_absent(where, json.dumps({"chunk": size}).encode() + b"\n")
    fixed = _read_json(store, where, "a batch plan")
    if not isinstance(fixed, dict) or not isinstance(fixed.get("chunk"), int):
        raise CorruptionError(store.fs.where(where), "a batch plan without its chunk size")
    return chunks(list(job.runs), max(1, fixed["chunk"]))


def _check_name(job: str) -> None:
    if not JOB_NAME.fullmatch(job):
        raise UsageError(
            f"job name {job!r} is not usable",
            hint="use letters, digits, '.', '_' and '-' (up to 64), starting with a letter "
            "or digit",
        )


def create(store: Store, job: str, runs: list[Run], **asked: Any) -> Job:
    """Write a new job's record (refused when the name is taken: resume it instead)."""
    _check_name(job)
    listing = json.dumps([vars(r) for r in runs], separators=(",", ":")).encode()
    record = Job(
        job,
        runs_digest=sha256(listing),
        created=datetime.now(UTC).isoformat(),
        runs=tuple(runs),
        **asked,
    )
    taken = UsageError(
        f"a batch job named {job!r} exists already",
        hint=f"resume it with --resume {job}, or choose another name",
    )
    if store.fs.exists(path(job, "job.json")):
        raise taken
    # The listing is named by its digest: two racing creators never mix their lists, and
    # the one whose job.json lands first owns the name.
    store.fs.put_if_absent(runs_path(job, record.runs_digest), listing)
    if not store.fs.put_if_absent(
        path(job, "job.json"), json.dumps(record.as_json(), indent=2).encode() + b"\n"
    ):
        raise taken
    return record


def load(store: Store, job: str) -> Job:
    """A job's record and its runs, checked against the digest the record names."""
    _check_name(job)
    try:
        data = json.loads(store.fs.read(path(job, "job.json")))
        listing = store.fs.read(runs_path(job, data["runs_digest"]))
    except (FileNotFoundError, KeyError, TypeError):
        raise NotFoundError(
            f"no batch job {job!r} in {store.root}",
            hint=f"jobs are the folders of {store.fs.where(FOLDER)}",
        ) from None
    except ValueError:
        raise CorruptionError(store.fs.where(path(job, "job.json")), "not JSON") from None
    if sha256(listing) != data["runs_digest"]:
        raise CorruptionError(
            store.fs.where(runs_path(job, data["runs_digest"])),
            "does not match the digest job.json names",
        )
    runs = tuple(Run(**r) for r in json.loads(listing))
    return Job(**{**data, "runs": runs})


def chunks(runs: list[Run], size: int) -> list[list[Run]]:
    """Runs cut into chunks of at most ``size`` that share a pipeline version and image."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.version, run.image), []).append(run)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]
