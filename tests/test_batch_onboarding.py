"""Bulk replay of the onboarding reference pipeline, shaped as a bank engineer writes one:
helper modules beside pipe.py imported by plain name, a model folder with its loader,
XGBoost and ONNX files, an embedding column. Its incident (tokenizer edited, models retrained
in place) falls inside the window, and the workspace is gone before any batch: the workers
have the store, and nothing else, to replay from."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import replay
from replay.cli.app import app
from replay.engine.batch import jobs
from replay.engine.batch.cluster import local_cluster
from tests.conftest import ONBOARDING, builder

PIPELINE = "loan-onboarding"
HELPERS = ("pipe", "textfeat", "asof", "bureau", "riskfeat")
T0 = datetime(2026, 3, 14, 9, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(hours=1))
BEFORE_INCIDENT, AFTER_INCIDENT = 3, 3
ROWS = 20  # applications a run


@pytest.fixture(scope="module")
def onboarding(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs of the window, some before the incident and some after (two pipeline versions),
    one before the window and one after it, and a run of the next month (the swap's donor),
    each recorded with the workspace's files as they were then; then the workspace is removed."""
    root = tmp_path_factory.mktemp("onboarding")
    workspace = builder().build_workspace(
        root / "ws", applications=ROWS * (BEFORE_INCIDENT + AFTER_INCIDENT)
    )
    apps = pq.read_table(workspace / "applications.parquet")
    store = replay.Store.open(root / "store")

    def record(i: int, at: datetime) -> str:
        with builder().workspace_code(workspace) as code:  # imported afresh: today's files
            return replay.record(
                code["pipe"].pipeline,
                apps.slice(ROWS * i, ROWS),
                store=store,
                record_key="application_id",
                at=at,
            ).run_id

    window = [record(i, T0 + timedelta(minutes=5 * i + 1)) for i in range(BEFORE_INCIDENT)]
    record(0, T0 - timedelta(hours=1))
    builder().incident(workspace)
    window += [
        record(i, T0 + timedelta(minutes=5 * i + 1))
        for i in range(BEFORE_INCIDENT, BEFORE_INCIDENT + AFTER_INCIDENT)
    ]
    record(0, T0 + timedelta(hours=2))
    donor = record(0, T0 + timedelta(days=30))
    store.flush()
    shutil.rmtree(workspace)
    return {"store": store, "window": window, "donor": donor, "workspace": workspace}


@pytest.fixture(autouse=True)
def no_source_on_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder put the repo's copy of the pipeline's folder on sys.path, and workers a
    LocalCluster spawns inherit it: taken off, so that they could not import pipe.py and its
    helpers from anywhere but the store."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p).resolve() != ONBOARDING])


def importable_helpers() -> list[str]:
    """The pipeline's modules a worker could import from its source folder (other tests of
    the session may leave a folder with a ``pipe.py`` of their own on the path)."""
    specs = [importlib.util.find_spec(name) for name in HELPERS]
    return [
        str(spec.origin)
        for spec in specs
        if spec is not None and spec.origin and Path(spec.origin).parent == ONBOARDING
    ]


def results(store: replay.Store, job: str) -> Counter[str]:
    """How many results each run has in the job's files on the store."""
    return Counter(
        result["run_id"]
        for p in (store.root / jobs.FOLDER / job).glob("chunk-*.json")
        for result in json.loads(p.read_bytes())["results"]
    )


def test_a_batch_replays_every_run_of_the_window_once_exact_from_the_store_alone(
    onboarding: dict[str, Any],
) -> None:
    import distributed

    store, window = onboarding["store"], onboarding["window"]
    assert not onboarding["workspace"].exists()
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        summary = replay.batch(
            store,
            pipeline=PIPELINE,
            since=WINDOW[0],
            until=WINDOW[1],
            cluster=cluster.scheduler_address,
            job="all",
        )
        found = client.run(importable_helpers)
    assert len(found) == 2 and all(names == [] for names in found.values()), found
    assert sorted(r["run_id"] for r in summary.rows) == sorted(window)
    assert summary.by_verdict == {"exact": len(window)} and summary.ok
    assert results(store, "all") == Counter(window)


def test_swapping_in_the_incidents_tokenizer_counts_the_flips_each_replay_finds(
    onboarding: dict[str, Any],
) -> None:
    # The embedding step as the donor, recorded after the incident, had it: the edited
    # tokenizer module, carried by value in the step's code, before the same encoder folder.
    store, window, donor = onboarding["store"], onboarding["window"], onboarding["donor"]
    summary = replay.batch(
        store, pipeline=PIPELINE, since=WINDOW[0], until=WINDOW[1], swap={"embed": donor}
    )
    expected: Counter[str] = Counter()
    diverged = set()
    for run_id in window:
        report = replay.replay(store, run_id, swap={"embed": donor})
        if report.verdict == "diverged":
            diverged.add((run_id, report.first_divergence))
        for record in report.records:
            if record.flipped:
                expected.update(
                    f"{column}: {_shown(before)} → {_shown(after)}"
                    for column, (before, after) in record.changes.items()
                    if column in ("decision", "reason")
                )
    assert any(label.startswith("decision: ") for label in expected)
    assert summary.flips == dict(expected)
    assert {(r["run_id"], r["first_divergence"]) for r in summary.diverged} == diverged
    assert {run_id for run_id, _ in diverged} == set(window[:BEFORE_INCIDENT])
    assert all(r["error"].startswith("purpose_vec: ") for r in summary.diverged)


def test_the_cli_prints_the_summary_of_every_run_of_the_window_as_json(
    onboarding: dict[str, Any],
) -> None:
    store, window = onboarding["store"], onboarding["window"]
    out = CliRunner().invoke(
        app,
        [
            "--store",
            str(store.root),
            "batch",
            "--pipeline",
            PIPELINE,
            "--since",
            WINDOW[0].isoformat(),
            "--until",
            WINDOW[1].isoformat(),
            "--job",
            "cli",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["job"] == "cli" and summary["runs"] == summary["replayed"] == len(window)
    assert summary["by_verdict"] == {"exact": len(window)}
    assert summary["diverged"] == [] and summary["flips"] == {}
    assert results(store, "cli") == Counter(window)


def _shown(value: object) -> object:
    return "(none)" if value is None else value
