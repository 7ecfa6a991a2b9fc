"""The CLI: each command over a real store, and the exact errors users see."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import rows
from typer.testing import CliRunner

from replay.cli.app import app

PIPELINE_MODULE = """
import pyarrow as pa
import pyarrow.compute as pc
import replay

def scale(table, *, params):
    return table.append_column("score", pc.multiply(table["x"], params["k"]))

def decide(table, *, ctx):
    return table.append_column("decision", pc.if_else(pc.greater(table["score"], 2),
                                                        "approve", "decline"))

pipeline = replay.Pipeline("cli-toy", [replay.Step("scale", scale, params={"k": 2.0}),
                                        replay.Step("decide", decide)])
not_a_pipeline = 42
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "toy_pipeline.py").write_text(PIPELINE_MODULE)
    (tmp_path / "broken_pipeline.py").write_text("raise RuntimeError('no config')\n")
    pq.write_table(rows(3), tmp_path / "apps.parquet")
    (tmp_path / "not.parquet").write_text("id,x\n1,2\n")
    return {"dir": tmp_path, "store": tmp_path / "store"}


def run(env: dict[str, Path], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--store", str(env["store"]), *args])


def record(env: dict[str, Path], *extra: str) -> str:
    result = run(
        env,
        "record",
        "--create",
        f"{env['dir']}/toy_pipeline.py:pipeline",
        "--input",
        str(env["dir"] / "apps.parquet"),
        "--record-key",
        "id",
        "--json",
        *extra,
    )
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["run_id"])


def test_record_then_runs_lists_the_run(env) -> None:
    run_id = record(env)
    listed = json.loads(run(env, "runs", "--json").stdout)["runs"]
    assert [r["run_id"] for r in listed] == [run_id]
    assert listed[0]["pipeline"] == "cli-toy" and listed[0]["rows"] == 3


def test_record_at_sets_the_logical_clock(env) -> None:
    run_id = record(env, "--at", "2026-03-14T09:30:00+01:00")
    shown = json.loads(run(env, "show", run_id, "--json").stdout)
    assert shown["manifest"]["clock"] == "2026-03-14T08:30:00+00:00"


def test_show_names_every_component_by_digest(env) -> None:
    run_id = record(env)
    shown = json.loads(run(env, "show", run_id, "--json").stdout)
    kinds = {(c["step"], c["kind"]) for c in shown["components"]}
    assert {("scale", "code"), ("scale", "source"), ("scale", "params")} <= kinds
    assert all(c["digest"].startswith("sha256:") for c in shown["components"])


def test_find_names_the_run_that_decided_a_record(env) -> None:
    run_id = record(env)
    found = json.loads(run(env, "find", "R1", "--json").stdout)
    assert [(f["run_id"], f["row"]) for f in found] == [(run_id, 1)]


def test_sql_counts_runs_and_reads_row_data(env) -> None:
    record(env)
    record(env)
    assert json.loads(run(env, "sql", "select count(*) as n from runs", "--json").stdout) == [
        {"n": 2}
    ]
    decisions = json.loads(
        run(
            env,
            "sql",
            "select decision, count(*) as n from cli_toy.decide group by 1 order by 1",
            "--json",
        ).stdout
    )
    assert decisions == [{"decision": "approve", "n": 2}, {"decision": "decline", "n": 4}]


def test_reindex_rebuilds_a_deleted_catalog(env) -> None:
    record(env)
    run(env, "runs")
    (env["store"] / "catalog.duckdb").unlink()
    result = run(env, "reindex", "--json")
    assert json.loads(result.stdout) == {"runs": 1}


def test_a_corrupt_catalog_is_rebuilt_from_the_files(env) -> None:
    record(env)
    run(env, "runs")
    (env["store"] / "catalog.duckdb").write_bytes(b"garbage" * 100)
    assert json.loads(run(env, "runs", "--json").stdout)["total"] == 1


def test_human_output_is_a_table(env) -> None:
    record(env)
    result = run(env, "runs")
    assert result.exit_code == 0 and "cli-toy" in result.stdout


ERRORS = [
    (("show", "01234567-dead-beef"), 4, "no run 01234567-dead-beef"),
    (("show", "xyz"), 2, "'xyz' is not a run id"),
    (("runs", "--since", "14/03/2026"), 2, "'14/03/2026' is not an ISO-8601 time"),
    (("runs", "--since", "2026-03-14T09:00:00"), 2, "has no timezone"),
    (("sql", "select * from nowhere"), 10, "Table with name nowhere does not exist"),
]


