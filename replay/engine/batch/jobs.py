"""A batch job on the store: ``replays/<job>/job.json`` says what was asked,
``runs-<hex>.json`` the runs it covers (named by its digest, which job.json holds), and each
run's result is written once as ``replays/<job>/<run_id>.json``. Every file is created
with ``put_if_absent``, the store's If-None-Match, so a task Dask runs twice writes nothing
the second time, and a job resumes from the results already there. Nothing here touches
the ledger or the segments.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from replay.core.digest import sha256
from replay.errors import CorruptionError, NotFoundError, UsageError
from replay.store.store import Store

FOLDER = "replays"
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


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
    runs: tuple[Run, ...] = ()

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("runs")
        return data


def new_job_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def path(job: str, name: str) -> str:
    return f"{FOLDER}/{job}/{name}"


def result_path(job: str, run_id: str) -> str:
    return path(job, f"{run_id}.json")


def runs_path(job: str, digest: str) -> str:
    return path(job, f"runs-{digest.removeprefix('sha256:')}.json")


def read_result(store: Store, job: str, run_id: str) -> dict[str, Any]:
    """A run's stored result; FileNotFoundError when it has none."""
    where = result_path(job, run_id)
    try:
        data = json.loads(store.fs.read(where))
    except ValueError:
        raise CorruptionError(store.fs.where(where), "a batch result that is not JSON") from None
    if not isinstance(data, dict):
        raise CorruptionError(store.fs.where(where), "a batch result that is not an object")
    return data


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
    listing = json.dumps([asdict(r) for r in runs], separators=(",", ":")).encode()
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


def finished(store: Store, job: str) -> set[str]:
    """The runs of ``job`` with a result (one listing of its folder)."""
    return {
        name.removesuffix(".json")
        for name in store.fs.list(f"{FOLDER}/{job}")
        if name.endswith(".json") and name != "job.json" and not name.startswith("runs-")
    }


def chunks(runs: list[Run], size: int) -> list[list[Run]]:
    """Runs cut into chunks of at most ``size`` that share a pipeline version and image."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.version, run.image), []).append(run)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]
