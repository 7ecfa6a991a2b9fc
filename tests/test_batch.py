"""Bulk replay of an incident window on Dask distributed (issue 17): every run of the window
reported exactly once, each result written once on the store, a swap's flips counted, and a
job that survives a killed worker and a killed client. Real clusters: a LocalCluster, and a
`dask scheduler` with two `dask worker` processes started here."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import replay
from replay.cli.app import app
from replay.engine.batch import jobs
from replay.engine.batch.cluster import local_cluster
from replay.engine.batch.summary import flip_labels, row_of
from replay.engine.batch.task import replay_chunk
from tests.conftest import declared_image

ROOT = Path(__file__).parents[1]
T0 = datetime(2026, 3, 14, 9, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(hours=1))
IN_WINDOW = 12
SLOW_RUNS = 24


def features(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return table.append_column("dti", pc.divide(table["debt"], table["income"]))


def pd_step(table: pa.Table, *, models: dict[str, Any], params: dict[str, float]) -> pa.Table:
    import pyarrow.compute as pc

    time.sleep(params["pause"])  # the slow bank: long enough to kill something mid-job
    return table.append_column("pd", pc.multiply(table["dti"], models["pd"]["w"]))


def decision(table: pa.Table) -> pa.Table:
    pd = table["pd"].to_pylist()
    return table.append_column(
        "decision", pa.array(["decline" if p >= 0.25 else "approve" for p in pd])
    ).append_column("reason_codes", pa.array([["R01 high PD"] if p >= 0.25 else [] for p in pd]))


def bank(name: str = "bank", weight: float = 0.5, pause: float = 0.0) -> replay.Pipeline:
    return replay.Pipeline(
        name,
        [
            replay.Step("features", features),
            replay.Step("pd", pd_step, models={"pd": {"w": weight}}, params={"pause": pause}),
            replay.Step("decision", decision),
        ],
    )


def applications(i: int) -> pa.Table:
    return pa.table(
        {
            "application_id": [f"A{i}-{j}" for j in range(3)],
            "debt": [10.0 * i + j for j in range(3)],
        }
    ).append_column("income", pa.array([100.0, 200.0, 400.0]))


@pytest.fixture(scope="module")
def bank_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs of the bank in the window and around it, a run of a heavier PD model recorded
    later (the counterfactual's donor), and a slow bank's runs."""
    store = replay.Store.open(tmp_path_factory.mktemp("bank") / "store")
    record = replay.record
    window = [
        record(
            bank(),
            applications(i),
            store=store,
            record_key="application_id",
            at=T0 + timedelta(minutes=4 * i),
        ).run_id
        for i in range(IN_WINDOW)
    ]
    for at in (T0 - timedelta(hours=1), T0 + timedelta(hours=2)):
        record(bank(), applications(1), store=store, record_key="application_id", at=at)
    donor = record(
        bank(weight=2.0),
        applications(1),
        store=store,
        record_key="application_id",
        at=T0 + timedelta(days=30),
    ).run_id
    slow = [
        record(
            bank("slowbank", pause=0.05),
            applications(i),
            store=store,
            record_key="application_id",
            at=T0 + timedelta(seconds=i),
        ).run_id
        for i in range(SLOW_RUNS)
    ]
    store.flush()
    return {"store": store, "window": window, "donor": donor, "slow": slow}


def results(store: replay.Store, job: str) -> dict[str, tuple[bytes, int]]:
    """Each run with a result, once: the bytes and mtime of the file that holds it."""
    found: dict[str, tuple[bytes, int]] = {}
    for p in sorted((store.root / jobs.FOLDER / job).glob("chunk-*.json")):
        for result in json.loads(p.read_bytes())["results"]:
            assert result["run_id"] not in found, "a run with two results"
            found[result["run_id"]] = (p.read_bytes(), p.stat().st_mtime_ns)
    return found


def test_a_batch_reports_every_run_of_the_window_once_exact(bank_store: dict[str, Any]) -> None:
    store = bank_store["store"]
    summary = replay.batch(store, pipeline="bank", since=WINDOW[0], until=WINDOW[1], job="all")
    assert sorted(r["run_id"] for r in summary.rows) == sorted(bank_store["window"])
    assert summary.by_verdict == {"exact": IN_WINDOW} and summary.ok
    assert set(results(store, "all")) == set(bank_store["window"])