@pytest.mark.parametrize(("args", "code", "message"), ERRORS)
def test_bad_queries_get_one_line_and_a_distinct_exit_code(env, args, code, message) -> None:
    record(env)
    result = run(env, *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("target", "input_name", "code", "message"),
    [
        ("toy_pipeline.py:pipeline", "missing.parquet", 5, "does not exist"),
        ("toy_pipeline.py:pipeline", "not.parquet", 5, "is not a readable Parquet file"),
        ("toy_pipeline.py:nothing", "apps.parquet", 6, "defines no 'nothing'"),
        ("toy_pipeline.py:not_a_pipeline", "apps.parquet", 6, "is a int, not a replay.Pipeline"),
        ("broken_pipeline.py:pipeline", "apps.parquet", 6, "raised RuntimeError: no config"),
        ("nowhere.py:pipeline", "apps.parquet", 6, "does not exist"),
        ("toy_pipeline.py", "apps.parquet", 2, "does not name a pipeline"),
    ],
)
def test_bad_record_arguments_leave_the_store_unchanged(
    env, target, input_name, code, message
) -> None:
    record(env)
    before = (env["store"] / "ledger" / "ledger.jsonl").read_bytes()
    result = run(
        env, "record", "--create", f"{env['dir']}/{target}", "--input", str(env["dir"] / input_name)
    )
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert (env["store"] / "ledger" / "ledger.jsonl").read_bytes() == before


def test_querying_a_store_that_does_not_exist_says_how_to_create_one(tmp_path) -> None:
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "none"), "runs"])
    assert result.exit_code == 4
    assert "replay init" in result.stderr


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    documented = set(re.findall(r"`replay ([a-z]+)", readme))
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert commands <= documented, commands - documented
    for command in commands:
        help_text = CliRunner().invoke(app, [command, "--help"])
        assert help_text.exit_code == 0 and "--json" in help_text.stdout


LEAKY_MODULE = """
import time
import pyarrow as pa
import replay

def stamp(table):
    return table.append_column("t", pa.array([time.time_ns()] * table.num_rows))

pipeline = replay.Pipeline("leaky", [replay.Step("stamp", stamp)])
"""


def test_run_exits_0_when_exact_and_1_when_diverged(env) -> None:
    (env["dir"] / "leaky_pipeline.py").write_text(LEAKY_MODULE)
    exact = record(env)
    assert run(env, "run", exact).exit_code == 0
    leaky = run(
        env,
        "record",
        "--create",
        f"{env['dir']}/leaky_pipeline.py:pipeline",
        "--input",
        str(env["dir"] / "apps.parquet"),
        "--json",
    )
    result = run(env, "run", json.loads(leaky.stdout)["run_id"], "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["first_divergence"] == "stamp"


def test_at_finds_and_replays_the_run_of_that_moment(env) -> None:
    run_id = record(env, "--at", "2026-03-14T09:00:00Z")
    result = run(env, "at", "2026-03-14T10:00:00+01:00", "--pipeline", "cli-toy", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["found"]["run_id"] == run_id and out["replay"]["verdict"] == "exact"


def test_at_with_input_records_a_counterfactual_tagged_with_its_source(env) -> None:
    run_id = record(env, "--at", "2026-03-14T09:00:00Z")
    result = run(
        env,
        "at",
        "2026-03-14T12:00:00Z",
        "--pipeline",
        "cli-toy",
        "--input",
        str(env["dir"] / "apps.parquet"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    tags = json.loads(result.stdout)["tags"]
    assert tags["counterfactual"] == "true" and tags["deployed_by_run"] == run_id


def test_at_before_the_first_run_is_not_found(env) -> None:
    record(env, "--at", "2026-03-14T09:00:00Z")
    result = run(env, "at", "2026-03-13T09:00:00Z", "--pipeline", "cli-toy")
    assert result.exit_code == 4
    assert "its first production run is at 2026-03-14T09:00:00+00:00" in result.stderr


def test_a_malformed_swap_is_a_usage_error(env) -> None:
    run_id = record(env)
    result = run(env, "run", run_id, "--swap", "scale")
    assert result.exit_code == 2 and "is not STEP=RUN_OR_DIGEST" in result.stderr


def test_diff_of_a_run_with_itself_finds_nothing(env) -> None:
    run_id = record(env)
    out = json.loads(run(env, "diff", run_id, run_id, "--json").stdout)
    assert out["components"] == [] and out["records"] == [] and out["shared_records"] == 3


def test_lineage_draws_every_step_with_its_digests(env) -> None:
    run_id = record(env)
    text = run(env, "lineage", run_id).stdout
    assert "scale" in text and "decide" in text and text.count("sha256:") >= 8
    mermaid = run(env, "lineage", run_id, "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR") and "n_scale --> n_decide" in mermaid


def test_output_piped_into_a_reader_that_stops_ends_quietly(env) -> None:
    import subprocess
    import sys

    record(env)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replay",
            "--store",
            str(env["store"]),
            "sql",
            "select range from range(200000)",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(100)  # as `| head -c 100` does, then goes away
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    with proc.stderr:
        assert proc.stderr.read() == b""


def test_output_through_rich_whose_reader_went_away_ends_quietly_too(env) -> None:
    """Tables and the demo print through rich, which would end a broken pipe with exit 1
    itself (`replay demo | head -3`): the reader's choice all the same, not an error."""
    import subprocess
    import sys

    record(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "replay", "--store", str(env["store"]), "runs", "--format", "table"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the command writes its first line
    with proc.stderr:
        code, said = proc.wait(timeout=60), proc.stderr.read()
    assert (code, said) == (141, b"")
