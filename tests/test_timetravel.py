"""at(): the run that was deciding at a moment — inside a span, between runs, at the edge."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from conftest import rows

import replay
from replay.core.timeparse import parse_time
from replay.engine.timetravel import at
from replay.errors import NotFoundError


@pytest.fixture
def store(either_store: replay.Store) -> replay.Store:
    """Every test here runs on a folder store, then on S3 (tests/conftest.py)."""
    return either_store


T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)


def _slow(table: pa.Table) -> pa.Table:
    time.sleep(0.3)
    return table


@pytest.fixture
def timeline(store) -> dict[str, str]:
    """A slow run at 10:00:00 (span 0.3 s), a fast one at 10:00:00.1, one at 11:00."""
    slow = replay.Pipeline("desk", [replay.Step("s", _slow)])
    fast = replay.Pipeline("desk", [replay.Step("s", lambda t: t)])
    return {
        "slow": replay.record(slow, rows(1, 0), store=store, record_key="id", at=T0).run_id,
        "fast": replay.record(
            fast, rows(1, 1), store=store, record_key="id", at=T0 + timedelta(milliseconds=100)
        ).run_id,
        "later": replay.record(
            fast, rows(1, 0), store=store, record_key="id", at=T0 + timedelta(hours=1)
        ).run_id,
    }


def test_a_time_inside_a_runs_span_finds_that_run(store, timeline) -> None:
    # 10:00:00.2 is after the fast run started, but only the slow run spans it.
    assert at(store, T0 + timedelta(milliseconds=200), "desk")["run_id"] == timeline["slow"]


def test_a_time_between_runs_finds_the_latest_before_it(store, timeline) -> None:
    assert at(store, T0 + timedelta(minutes=30), "desk")["run_id"] == timeline["fast"]


def test_the_exact_start_of_a_run_finds_that_run(store, timeline) -> None:
    assert at(store, T0, "desk")["run_id"] == timeline["slow"]
    assert at(store, T0 + timedelta(hours=1), "desk")["run_id"] == timeline["later"]


def test_time_zones_are_honoured(store, timeline) -> None:
    assert at(store, parse_time("2026-03-14T11:00:00+01:00"), "desk")["run_id"] == timeline["slow"]
    assert at(store, parse_time("2026-03-14T06:30:00-04:00"), "desk")["run_id"] == timeline["fast"]


def test_with_a_record_key_the_run_that_decided_that_record(store, timeline) -> None:
    assert at(store, T0 + timedelta(minutes=30), "desk", record="R0")["run_id"] == timeline["slow"]
    assert at(store, T0 + timedelta(hours=2), "desk", record="R0")["run_id"] == timeline["later"]


def test_a_time_before_the_first_run_is_a_clear_error(store, timeline) -> None:
    with pytest.raises(NotFoundError, match="its first production run is at 2026-03-14T10:00:00"):
        at(store, T0 - timedelta(seconds=1), "desk")


def test_an_unknown_pipeline_is_a_clear_error(store, timeline) -> None:
    with pytest.raises(NotFoundError, match="no production run of pipeline 'nope' is recorded"):
        at(store, T0, "nope")
