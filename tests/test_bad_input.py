"""Bad input, case by case: one line that says what to do, a documented exit code, no
traceback, and the store exactly as it was (apart from the catalog, which is an index)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from replay.cli.app import app

MODULE = """
import threading
import pyarrow as pa
import pyarrow.compute as pc
import replay

def scale(table, *, params):
    return table.append_column("score", pc.multiply(table["x"], params["k"]))

def needs_income(table):
    return table.append_column("dti", pc.divide(table["debt"], table["income"]))

def boom(table):
    raise RuntimeError("bureau service unavailable")

def wrong_type(table):
    return {"not": "a table"}

pipeline = replay.Pipeline("bad", [replay.Step("scale", scale, params={"k": 2.0})])
schema_pipeline = replay.Pipeline("schema", [replay.Step("dti", needs_income)])
raising = replay.Pipeline("raising", [replay.Step("boom", boom)])
wrong = replay.Pipeline("wrong", [replay.Step("wrong", wrong_type)])
unpicklable = replay.Pipeline("lock", [replay.Step("s", lambda t, models: t,
                                                   models={"m": threading.Lock()})])
not_a_pipeline = "nope"
"""

TIMES = [
    "yesterday",
    "14/03/2026",
    "2026-13-01",
    "2026-03-14T25:00:00Z",
    "2026-03-14T09:00:00",
    "",
    "2026-03-14 09:00",
    "1710403200",
    "2026-03-14T09:00:00+25:00",
    "March 14",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    d = tmp_path_factory.mktemp("bad")
    (d / "pipe.py").write_text(MODULE)
    (d / "raises_on_import.py").write_text("import no_such_module_anywhere\n")
    (d / "syntax_error.py").write_text("def broken(:\n")
    pq.write_table(pa.table({"id": ["a", "b"], "x": [1.0, 2.0]}), d / "good.parquet")
    pq.write_table(
        pa.table({"id": pa.array([], pa.string()), "x": pa.array([], pa.float64())}),
        d / "empty.parquet",
    )
    pq.write_table(pa.table({"id": ["a", None], "x": [1.0, 2.0]}), d / "null_keys.parquet")
    (d / "not_parquet.parquet").write_text("id,x\na,1\n")
    (d / "truncated.parquet").write_bytes((d / "good.parquet").read_bytes()[:40])
    (d / "folder.parquet").mkdir()
    store = d / "store"

    def record_good(*extra: str) -> Any:
        args = ["--store", str(store), "record", "--create", f"{d}/pipe.py:pipeline"]
        return CliRunner().invoke(app, [*args, "--input", str(d / "good.parquet"), *extra])

    result = record_good("--record-key", "id", "--json")
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)["run_id"]
    ids = [first]
    # Ids made within the same ~65 s share their first 8 characters (UUIDv7's clock): record
    # until two consecutive ones do, for an ambiguous prefix.
    while len(ids) < 2 or ids[-2][:8] != ids[-1][:8]:
        again = record_good("--json")
        ids.append(json.loads(again.stdout)["run_id"])
    return {"dir": d, "store": store, "run": first, "prefix": ids[-1][:8]}


def _fingerprint(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file() and "catalog" not in p.name
    }


def _cases() -> list[tuple[str, list[str], int, str]]:
    cases = []
    for t in TIMES:
        cases.append((f"runs --since {t!r}", ["runs", "--since", t], 2, repr(t)))
        cases.append((f"at {t!r}", ["at", t, "--pipeline", "bad"], 2, repr(t)))
    run = "{run}"
    cases += [
        ("unknown run", ["show", "0123abcd-0000-7000-8000-000000000000"], 4, "no run"),
        ("unknown run prefix", ["run", "ffffffff"], 4, "no run ffffffff"),
        ("ambiguous prefix", ["show", "{prefix}"], 4, "ambiguous"),
        ("not a run id", ["show", "hello world"], 2, "is not a run id"),
        ("short id", ["run", "0123"], 2, "is not a run id"),
        ("diff unknown", ["diff", run, "0123abcd-0000-7000-8000-000000000000"], 4, "no run"),
        ("lineage unknown", ["lineage", "0123abcd-0000"], 4, "no run"),
        ("lineage format", ["lineage", run, "--format", "svg"], 2, "is not text or mermaid"),
        ("bad mode", ["run", run, "--mode", "sideways"], 2, "mode 'sideways'"),
        ("bad swap", ["run", run, "--swap", "scale"], 2, "is not STEP=RUN_OR_DIGEST"),
        ("swap unknown step", ["run", run, "--swap", f"nope={run}"], 2, "no step 'nope'"),
        (
            "swap a model into a step without one",
            ["run", run, "--swap", "scale=sha256:" + "0" * 64],
            2,
            "step 'scale' has 0 models",
        ),
        (
            "at before first run",
            ["at", "2000-01-01T00:00:00Z", "--pipeline", "bad"],
            4,
            "its first production run is at",
        ),
        (
            "at unknown pipeline",
            ["at", "2030-01-01T00:00:00Z", "--pipeline", "nope"],
            4,
            "no production run of pipeline 'nope'",
        ),
        ("find nothing", ["find", "no-such-record"], 4, "no run decided record"),
        ("empty sql", ["sql", "  "], 2, "the SQL query is empty"),
        ("bad sql", ["sql", "select * from nowhere"], 10, "nowhere"),
        ("sql syntax", ["sql", "selec 1"], 10, "syntax error"),
        ("export nothing", ["export", "--out", "{dir}/x.bundle"], 2, "no runs to export"),
        (
            "export no key",
            ["export", run, "--key", "{dir}/no-key.pem", "--out", "{dir}/x.bundle"],
            4,
            "no signing key",
        ),
        ("verify nothing", ["verify"], 2, "nothing to verify"),
        ("verify missing bundle", ["verify", "{dir}/missing.bundle"], 2, "cannot read bundle"),
        ("checkpoint no key", ["checkpoint", "--key", "{dir}/no-key.pem"], 4, "no signing key"),
    ]
    for name, module, inp, code, msg in [
        ("missing input", "pipe.py:pipeline", "missing.parquet", 5, "does not exist"),
        (
            "input not parquet",
            "pipe.py:pipeline",
            "not_parquet.parquet",
            5,
            "is not a readable Parquet file",
        ),
        (
            "truncated parquet",
            "pipe.py:pipeline",
            "truncated.parquet",
            5,
            "is not a readable Parquet file",
        ),
        ("input is a folder", "pipe.py:pipeline", "folder.parquet", 5, "is a folder"),
        ("empty input", "pipe.py:pipeline", "empty.parquet", 5, "the input has no rows"),
        (
            "module raises on import",
            "raises_on_import.py:pipeline",
            "good.parquet",
            6,
            "no_such_module_anywhere",
        ),
        ("syntax error", "syntax_error.py:pipeline", "good.parquet", 6, "SyntaxError"),
        ("no such object", "pipe.py:missing", "good.parquet", 6, "defines no 'missing'"),
        ("not a pipeline", "pipe.py:not_a_pipeline", "good.parquet", 6, "not a replay.Pipeline"),
        ("unpicklable model", "pipe.py:unpicklable", "good.parquet", 7, "cannot be pickled"),
        ("no module file", "nowhere.py:pipeline", "good.parquet", 6, "does not exist"),
        ("no colon", "pipe.py", "good.parquet", 2, "does not name a pipeline"),
    ]:
        cases.append(
            (
                name,
                ["record", "--create", f"{{dir}}/{module}", "--input", f"{{dir}}/{inp}"],
                code,
                msg,
            )
        )
    cases.append(
        (
            "unknown module",
            ["record", "--create", "no_such_pkg.mod:pipeline", "--input", "{dir}/good.parquet"],
            6,
            "cannot import no_such_pkg.mod",
        )
    )
    cases += [
        (
            "record key missing",
            [
                "record",
                "--create",
                "{dir}/pipe.py:pipeline",
                "--input",
                "{dir}/good.parquet",
                "--record-key",
                "nope",
            ],
            5,
            "record key column 'nope' is not in the input",
        ),
        (
            "record key nulls",
            [
                "record",
                "--create",
                "{dir}/pipe.py:pipeline",
                "--input",
                "{dir}/null_keys.parquet",
                "--record-key",
                "id",
            ],
            5,
            "1 null values",
        ),
        (
            "record --at without zone",
            [
                "record",
                "--create",
                "{dir}/pipe.py:pipeline",
                "--input",
                "{dir}/good.parquet",
                "--at",
                "2026-03-14T09:00",
            ],
            2,
            "has no timezone",
        ),
    ]
    return cases


CASES = _cases()


def test_there_are_at_least_fifty_cases() -> None:
    assert len(CASES) >= 50


@pytest.mark.parametrize(("name", "args", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_a_code_and_no_change(env, name, args, code, message) -> None:
    store = env["store"]
    subs = {"dir": str(env["dir"]), "run": env["run"], "prefix": env["prefix"]}
    argv = [a.format(**subs) for a in args]
    before = _fingerprint(store)
    result = CliRunner().invoke(app, ["--store", str(store), *argv])
    assert result.exit_code == code, result.output
    assert message in result.stderr or message in result.stdout, result.output
    assert "Traceback" not in result.output
    assert _fingerprint(store) == before


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("raising", "raised RuntimeError: bureau service unavailable"),
        ("wrong", "returned dict, not a table"),
        ("schema_pipeline", "raised KeyError"),
    ],
)
def test_a_failing_step_is_recorded_as_a_failed_run_not_lost(
    tmp_path, env, target, message
) -> None:
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app,
        [
            "--store",
            str(store),
            "record",
            "--create",
            f"{env['dir']}/pipe.py:{target}",
            "--input",
            str(env["dir"] / "good.parquet"),
        ],
    )
    assert result.exit_code == 6 and message in result.stderr
    assert "the failed run is recorded as" in result.stderr
    listed = CliRunner().invoke(app, ["--store", str(store), "runs", "--json"])
    runs = json.loads(listed.stdout)["runs"]
    assert [r["status"] for r in runs] == ["failed"]


def test_debug_shows_the_traceback(env) -> None:
    result = CliRunner().invoke(
        app, ["--store", str(env["store"]), "--debug", "show", "0123abcd-0000"]
    )
    assert result.exit_code != 0 and result.exception is not None


def _copy_store(env, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copytree(env["store"], tmp_path / "store")
    return tmp_path / "store"


def test_a_corrupt_object_is_named_and_refused(env, tmp_path) -> None:
    store = _copy_store(env, tmp_path)
    shown = json.loads(
        CliRunner().invoke(app, ["--store", str(store), "show", env["run"], "--json"]).stdout
    )
    code = next(c["digest"] for c in shown["components"] if c["kind"] == "code")
    victim = store / "objects" / "sha256" / code[7:9] / code[9:]
    victim.write_bytes(victim.read_bytes()[:-1])
    result = CliRunner().invoke(app, ["--store", str(store), "run", env["run"]])
    assert result.exit_code == 9 and "no longer match" in result.stderr


def test_a_truncated_segment_is_named_and_refused(env, tmp_path) -> None:
    store = _copy_store(env, tmp_path)
    shown = json.loads(
        CliRunner().invoke(app, ["--store", str(store), "show", env["run"], "--json"]).stdout
    )
    seg = store / "segments" / shown["run"]["segment"]
    block_end = shown["run"]["block_offset"] + shown["run"]["block_length"]
    seg.write_bytes(seg.read_bytes()[: block_end - 10])  # into the run's block
    result = CliRunner().invoke(app, ["--store", str(store), "run", env["run"]])
    assert result.exit_code == 9 and seg.name in result.stderr


def test_a_store_of_a_newer_format_is_refused(env, tmp_path) -> None:
    store = _copy_store(env, tmp_path)
    (store / "FORMAT").write_text('{"format": 2}')
    result = CliRunner().invoke(app, ["--store", str(store), "runs"])
    assert result.exit_code == 8 and "upgrade pipeline-replay" in result.stderr


@pytest.mark.parametrize("url", ["gs://bank/decisions", "s3:/bank/decisions"])
def test_a_store_url_of_another_kind_is_refused_and_no_folder_is_made_of_it(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["--store", url, "runs"])
    assert result.exit_code == 2, result.output
    assert "a store is a folder or s3://BUCKET/PREFIX" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
