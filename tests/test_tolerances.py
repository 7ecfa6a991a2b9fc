"""Tolerances by column, following the data (issue 12, point 4)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

import replay
from replay.cli.app import app
from replay.engine.replay import replay as replay_run
from replay.errors import UsageError


@pytest.fixture
def store(either_store: replay.Store) -> replay.Store:
    """Every test here runs on a folder store, then on S3 (tests/conftest.py)."""
    return either_store


AT = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
NUDGE = "REPLAY_TEST_NUDGE"


def score(table: pa.Table) -> pa.Table:
    # Reads the process environment as a numeric kernel setting does (OPENBLAS_CORETYPE…).
    return table.append_column("score", pc.add(table["x"], float(os.environ.get(NUDGE, "0"))))


def rule(table: pa.Table) -> pa.Table:
    return table.append_column(
        "decision", pc.if_else(pc.greater(table["score"], 5), "decline", "approve")
    )


def rescale(table: pa.Table) -> pa.Table:
    return table.set_column(
        table.column_names.index("score"), "score", pc.multiply(table["score"], 1000.0)
    )


def _record(store: replay.Store, *steps: replay.Step) -> str:
    pipe = replay.Pipeline("tol", list(steps))
    return replay.record(pipe, pa.table({"x": [1.0, 9.0]}), store=store, at=AT).run_id


def test_a_columns_tolerance_follows_it_through_later_steps(store, monkeypatch) -> None:
    run_id = _record(
        store, replay.Step("score", score, tolerances={"score": 1e-6}), replay.Step("rule", rule)
    )
    monkeypatch.setenv(NUDGE, "1e-9")
    report = replay_run(store, run_id)
    assert [s.verdict for s in report.steps] == ["equivalent", "equivalent"]
    assert report.verdict == "equivalent" and report.first_divergence is None
    assert {c.column for c in report.steps[1].diff.columns} == {"score"}  # decision exact


def test_a_column_a_later_step_recomputes_does_not_inherit(store, monkeypatch) -> None:
    run_id = _record(
        store,
        replay.Step("score", score, tolerances={"score": 1e-6}),
        replay.Step("rescale", rescale),
    )
    monkeypatch.setenv(NUDGE, "1e-9")
    report = replay_run(store, run_id)
    assert [s.verdict for s in report.steps] == ["equivalent", "diverged"]
    assert report.first_divergence == "rescale"


def test_tolerances_given_at_replay_time_are_applied_and_reported(store, monkeypatch) -> None:
    run_id = _record(store, replay.Step("score", score), replay.Step("rule", rule))
    monkeypatch.setenv(NUDGE, "1e-9")
    assert replay_run(store, run_id).first_divergence == "score"
    report = replay_run(store, run_id, tolerances={"score": 1e-6})
    assert report.verdict == "equivalent"
    assert report.as_json()["tolerances"] == {"score": 1e-6}


def test_the_cli_takes_tolerances(store, monkeypatch) -> None:
    run_id = _record(store, replay.Step("score", score), replay.Step("rule", rule))
    monkeypatch.setenv(NUDGE, "1e-9")
    cli = CliRunner()
    args = ["--store", store.url, "run", run_id]
    assert cli.invoke(app, args).exit_code == 1
    result = cli.invoke(app, [*args, "--tolerance", "score=1e-6"])
    assert result.exit_code == 0, result.output
    assert "EQUIVALENT" in result.output
    assert "tolerances given at replay time (not by the pipeline): score ≤ 1e-06" in result.output


@pytest.mark.parametrize("bad", ["score", "score=abc", "=1", "score=-1", "score=inf"])
def test_a_malformed_tolerance_is_a_usage_error(bad) -> None:
    from replay.engine.replay import parse_tolerances

    with pytest.raises(UsageError, match="is not COLUMN=NUMBER"):
        parse_tolerances([bad])
