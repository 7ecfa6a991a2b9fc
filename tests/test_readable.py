"""Readable anywhere: tables that fit the terminal, TSV when piped, human durations, and DVC
data versions in words (issue 14, point 3)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from conftest import rows
from typer.testing import CliRunner

import replay
from replay.cli.app import app
from replay.core.cells import duration, plain, short_digest

T1 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 4, 14, 9, 0, tzinfo=UTC)
BOX = set("┃│┏┗━─┡╇")


@pytest.fixture(scope="module")
def credit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two runs of the real credit chain: before and after the bureau table (DVC-tracked)
    and the PD model changed."""
    from pipelines.credit.generate import make_applications
    from pipelines.credit.pipeline import make_pipeline
    from pipelines.credit.workspace import build_workspace, refresh_workspace

    root = tmp_path_factory.mktemp("readable")
    workspace = build_workspace(root / "workspace")
    store = replay.Store.open(root / "store")
    pipe = make_pipeline(workspace)
    before = replay.record(
        pipe, make_applications(6, seed=3), store=store, record_key="application_id", at=T1
    )
    refresh_workspace(workspace)
    after = replay.record(
        pipe, make_applications(6, seed=3), store=store, record_key="application_id", at=T2
    )
    return {"store": str(store.root), "a": before.run_id, "b": after.run_id}


@pytest.fixture
def toy_store(store: replay.Store, toy: replay.Pipeline) -> dict[str, str]:
    run = replay.record(toy, rows(3), store=store, record_key="id", at=T1)
    return {"store": str(store.root), "a": run.run_id}