def test_a_swap_counts_the_flips_each_replay_finds(bank_store: dict[str, Any]) -> None:
    store, donor = bank_store["store"], bank_store["donor"]
    summary = replay.batch(
        store, pipeline="bank", since=WINDOW[0], until=WINDOW[1], swap={"pd": donor}, job="pd"
    )
    expected: dict[str, int] = {}
    for run_id in bank_store["window"]:
        for record in replay.replay(store, run_id, swap={"pd": donor}).records:
            if record.flipped and record.changes["decision"] == ("approve", "decline"):
                expected["decision: approve → decline"] = (
                    expected.get("decision: approve → decline", 0) + 1
                )
                expected["reason_codes + R01 high PD"] = (
                    expected.get("reason_codes + R01 high PD", 0) + 1
                )
    assert expected and summary.flips == expected
    assert {r["first_divergence"] for r in summary.diverged} == {"pd"}
    assert all(r["error"].startswith("pd: ") for r in summary.diverged)  # what differs


def chunk_files(store: replay.Store, job: str) -> list[str]:
    return sorted(p.name for p in (store.root / jobs.FOLDER / job).glob("chunk-*"))


def new_job(store: replay.Store, name: str, runs: list[str]) -> None:
    asked = {"pipeline": "bank", "since": None, "until": None, "mode": "chained", "swap": {}}
    jobs.create(store, name, [jobs.Run(r, "", "") for r in runs], **asked)


def test_a_chunk_writes_all_its_results_in_one_file_and_reads_them_back(
    bank_store: dict[str, Any],
) -> None:
    store, runs = bank_store["store"], bank_store["window"][:3]
    new_job(store, "one-file", runs)
    name = jobs.chunk_name(0, 0)
    rows = replay_chunk(str(store.location), "one-file", name, runs, "chained", {})
    assert chunk_files(store, "one-file") == [name]
    stored = jobs.read_results(store, "one-file", name)
    assert [r["run_id"] for r in stored.results] == runs and stored.failed == {}
    assert rows == [row_of(r) for r in stored.results]
    for result in stored.results:  # each as `replay run --json` would print it
        assert replay.ReplayReport.from_json(result).as_json() == result


def test_a_retried_chunk_writes_nothing_new(bank_store: dict[str, Any]) -> None:
    store, runs = bank_store["store"], bank_store["window"][:3]
    new_job(store, "retry", runs)
    name = jobs.chunk_name(0, 0)
    first = replay_chunk(str(store.location), "retry", name, runs, "chained", {})
    written = results(store, "retry")
    files = sorted((store.root / jobs.FOLDER / "retry").iterdir())
    again = replay_chunk(str(store.location), "retry", name, runs, "chained", {})
    assert again == first
    assert results(store, "retry") == written and set(written) == set(runs)
    assert sorted((store.root / jobs.FOLDER / "retry").iterdir()) == files


def test_a_report_as_json_is_its_fields_made_plain(bank_store: dict[str, Any]) -> None:
    # What `asdict` and a JSON round trip made of it, without copying the output table.
    store, donor = bank_store["store"], bank_store["donor"]
    report = replay.replay(store, bank_store["window"][-1], swap={"pd": donor})
    assert report.records and any(s.diff for s in report.steps)  # every kind of field
    plain = {k: v for k, v in asdict(report).items() if k != "output"}
    assert report.as_json() == json.loads(json.dumps(plain, default=str))
    assert json.loads(report.json_text()) == report.as_json()


def test_a_plan_is_cut_once_and_later_calls_cut_alike(bank_store: dict[str, Any]) -> None:
    store, runs = bank_store["store"], bank_store["window"]
    new_job(store, "plan", runs)
    job = jobs.load(store, "plan")
    first = jobs.plan(store, job, 5)
    assert [len(c) for c in first] == [5, 5, 2]
    assert jobs.plan(store, job, 1000) == first  # a resume on a bigger cluster


def test_a_run_that_failed_is_replayed_by_a_resume_in_a_file_of_its_own(tmp_path: Path) -> None:
    store = replay.Store.open(tmp_path / "store")
    at = iter(T0 + timedelta(minutes=i) for i in range(10))

    def record(pipeline: replay.Pipeline, i: int) -> str:
        return replay.record(
            pipeline, applications(i), store=store, record_key="application_id", at=next(at)
        ).run_id

    fine = [record(bank(), i) for i in range(3)]
    objects = set((tmp_path / "store" / "objects").rglob("*"))
    odd = record(bank(weight=3.0), 9)  # with a model of its own
    store.flush()
    replay.runs(store)  # the catalog holds them all: the window is found
    hidden = [p for p in set((tmp_path / "store" / "objects").rglob("*")) - objects if p.is_file()]
    for p in hidden:
        p.rename(tmp_path / p.name)
    first = replay.batch(store, pipeline="bank", job="gap", chunk=4, workers=1)
    assert first.by_verdict == {"exact": 3, "failed": 1}
    assert [r["run_id"] for r in first.diverged] == [odd] and "missing" in first.diverged[0][
        "error"
    ]
    written = results(store, "gap")
    files = chunk_files(store, "gap")
    assert set(written) == set(fine)
    for p in hidden:
        p.parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p.name).rename(p)
    again = replay.batch(store, resume="gap")
    assert again.by_verdict == {"exact": 4} and again.replayed == 1
    after = results(store, "gap")
    assert {r: after[r] for r in written} == written and set(after) == {*fine, odd}
    files_after = chunk_files(store, "gap")
    assert len(files_after) == len(files) + 1 and re.fullmatch(
        r"chunk-\d+-1\.json", *(set(files_after) - set(files))
    )  # the second attempt at the chunk of the run that failed


