"""replay(): exact from the snapshot alone, and divergence named at the step that causes it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import rows

import replay
from replay.catalog.check import verify_store
from replay.engine.replay import replay as replay_run
from replay.errors import NotFoundError, UsageError


@pytest.fixture
def store(either_store: replay.Store) -> replay.Store:
    """Every test here runs on a folder store, then on S3 (tests/conftest.py)."""
    return either_store


def test_an_untouched_run_replays_exact_in_both_modes(store, toy) -> None:
    run_id = replay.record(toy, rows(5), store=store).run_id
    for mode in ("chained", "isolated"):
        report = replay_run(store, run_id, mode=mode)
        assert report.verdict == "exact"
        assert [s.verdict for s in report.steps] == ["exact", "exact"]
        assert report.first_divergence is None


def test_the_recorded_clock_seeds_and_tape_are_served_back(store) -> None:
    def world(table: pa.Table, *, ctx: replay.RunContext) -> pa.Table:
        answer = ctx.call("api", lambda: time.time_ns())
        noise = ctx.rng("n").random(table.num_rows)
        return (
            table.append_column("answer", pa.array([answer] * table.num_rows))
            .append_column("noise", pa.array(noise))
            .append_column("day", pa.array([ctx.now().isoformat()] * table.num_rows))
        )

    pipe = replay.Pipeline("world", [replay.Step("world", world)])
    run_id = replay.record(pipe, rows(3), store=store).run_id
    assert replay_run(store, run_id).verdict == "exact"


def _wall_clock(table: pa.Table) -> pa.Table:
    return table.append_column("t", pa.array([time.time_ns()] * table.num_rows))


def _unseeded(table: pa.Table) -> pa.Table:
    return table.append_column("u", pa.array(np.random.random(table.num_rows)))


def _after(table: pa.Table) -> pa.Table:
    return table.append_column("done", pa.array([True] * table.num_rows))


@pytest.mark.parametrize("culprit", [_wall_clock, _unseeded])
def test_a_step_reading_the_world_directly_is_named_as_the_divergence(store, culprit) -> None:
    pipe = replay.Pipeline(
        "leaky",
        [
            replay.Step("clean", lambda t: t),
            replay.Step("culprit", culprit),
            replay.Step("after", _after),
        ],
    )
    run_id = replay.record(pipe, rows(3), store=store).run_id
    chained = replay_run(store, run_id, mode="chained")
    assert chained.verdict == "diverged"
    assert chained.first_divergence == "culprit"
    assert [s.verdict for s in chained.steps] == ["exact", "diverged", "diverged"]
    isolated = replay_run(store, run_id, mode="isolated")
    assert [s.verdict for s in isolated.steps] == ["exact", "diverged", "exact"]


def test_the_column_diff_says_how_many_rows_changed_and_by_how_much(store) -> None:
    pipe = replay.Pipeline("leaky", [replay.Step("culprit", _unseeded)])
    report = replay_run(store, replay.record(pipe, rows(4), store=store).run_id)
    (column,) = report.steps[0].diff.columns
    assert column.column == "u" and column.rows_changed == 4
    assert 0 < column.max_abs < 1


def test_differences_within_declared_tolerance_are_equivalent(store) -> None:
    def jitter(table: pa.Table) -> pa.Table:
        return table.append_column("p", pa.array(0.5 + np.random.random(table.num_rows) * 1e-12))

    pipe = replay.Pipeline("tol", [replay.Step("p", jitter, tolerances={"p": 1e-9})])
    report = replay_run(store, replay.record(pipe, rows(3), store=store).run_id)
    assert report.verdict == "equivalent"


def test_a_step_that_asks_the_tape_something_new_diverges_instead_of_crashing(store) -> None:
    def ask(table: pa.Table, *, ctx: replay.RunContext) -> pa.Table:
        ctx.call("api", lambda x: x, time.time_ns())  # arguments differ on replay
        return table

    pipe = replay.Pipeline("tape", [replay.Step("ask", ask)])
    report = replay_run(store, replay.record(pipe, rows(1), store=store).run_id)
    assert report.steps[0].verdict == "diverged"
    assert "other arguments than recorded" in report.steps[0].error


def test_a_tape_that_holds_answers_as_json_text_still_replays_exact(tmp_path: Path) -> None:
    """tests/assets/store-4abecd2-tape: two runs recorded by 4abecd2, whose tape entries hold
    each answer as JSON text ("result") and digest the arguments with ``json``; one call's
    arguments hold 1e-7, which ``json`` and orjson write differently (1e-07, 1e-7)."""
    shutil.copytree(Path(__file__).parent / "assets" / "store-4abecd2-tape", tmp_path / "store")
    store = replay.Store.open(tmp_path / "store")
    assert verify_store(store)["runs"] == 2
    for _, entry in store.entries():
        assert replay_run(store, entry["run_id"]).verdict == "exact"


def test_a_recorded_failure_that_replays_the_same_is_exact(store) -> None:
    def boom(table: pa.Table) -> pa.Table:
        raise ValueError("bureau unavailable")

    pipe = replay.Pipeline("fails", [replay.Step("boom", boom)])
    with pytest.raises(replay.ReplayError) as info:
        replay.record(pipe, rows(1), store=store)
    assert replay_run(store, info.value.run_id).verdict == "exact"


def test_replaying_an_unknown_run_is_not_found(store, toy) -> None:
    replay.record(toy, rows(1), store=store)
    with pytest.raises(NotFoundError, match="no run 0000aaaa"):
        replay_run(store, "0000aaaa-0000")


def test_an_unknown_mode_is_a_usage_error(store, toy) -> None:
    run_id = replay.record(toy, rows(1), store=store).run_id
    with pytest.raises(UsageError, match="mode 'sideways'"):
        replay_run(store, run_id, mode="sideways")


def test_environment_drift_is_reported_but_does_not_fail_the_replay(
    store, toy, monkeypatch
) -> None:
    import replay.capture.environment as environment

    run_id = replay.record(toy, rows(1), store=store).run_id
    environment.fingerprint.cache_clear()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("REPLAY_IMAGE_DIGEST", "reg/x@sha256:" + "1" * 64)
    try:
        report = replay_run(store, run_id)
    finally:
        environment.fingerprint.cache_clear()
    assert report.verdict == "exact"
    assert {c.what for c in report.drift} >= {"OMP_NUM_THREADS", "image"}
    assert report.current_image == "reg/x@sha256:" + "1" * 64


def test_runs_recorded_under_other_packages_read_the_installed_ones_once(
    store, toy, monkeypatch
) -> None:
    """Replays on another machine meet another package set: the drift names the packages,
    and reading what is installed (a file per distribution) is not paid again per run."""
    import replay.capture.environment as environment

    environment.lock.cache_clear()
    environment.fingerprint.cache_clear()
    with monkeypatch.context() as patch:
        patch.setattr(environment, "packages", lambda: ["bank-scoring==1.0"])
        ids = [replay.record(toy, rows(1, i), store=store).run_id for i in range(3)]
    environment.lock.cache_clear()
    environment.fingerprint.cache_clear()
    reads = []
    read = environment.packages
    monkeypatch.setattr(environment, "packages", lambda: reads.append(1) or read())
    reports = [replay_run(store, run_id) for run_id in ids]
    assert all(r.verdict == "exact" for r in reports)
    assert all(any("bank-scoring" in str(c) for c in r.drift) for r in reports)
    assert len(reads) == 1


def test_the_catalog_resolves_many_runs_on_one_connection(store, toy, monkeypatch) -> None:
    # An export names many runs, by id or prefix: one catalog connection resolves them all.
    from datetime import UTC, datetime

    from replay.catalog import queries
    from replay.catalog.index import Catalog

    at = datetime(2026, 3, 14, tzinfo=UTC)
    ids = [replay.record(toy, rows(1, i), store=store, at=at).run_id for i in range(5)]
    fresh = replay.Store.open(store.url)
    opened = []
    connect = Catalog.connect
    monkeypatch.setattr(
        Catalog, "connect", lambda self, *a, **k: (opened.append(1), connect(self, *a, **k))[1]
    )
    found = queries.entries(fresh, [ids[0][:30], *ids[1:]])
    assert [e["run_id"] for e in found] == ids and len(opened) == 1
