"""What-if runs are kept apart from the record; every list says how much it holds (issue 14).

A day: production runs at 09:00 and 11:00 decide records R0..R2; at 10:00 an analyst asks
what the pipeline as deployed then would decide for new rows, which include R1 again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import rows
from typer.testing import CliRunner

import replay
from replay.catalog import queries
from replay.cli.app import app
from replay.core import kinds
from replay.engine.timetravel import run_as_of


@pytest.fixture
def store(either_store: replay.Store) -> replay.Store:
    """Every test here runs on a folder store, then on S3 (tests/conftest.py)."""
    return either_store


NINE = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
TEN = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
ELEVEN = datetime(2026, 3, 14, 11, 0, tzinfo=UTC)


def ident(table: Any) -> Any:
    return table


@pytest.fixture
def day(store: replay.Store) -> dict[str, str]:
    pipe = replay.Pipeline("desk", [replay.Step("s", ident)])
    morning = replay.record(pipe, rows(2), store=store, record_key="id", at=NINE).run_id
    noon = replay.record(pipe, rows(1, start=2), store=store, record_key="id", at=ELEVEN).run_id
    whatif = run_as_of(store, TEN, "desk", rows(2, start=1), record_key="id").run_id
    return {"morning": morning, "noon": noon, "whatif": whatif}


def cli(store: replay.Store, *args: str) -> Any:
    return CliRunner().invoke(app, ["--store", store.url, *args])


def test_a_whatif_run_says_so_in_its_manifest_and_the_catalog(store, day) -> None:
    assert queries.entry(store, day["whatif"])["manifest"]["kind"] == "whatif"
    assert queries.entry(store, day["morning"])["manifest"]["kind"] == "production"
    listed = {r["run_id"]: r["kind"] for r in queries.runs(store, kind=None)}
    assert listed == {
        day["morning"]: "production",
        day["noon"]: "production",
        day["whatif"]: "whatif",
    }


def test_at_a_later_time_answers_with_production_not_the_whatif(store, day) -> None:
    assert (
        replay.at(store, datetime(2026, 3, 14, 10, 30, tzinfo=UTC), "desk")["run_id"]
        == day["morning"]
    )
    assert replay.at(store, TEN, "desk", record="R1")["run_id"] == day["morning"]
    asked = replay.at(store, TEN, "desk", record="R1", kind=kinds.WHATIF)
    assert asked["run_id"] == day["whatif"]


def test_runs_and_find_list_production_unless_asked(store, day) -> None:
    assert [r["run_id"] for r in queries.runs(store)] == [day["noon"], day["morning"]]
    assert [r["run_id"] for r in queries.find(store, "R1")] == [day["morning"]]
    assert [r["run_id"] for r in queries.find(store, "R1", kind=None)] == [
        day["whatif"],
        day["morning"],
    ]
    whatifs = json.loads(cli(store, "runs", "--kind", "whatif", "--json").stdout)
    assert [r["run_id"] for r in whatifs["runs"]] == [day["whatif"]]
    assert whatifs["runs"][0]["kind"] == "whatif"


def test_at_record_on_the_command_line_never_replays_the_whatif(store, day) -> None:
    result = cli(
        store, "at", "2026-03-14T10:30:00Z", "--pipeline", "desk", "--record", "R1", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["found"]["run_id"] == day["morning"]


def test_at_input_prints_the_kind_and_lists_it_apart(store, day, tmp_path: Path) -> None:
    path = tmp_path / "new.parquet"
    pq.write_table(rows(1, start=7), path)
    result = cli(
        store,
        "at",
        "2026-03-14T10:00:00Z",
        "--pipeline",
        "desk",
        "--input",
        str(path),
        "--record-key",
        "id",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == "whatif"
    assert json.loads(cli(store, "runs", "--json").stdout)["total"] == 2


def test_a_window_export_leaves_whatif_runs_out(
    store, day, tmp_path, monkeypatch, no_trust
) -> None:
    monkeypatch.setenv("REPLAY_SIGNING_KEY", str(tmp_path / "k.pem"))
    assert cli(store, "keys", "init").exit_code == 0
    out = tmp_path / "window.bundle"
    done = cli(
        store,
        "export",
        "--since",
        "2026-03-14T08:00:00Z",
        "--until",
        "2026-03-14T12:00:00Z",
        "-o",
        str(out),
        "--json",
    )
    assert done.exit_code == 0, done.output
    assert sorted(json.loads(done.stdout)["runs"]) == sorted([day["morning"], day["noon"]])


def test_an_unknown_kind_is_a_usage_error(store, day) -> None:
    result = cli(store, "runs", "--kind", "counterfactual")
    assert result.exit_code == 2
    assert "unknown run kind 'counterfactual'" in result.stderr


def test_a_manifest_from_before_kinds_is_judged_by_its_tags() -> None:
    assert kinds.kind_of(None, {"counterfactual": "true"}) == "whatif"
    assert kinds.kind_of(None, {}) == "production"


def test_a_catalog_row_whose_kind_was_edited_is_caught(no_trust, store, day) -> None:
    import duckdb

    queries.runs(store)  # the catalog exists
    with duckdb.connect(str(store.root / "catalog.duckdb")) as con:
        con.execute("update runs set kind = 'production' where run_id = ?", [day["whatif"]])
    result = cli(store, "verify", "--store")
    assert result.exit_code == 1
    assert "disagrees with ledger entry" in " ".join(result.stdout.split())


# Every list says how much it holds.


def test_runs_says_how_many_there_are_and_how_to_see_the_rest(store, day) -> None:
    result = cli(store, "runs", "--limit", "1")
    assert result.exit_code == 0
    assert "production runs 1 to 1 of 2; 1 more: --offset 1 (or --limit 2)" in result.stderr
    page = json.loads(cli(store, "runs", "--limit", "1", "--offset", "1", "--json").stdout)
    assert [r["run_id"] for r in page["runs"]] == [day["morning"]]
    assert (page["total"], page["offset"], page["limit"]) == (2, 1, 1)


def test_a_whole_listing_says_nothing_more(store, day) -> None:
    result = cli(store, "runs")
    assert result.stdout.count("\n") == 3 and "more" not in result.stderr  # header + 2 runs


def test_an_exported_whatif_run_is_labelled_in_the_report(
    store, day, tmp_path, monkeypatch, no_trust
) -> None:
    from replay.evidence import bundle

    monkeypatch.setenv("REPLAY_SIGNING_KEY", str(tmp_path / "k.pem"))
    assert cli(store, "keys", "init").exit_code == 0
    out = tmp_path / "asked.bundle"
    assert cli(store, "export", day["whatif"], day["morning"], "-o", str(out)).exit_code == 0
    html = bundle.read(out.read_bytes())["report.html"].decode()
    assert (
        html.count(
            "What-if run: new rows put through the pipeline as deployed at "
            "2026-03-14T10:00:00+00:00"
        )
        == 1
    )
    assert "It is not a decision the bank made." in html


def test_a_store_from_before_kinds_keeps_its_whatif_apart_and_replays_exact(tmp_path) -> None:
    """tests/assets/store-73ef54f-whatif: recorded by 73ef54f, before manifests had a kind:
    runs at 09:00 (R0, R1) and 11:00 (R2), and a what-if at 10:00 (R1, R9) known only by its
    counterfactual tag."""
    import shutil

    shutil.copytree(Path(__file__).parent / "assets" / "store-73ef54f-whatif", tmp_path / "store")
    store = replay.Store.open(tmp_path / "store")
    listed = queries.runs(store, kind=None)
    assert sorted(r["kind"] for r in listed) == ["production", "production", "whatif"]
    morning = replay.at(store, datetime(2026, 3, 14, 10, 30, tzinfo=UTC), "desk")
    assert morning["kind"] == "production"
    assert queries.find(store, "R9") == []
    assert all(replay.replay(store, r["run_id"]).verdict == "exact" for r in listed)