def test_the_cli_prints_the_summary_as_json_and_writes_the_report(
    bank_store: dict[str, Any], tmp_path: Path
) -> None:
    store = bank_store["store"]
    out = CliRunner().invoke(
        app,
        [
            "--store",
            str(store.root),
            "batch",
            "--pipeline",
            "bank",
            "--since",
            WINDOW[0].isoformat(),
            "--until",
            WINDOW[1].isoformat(),
            "--job",
            "cli",
            "--report",
            str(tmp_path / "report"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["runs"] == IN_WINDOW and summary["by_verdict"] == {"exact": IN_WINDOW}
    table = pq.read_table(tmp_path / "report" / "batch-cli.parquet")
    assert sorted(table["run_id"].to_pylist()) == sorted(bank_store["window"])
    assert "Bulk replay cli" in (tmp_path / "report" / "batch-cli.html").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_workers_of_a_local_cluster_wake_at_most_once_a_second() -> None:
    # Nobody reads their profile (sampled every 10 ms) nor their monitors without a
    # dashboard, and the wake-ups took a few percent of the replays' time.
    import distributed

    with local_cluster(1) as cluster, distributed.Client(cluster) as client:
        callbacks = client.run(
            lambda dask_worker: {
                k: c.callback_time for k, c in dask_worker.periodic_callbacks.items()
            }
        )
    for every in callbacks.values():
        assert "profile" not in every and "tick" in every
        assert min(every.values()) >= 1000, every


def test_an_unreachable_scheduler_is_one_line_and_exit_16(bank_store: dict[str, Any]) -> None:
    out = CliRunner().invoke(
        app,
        [
            "--store",
            str(bank_store["store"].root),
            "batch",
            "--pipeline",
            "bank",
            "--cluster",
            f"tcp://127.0.0.1:{free_port()}",
        ],
    )
    assert out.exit_code == 16
    assert out.stderr.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:")
    assert len(out.stderr.splitlines()) == 2 and "Traceback" not in out.output


def test_resuming_a_job_that_does_not_exist_says_where_jobs_are(
    bank_store: dict[str, Any],
) -> None:
    with pytest.raises(replay.NotFoundError, match="no batch job 'nope'"):
        replay.batch(bank_store["store"], resume="nope")


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
DASK = str(Path(sys.executable).parent / "dask")


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture
def scheduler() -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A `dask scheduler` and two `dask worker` processes (no nanny: a killed one stays dead)."""
    import distributed

    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rpartition(":")[2]
    processes = [start(DASK, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")]
    try:
        processes += [
            start(DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard")
            for _ in range(2)
        ]
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, processes[1:]
    finally:
        for process in processes:
            stop(process)


def test_a_worker_killed_mid_batch_leaves_every_run_reported_once(
    bank_store: dict[str, Any], scheduler: tuple[str, list[subprocess.Popen[bytes]]]
) -> None:
    address, workers = scheduler
    store = bank_store["store"]

    def kill_one(done: int, total: int) -> None:
        if done and workers[1].poll() is None:
            os.kill(workers[1].pid, signal.SIGKILL)

    summary = replay.batch(
        store, pipeline="slowbank", cluster=address, job="killed", chunk=2, progress=kill_one
    )
    assert workers[1].poll() is not None  # it was killed while chunks were left
    assert sorted(r["run_id"] for r in summary.rows) == sorted(bank_store["slow"])
    assert summary.by_verdict == {"exact": SLOW_RUNS}
    assert set(results(store, "killed")) == set(bank_store["slow"])


def test_a_job_resumed_after_its_client_was_killed_replays_only_what_is_left(
    bank_store: dict[str, Any],
) -> None:
    store = bank_store["store"]
    client = start(
        sys.executable,
        "-m",
        "replay",
        "--store",
        str(store.root),
        "batch",
        "--pipeline",
        "slowbank",
        "--job",
        "cut",
        "--workers",
        "1",
    )
    deadline = time.monotonic() + 60
    while len(results(store, "cut")) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop(client)  # the client, its LocalCluster and its workers: the whole process group
    before = results(store, "cut")
    assert 4 <= len(before) < SLOW_RUNS
    out = CliRunner().invoke(
        app, ["--store", str(store.root), "batch", "--resume", "cut", "--json"]
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["runs"] == SLOW_RUNS and summary["by_verdict"] == {"exact": SLOW_RUNS}
    assert summary["replayed"] == SLOW_RUNS - len(before)
    after = results(store, "cut")
    assert set(after) == set(bank_store["slow"])
    assert {r: after[r] for r in before} == before  # same bytes, same mtime: not rewritten


def test_a_job_name_is_taken_once_and_the_error_says_how_to_resume_it(
    bank_store: dict[str, Any],
) -> None:
    store, runs = bank_store["store"], bank_store["window"]
    new_job(store, "once", runs)
    with pytest.raises(replay.UsageError, match="exists already") as caught:
        new_job(store, "once", runs[:1])
    assert "--resume once" in caught.value.hint
    assert jobs.load(store, "once").runs == tuple(jobs.Run(r, "", "") for r in runs)


def imported_after(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }


def test_only_a_running_batch_imports_dask() -> None:
    assert {"dask", "distributed"}.isdisjoint(imported_after("-m", "replay", "batch", "--help"))


def test_the_task_a_worker_imports_does_not_import_the_catalog() -> None:
    # What the scheduler makes a worker import by reference: the task and what it replays.
    assert {"duckdb"}.isdisjoint(imported_after("-c", "import replay.engine.batch.task"))


def test_in_container_refuses_a_window_recorded_outside_any_image(
    bank_store: dict[str, Any],
) -> None:
    done = CliRunner().invoke(
        app, ["--store", str(bank_store["store"].root), "batch", "-p", "bank", "--in-container"]
    )
    assert done.exit_code == 2, done.output
    assert done.output.startswith("error: 15 runs of the window were recorded outside a container")
    assert "leave out --in-container" in done.output


def in_an_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> replay.Store:
    """A store whose one run says it ran in an image (a digest no engine here has)."""
    store = replay.Store.open(tmp_path / "store")
    with declared_image(monkeypatch, f"127.0.0.1:9/bank@sha256:{'0' * 64}"):
        replay.record(bank(), applications(1), store=store, record_key="application_id", at=T0)
    store.flush()
    return store


def test_in_container_without_an_engine_on_the_workers_is_one_line_and_exit_11(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = in_an_image(tmp_path, monkeypatch)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # the workers' too
    done = CliRunner().invoke(
        app, ["--store", str(store.root), "batch", "--in-container", "--workers", "1"]
    )
    assert done.exit_code == 11, done.output
    assert done.output.startswith(f"error: no Docker engine answers at unix://{tmp_path}")
    assert "Traceback" not in done.output


def shout(table: pa.Table) -> pa.Table:
    print("a step that prints")
    os.write(1, b"and one that writes to the descriptor\n")
    return table


def test_inside_the_container_stdout_carries_the_results_file_alone(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from replay.engine.batch.contained import main

    store = replay.Store.open(tmp_path / "store")
    run = replay.record(
        replay.Pipeline("loud", [replay.Step("shout", shout)]), applications(1), store=store
    )
    store.flush()
    asked = {"store": str(store.root), "run_ids": [run.run_id], "mode": "chained", "swap": {}}
    capfd.readouterr()  # what the recording printed
    assert main([json.dumps(asked)]) == 0
    out, err = capfd.readouterr()
    got = jobs.parse_results(out.encode(), "stdout")
    assert [r["run_id"] for r in got.results] == [run.run_id] and got.failed == {}
    assert got.results[0]["verdict"] == "exact"
    assert "a step that prints" in err and "writes to the descriptor" in err


def test_in_container_refuses_a_store_in_a_bucket_the_container_cannot_reach(
    s3_url: str,
) -> None:
    with pytest.raises(replay.UsageError, match="--in-container needs a store folder") as refused:
        replay.batch(replay.Store.open(s3_url), in_container=True)
    assert s3_url in refused.value.message


def test_a_flip_from_or_to_no_value_says_none() -> None:
    records = [
        {"flipped": True, "changes": {"decision": ["approve", "decline"], "reason": [None, "dti"]}},
        {"flipped": True, "changes": {"reason": ["dti", None]}},
        {"flipped": False, "changes": {"reason": ["dti", "ltv"]}},
    ]
    assert flip_labels(records) == [
        "decision: approve → decline",
        "reason: (none) → dti",
        "reason: dti → (none)",
    ]