def cli(where: dict[str, str], *args: str, columns: int = 80, **env: str) -> str:
    result = CliRunner().invoke(
        app, ["--store", where["store"], *args], env={"COLUMNS": str(columns), **env}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def components(where: dict[str, str]) -> list[dict[str, str]]:
    found: list[dict[str, str]] = json.loads(cli(where, "show", where["a"], "--json"))["components"]
    return found


# Tables fit the terminal


def test_show_at_80_columns_keeps_step_kind_name_and_digest_of_every_component(credit) -> None:
    out = cli(credit, "show", credit["a"], "--format", "table")
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    for c in components(credit):
        cells = (c["step"], c["kind"], c["name"], short_digest(c["digest"]))
        assert any(all(f" {cell} " in line for cell in cells) for line in lines), c


def test_show_at_80_columns_keeps_the_dvc_version_of_tracked_data(credit) -> None:
    out = cli(credit, "show", credit["a"], "--format", "table")
    tracked = [c for c in components(credit) if c["dvc_rev"]]
    assert any(c["kind"] == "data" for c in tracked)
    for c in tracked:
        (line,) = (
            line
            for line in out.splitlines()
            if f" {c['step']} " in line and short_digest(c["digest"]) in line
        )
        assert f" {c['dvc_rev'][:7]} " in line and f" {c['dvc_md5'][:12]} " in line


@pytest.mark.parametrize("columns", [40, 60, 100, 160])
def test_no_line_outgrows_the_terminal_and_no_name_breaks(credit, columns) -> None:
    out = cli(credit, "show", credit["a"], "--format", "table", columns=columns)
    assert max(len(line) for line in out.splitlines()) <= columns
    words = re.findall(r"[\w.-]+", out)
    for c in components(credit):
        assert c["step"] in words and c["name"] in words


def test_a_column_left_out_for_width_is_named(credit) -> None:
    out = cli(credit, "show", credit["a"], "--format", "table", columns=50)
    assert "not shown at this width: kind, dvc_rev, dvc_md5" in " ".join(out.split())


def test_tables_print_a_digest_as_sha256_and_12_hex_digits_a_swap_accepts(credit) -> None:
    out = cli(credit, "show", credit["a"], "--format", "table")
    printed = set(re.findall(r"sha256:[0-9a-f]+", out))
    assert {short_digest(c["digest"]) for c in components(credit)} <= printed
    assert all(len(d) == len("sha256:") + 12 for d in printed)
    # tests/test_exit_codes.py swaps a model in by exactly this prefix
    model = next(c["digest"] for c in components(credit) if c["kind"] == "model")
    assert short_digest(model) == "sha256:" + model[7:19]


def test_runs_at_80_columns_keep_full_run_ids(toy_store) -> None:
    out = cli(toy_store, "runs", "--format", "table")
    assert toy_store["a"] in out
    assert max(len(line) for line in out.splitlines()) <= 80


# Piped output is TSV


def test_piped_show_is_tsv_with_every_column_and_full_digests(credit) -> None:
    out = cli(credit, "show", credit["a"])
    assert not BOX & set(out)
    run, steps, parts = (block.splitlines() for block in out.split("\n\n"))
    header = parts[0].split("\t")
    assert header[:6] == ["step", "kind", "name", "digest", "dvc_rev", "dvc_md5"]
    got = [dict(zip(header, line.split("\t"), strict=True)) for line in parts[1:]]
    assert [g["digest"] for g in got] == [c["digest"] for c in components(credit)]
    assert {g["dvc_md5"] for g in got} == {c["dvc_md5"] or "" for c in components(credit)}
    assert run[0].startswith("run_id\t") and run[1].startswith(credit["a"] + "\t")
    assert steps[0].split("\t")[:5] == ["name", "rows", "output", "duration_ns", "calls"]


def test_piped_find_is_tsv_with_a_header_row(toy_store) -> None:
    out = cli(toy_store, "find", "R1")
    header, line = out.splitlines()
    found = dict(zip(header.split("\t"), line.split("\t"), strict=True))
    assert found["run_id"] == toy_store["a"] and found["row"] == "1"


def test_a_terminal_gets_the_table_by_default(toy_store) -> None:
    assert BOX & set(cli(toy_store, "runs", TTY_COMPATIBLE="1"))


def test_force_color_gets_the_table_in_a_pipe_as_rich_would(toy_store) -> None:
    # A pipe is told apart without importing rich (replay.cli.render.on_terminal), but
    # rich's overrides still decide.
    assert BOX & set(cli(toy_store, "find", "R1", FORCE_COLOR="1"))


def test_a_tsv_field_escapes_tabs_newlines_and_backslashes() -> None:
    assert plain("a\tb\nc\\d") == "a\\tb\\nc\\\\d"
    assert plain(None) == ""


@pytest.mark.parametrize("command", [["show", "{a}"], ["runs"], ["find", "R1"]])
def test_format_json_is_the_same_as_json(toy_store, command) -> None:
    args = [part.format(**toy_store) for part in command]
    assert cli(toy_store, *args, "--format", "json") == cli(toy_store, *args, "--json")


def test_json_with_another_format_is_a_usage_error(toy_store) -> None:
    result = CliRunner().invoke(
        app, ["--store", toy_store["store"], "runs", "--json", "--format", "tsv"]
    )
    assert result.exit_code == 2 and "--json and --format tsv disagree" in result.stderr


def test_an_unknown_format_is_a_usage_error(toy_store) -> None:
    result = CliRunner().invoke(app, ["--store", toy_store["store"], "runs", "--format", "csv"])
    assert result.exit_code == 2 and "--format 'csv' is not table, tsv or json" in result.stderr


# Durations read as durations


@pytest.mark.parametrize(
    ("ns", "shown"),
    [
        (850_000, "850 µs"),
        (19_000_000, "19 ms"),
        (1_400_000_000, "1.4 s"),
        (123 * 10**9, "2 min 3 s"),
    ],
)
def test_a_duration_reads_in_the_unit_that_fits(ns, shown) -> None:
    assert duration(ns) == shown


def test_show_prints_step_durations_for_people_and_json_keeps_nanoseconds(toy_store) -> None:
    out = cli(toy_store, "show", toy_store["a"], "--format", "table")
    steps = json.loads(cli(toy_store, "show", toy_store["a"], "--json"))["manifest"]["steps"]
    assert all(isinstance(s["duration_ns"], int) for s in steps)
    assert "took" in out and "duration_ns" not in out
    for s in steps:
        assert str(s["duration_ns"]) not in out
        assert f" {duration(s['duration_ns'])} " in out


# diff names DVC data versions in words


def test_diff_shows_dvc_data_versions_without_a_dict(credit) -> None:
    out = cli(credit, "diff", credit["a"], credit["b"])
    bureau = [
        c for w in ("a", "b") for c in components({**credit, "a": credit[w]}) if c["kind"] == "data"
    ]
    assert len({c["dvc_md5"] for c in bureau}) == 2 and "{" not in out
    for c in bureau:
        assert f"rev {c['dvc_rev'][:7]}" in out and f"md5 {c['dvc_md5'][:12]}" in out


def test_piped_sql_keeps_full_digests(toy_store) -> None:
    out = cli(toy_store, "sql", "select kind, digest from components order by digest")
    header, *lines = out.splitlines()
    assert header == "kind\tdigest" and lines
    assert all(re.fullmatch(r"\w+\tsha256:[0-9a-f]{64}", line) for line in lines)
