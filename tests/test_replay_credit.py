"""Replay of the reference credit chain: exact although everything it used has changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace, refresh_workspace
from replay.engine.diff import diff
from replay.engine.replay import replay as replay_run
from replay.engine.timetravel import run_as_of
from tests.conftest import copy_credit_package

REPO = Path(__file__).parents[1]
T1 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 4, 14, 9, 0, tzinfo=UTC)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return build_workspace(tmp_path / "workspace")


def _cli(cwd: Path, workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREDIT_WORKSPACE": str(workspace), "REPLAY_STORE": str(cwd / "store")}
    return subprocess.run(
        [sys.executable, "-m", "replay", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_replay_is_exact_after_code_models_and_data_all_changed(tmp_path, workspace) -> None:
    pkg = copy_credit_package(tmp_path)
    pq.write_table(make_applications(40, seed=5), tmp_path / "apps.parquet")
    recorded = _cli(
        tmp_path,
        workspace,
        "record",
        "--create",
        "bankcopy/credit/pipeline.py:pipeline",
        "--input",
        "apps.parquet",
        "--record-key",
        "application_id",
        "--json",
    )
    assert recorded.returncode == 0, recorded.stderr
    run_id = json.loads(recorded.stdout)["run_id"]

    (pkg / "features.py").write_text("raise RuntimeError('feature code was rewritten')\n")
    refresh_workspace(workspace)  # new bureau table, PD model retrained in place
    (workspace / "models" / "fraud.pkl").write_bytes(b"not a model any more")
    shutil.rmtree(workspace / ".dvc" / "cache")

    replayed = _cli(tmp_path, workspace, "run", run_id, "--json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    report = json.loads(replayed.stdout)
    assert report["verdict"] == "exact"
    assert [s["verdict"] for s in report["steps"]] == ["exact"] * 4


def test_swapping_in_todays_pd_model_reports_the_decisions_that_flip(tmp_path, workspace) -> None:
    store = replay.Store.open(tmp_path / "store")
    pipe = make_pipeline(workspace)
    march = replay.record(
        pipe, make_applications(300, seed=11), store=store, record_key="application_id", at=T1
    )
    refresh_workspace(workspace)
    today = replay.record(
        pipe,
        make_applications(5, seed=12, start_id=10**6),
        store=store,
        record_key="application_id",
        at=T2,
    )
    report = replay_run(store, march.run_id, swap={"pd": today.run_id})
    assert [s.verdict for s in report.steps[:2]] == ["exact", "exact"]
    assert report.steps[2].swapped and report.first_divergence == "pd"
    flips = [r for r in report.records if r.flipped]
    assert any("decision" in r.changes for r in flips)
    assert all({"decision", "reason_codes"} & set(r.changes) for r in flips)
    assert report.records[: len(flips)] == tuple(flips)  # decision flips come first


def test_diff_names_exactly_the_components_that_changed(tmp_path, workspace) -> None:
    store = replay.Store.open(tmp_path / "store")
    pipe = make_pipeline(workspace)
    before = replay.record(
        pipe, make_applications(50, seed=3), store=store, record_key="application_id"
    )
    refresh_workspace(workspace)
    after = replay.record(
        pipe, make_applications(50, seed=3), store=store, record_key="application_id"
    )
    d = diff(store, before.run_id, after.run_id)
    assert {(c.where, c.what) for c in d.components} == {
        ("features", "data bureau"),
        ("pd", "model pd"),
    }
    assert d.shared_records == 50 and d.records


def test_at_with_new_rows_decides_as_the_pipeline_did_then(tmp_path, workspace) -> None:
    store = replay.Store.open(tmp_path / "store")
    pipe = make_pipeline(workspace)
    rows = make_applications(400, seed=21)
    then = replay.record(pipe, rows, store=store, record_key="application_id", at=T1)
    refresh_workspace(workspace)
    replay.record(pipe, make_applications(3, seed=22, start_id=10**6), store=store, at=T2)

    as_then = run_as_of(store, T1, "credit-decision", rows, "application_id", "test")
    as_now = run_as_of(store, T2, "credit-decision", rows, "application_id", "test")
    assert as_then.output["decision"].equals(then.output["decision"])
    assert as_then.output["reason_codes"].equals(then.output["reason_codes"])
    assert not as_now.output["pd"].equals(then.output["pd"])
    assert as_then.manifest.tags["deployed_by_run"] == then.run_id
    assert as_then.manifest.version == then.manifest.version


def test_the_demo_tells_the_incident_story_and_is_idempotent(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from replay.cli.app import app

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # the demo pins its key
    args = [
        "--store",
        str(tmp_path / "store"),
        "demo",
        "--workspace",
        str(tmp_path / "workspace"),
        "--key",
        str(tmp_path / "keys" / "demo.pem"),
        "--out-dir",
        str(tmp_path),
        "--json",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    story = json.loads(first.stdout)
    assert story["replay"] == "exact"
    before, after = story["counterfactual"]["decision"]
    assert before != after
    assert story["evidence"]["verified"] is True
    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert (again["application"], again["decided_by"]) == (
        story["application"],
        story["decided_by"],
    )


def test_the_credit_pipeline_from_fresh_shells(tmp_path, workspace) -> None:
    pq.write_table(make_applications(6, seed=9, start_id=777), tmp_path / "apps.parquet")
    recorded = _cli(
        tmp_path,
        workspace,
        "record",
        "--create",
        str(REPO / "pipelines/credit/pipeline.py") + ":pipeline",
        "--input",
        "apps.parquet",
        "--record-key",
        "application_id",
        "--json",
    )
    assert recorded.returncode == 0, recorded.stderr
    run_id = json.loads(recorded.stdout)["run_id"]
    listed = json.loads(_cli(tmp_path, workspace, "runs", "--json").stdout)["runs"]
    assert [r["run_id"] for r in listed] == [run_id]
    shown = json.loads(_cli(tmp_path, workspace, "show", run_id, "--json").stdout)
    bureau = next(c for c in shown["components"] if c["name"] == "bureau")
    assert bureau["dvc_md5"] and bureau["dvc_rev"]
    found = json.loads(_cli(tmp_path, workspace, "find", "APP-00000779", "--json").stdout)
    assert [(f["run_id"], f["row"]) for f in found] == [(run_id, 2)]
    counted = json.loads(
        _cli(tmp_path, workspace, "sql", "select count(*) as n from runs", "--json").stdout
    )
    assert counted == [{"n": 1}]


def test_swapping_one_model_by_digest_marks_that_step(tmp_path, workspace) -> None:
    store = replay.Store.open(tmp_path / "store")
    pipe = make_pipeline(workspace)
    march = replay.record(
        pipe, make_applications(50, seed=31), store=store, record_key="application_id", at=T1
    )
    refresh_workspace(workspace)
    today = replay.record(pipe, make_applications(2, seed=32, start_id=10**6), store=store, at=T2)
    spec = json.loads(store.get_object(today.manifest.version))
    new_pd = next(s for s in spec["steps"] if s["name"] == "pd")["models"]["pd"]["digest"]
    report = replay_run(store, march.run_id, swap={"pd.pd": new_pd})
    assert [s.swapped for s in report.steps] == [False, False, True, False]
    assert report.first_divergence == "pd" and report.records
