"""Small things that add up (issue 14): relative paths resolve beside the pipeline file, the
errors users catch are exported, a replayed step's time is its call's, and DVC-tracked models
are named by their DVC version as data is."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import rows
from typer.testing import CliRunner

import replay
from replay import errors
from replay.cli.app import app
from replay.core.manifest import Spec, decode

AT = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
HERE = Path(__file__).resolve().parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}

PIPELINE_FILE = """
import pyarrow as pa

import replay


def score(table, weight, bands):
    return table.append_column("score", pa.array([weight * x for x in table["x"].to_pylist()]))


pipeline = replay.Pipeline("relative", [
    replay.Step("score", score, models={"weight": replay.Model("models/weight.pkl")},
                data={"bands": "data/bands.csv"}),
])
"""


def ones(table: pa.Table, model: object = None) -> pa.Table:
    return table.append_column("one", pa.array([1] * table.num_rows))


def reads(table: pa.Table, bands: pa.Table) -> pa.Table:
    return table


# --- relative paths -------------------------------------------------------------------------


def test_a_relative_model_path_resolves_against_the_folder_of_the_declaring_file() -> None:
    assert replay.Model("models/pd.onnx").path == HERE / "models" / "pd.onnx"


def test_a_relative_data_path_resolves_against_the_folder_of_the_declaring_file() -> None:
    step = replay.Step("s", reads, data={"bands": "data/bands.csv"})
    assert step.data["bands"] == HERE / "data" / "bands.csv"


def test_a_model_path_given_as_text_to_a_step_resolves_the_same_way() -> None:
    step = replay.Step("s", ones, models={"model": "models/pd.onnx"})
    assert step.models["model"].path == HERE / "models" / "pd.onnx"


def test_code_without_a_file_declares_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"replay": replay}  # as a REPL or `python -c`: no __file__
    exec("model = replay.Model('models/pd.onnx')", namespace)
    assert namespace["model"].path == tmp_path / "models" / "pd.onnx"  # type: ignore[attr-defined]


def test_an_absolute_model_path_is_kept(tmp_path: Path) -> None:
    assert replay.Model(tmp_path / "m.pkl").path == tmp_path / "m.pkl"


def test_a_pipeline_file_with_relative_paths_records_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    (ws / "data").mkdir()
    (ws / "models" / "weight.pkl").write_bytes(pickle.dumps(2))
    (ws / "data" / "bands.csv").write_text("low,high\n0,1\n")
    (ws / "relative_paths_pipe.py").write_text(PIPELINE_FILE)
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "in.parquet")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "relative_paths_pipe", None)
    monkeypatch.delitem(sys.modules, "relative_paths_pipe")  # and removed again afterwards
    result = CliRunner().invoke(
        app,
        [
            "--store",
            str(tmp_path / "store"),
            "record",
            "--create",
            f"{ws}/relative_paths_pipe.py:pipeline",
            "--input",
            str(tmp_path / "in.parquet"),
            "--at",
            "2026-03-14T09:30:00Z",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["output"]
    assert [r["score"] for r in out] == [2, 4]


def test_a_missing_relative_model_names_the_folder_it_was_resolved_against(
    store: replay.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    pipe = replay.Pipeline(
        "p", [replay.Step("s", ones, models={"model": replay.Model("no-such-model.pkl")})]
    )
    with pytest.raises(errors.CaptureError) as caught:
        replay.record(pipe, rows(1), store=store, at=AT)
    assert caught.value.message == (
        f"step 's': model 'model': {HERE / 'no-such-model.pkl'} does not exist"
    )
    assert caught.value.hint == (
        "check the path bound to the step; relative paths resolve "
        f"against the folder of the file that declared them ({HERE})"
    )


def test_a_missing_relative_data_file_names_the_folder_it_was_resolved_against(
    store: replay.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    pipe = replay.Pipeline("p", [replay.Step("s", reads, data={"bands": "no-such.csv"})])
    with pytest.raises(errors.CaptureError) as caught:
        replay.record(pipe, rows(1), store=store, at=AT)
    assert caught.value.message == (f"step 's': data file {HERE / 'no-such.csv'} does not exist")
    assert str(HERE) in caught.value.hint


# --- exported errors ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(errors.EXIT_CODES))
def test_every_error_of_the_tree_is_exported_from_the_package(name: str) -> None:
    assert getattr(replay, name) is getattr(errors, name)
    assert name in replay.__all__


def test_bundle_errors_and_the_clock_warning_are_exported_from_the_package() -> None:
    from replay.core import context
    from replay.evidence import bundle

    assert replay.BundleError is bundle.BundleError
    assert replay.MalformedBundleError is bundle.MalformedBundleError
    assert replay.ClockWarning is context.ClockWarning


def test_a_failing_step_is_caught_as_replay_step_error(store: replay.Store) -> None:
    def fails(table: pa.Table) -> pa.Table:
        raise ValueError("boom")

    with pytest.raises(replay.StepError) as caught:
        replay.record(replay.Pipeline("p", [replay.Step("s", fails)]), rows(1), store=store, at=AT)
    assert caught.value.step == "s"


# --- step time in a replay ------------------------------------------------------------------

SLOW_MODULE = "slow_import_for_step_time"


def imports_lazily(table: pa.Table) -> pa.Table:
    import importlib

    importlib.import_module(SLOW_MODULE)  # as pyarrow imports pandas on first need
    return table


def test_a_replayed_step_time_leaves_out_the_imports_its_call_triggers(
    store: replay.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / f"{SLOW_MODULE}.py").write_text("import time\ntime.sleep(0.5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, SLOW_MODULE, None)
    monkeypatch.delitem(sys.modules, SLOW_MODULE)  # and removed again afterwards
    pipe = replay.Pipeline("p", [replay.Step("s", imports_lazily)])
    result = replay.record(pipe, rows(3), store=store, at=AT)
    del sys.modules[SLOW_MODULE]  # a fresh process: the import happens during the call
    report = replay.replay(store, result.run_id)
    assert SLOW_MODULE in sys.modules  # the step did import it, sleeping 0.5 s
    assert report.verdict == "exact"
    assert report.steps[0].duration_ns < 250_000_000


# --- DVC-tracked models ---------------------------------------------------------------------


def sh(cwd: Path, *cmd: str) -> str:
    return subprocess.run(
        cmd, cwd=cwd, check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    ).stdout.strip()


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repo tracking a model file and a model folder, committed."""
    repo = tmp_path_factory.mktemp("dvc-models") / "repo"
    (repo / "models" / "encoder").mkdir(parents=True)
    (repo / "models" / "weight.bin").write_bytes(b"\x00\x01weights")
    (repo / "models" / "encoder" / "vocab.txt").write_text("a\nb\n")
    (repo / "models" / "encoder" / "config.json").write_text("{}")
    dvc = (sys.executable, "-m", "dvc")
    sh(repo, "git", "init", "-q")
    sh(repo, *dvc, "init", "-q")
    sh(repo, *dvc, "config", "core.analytics", "false")
    sh(repo, *dvc, "add", "-q", "models/weight.bin", "models/encoder")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "models v1")
    return repo


def _model_entry(store: replay.Store, result: replay.RecordResult) -> dict:
    spec = json.loads(store.get_object(result.manifest.version))
    return spec["steps"][0]["models"]["model"]


def test_a_dvc_tracked_model_file_is_recorded_with_its_dvc_version(
    model_repo: Path, store: replay.Store
) -> None:
    path = model_repo / "models" / "weight.bin"
    pipe = replay.Pipeline(
        "p", [replay.Step("s", ones, models={"model": replay.Model(path, format="path")})]
    )
    entry = _model_entry(store, replay.record(pipe, rows(1), store=store, at=AT))
    assert {k: entry["dvc"][k] for k in ("repo", "rev", "path", "md5", "committed")} == {
        "repo": str(model_repo),
        "rev": sh(model_repo, "git", "rev-parse", "HEAD"),
        "path": "models/weight.bin",
        "md5": hashlib.md5(path.read_bytes()).hexdigest(),
        "committed": True,
    }
    assert store.get_object(entry["digest"]) == path.read_bytes()  # stored by content too


def test_a_dvc_tracked_model_folder_is_recorded_with_its_dvc_version(
    model_repo: Path, store: replay.Store
) -> None:
    dvc_file = (model_repo / "models" / "encoder.dvc").read_text()
    pipe = replay.Pipeline(
        "p",
        [
            replay.Step(
                "s",
                ones,
                models={"model": replay.Model(model_repo / "models" / "encoder", format="path")},
            )
        ],
    )
    entry = _model_entry(store, replay.record(pipe, rows(1), store=store, at=AT))
    assert entry["dvc"]["path"] == "models/encoder"
    assert entry["dvc"]["md5"].endswith(".dir") and entry["dvc"]["md5"] in dvc_file
    assert entry["dvc"]["committed"] is True


def test_a_model_dvc_does_not_track_has_no_dvc_version(store: replay.Store, tmp_path: Path) -> None:
    (tmp_path / "weight.bin").write_bytes(b"w")
    pipe = replay.Pipeline(
        "p",
        [
            replay.Step(
                "s", ones, models={"model": replay.Model(tmp_path / "weight.bin", format="path")}
            )
        ],
    )
    assert "dvc" not in _model_entry(store, replay.record(pipe, rows(1), store=store, at=AT))


def test_replay_show_lists_a_dvc_tracked_models_rev_and_md5(
    model_repo: Path, store: replay.Store
) -> None:
    path = model_repo / "models" / "weight.bin"
    pipe = replay.Pipeline(
        "p", [replay.Step("s", ones, models={"model": replay.Model(path, format="path")})]
    )
    run_id = replay.record(pipe, rows(1), store=store, at=AT).run_id
    shown = CliRunner().invoke(app, ["--store", str(store.root), "show", run_id, "--json"])
    assert shown.exit_code == 0, shown.output
    (model,) = [c for c in json.loads(shown.stdout)["components"] if c["kind"] == "model"]
    assert model["dvc_rev"] == sh(model_repo, "git", "rev-parse", "HEAD")
    assert model["dvc_md5"] == hashlib.md5(path.read_bytes()).hexdigest()


def test_the_lineage_names_a_dvc_tracked_models_rev(model_repo: Path, store: replay.Store) -> None:
    from replay.engine import lineage

    pipe = replay.Pipeline(
        "p",
        [
            replay.Step(
                "s",
                ones,
                models={"model": replay.Model(model_repo / "models" / "weight.bin", format="path")},
            )
        ],
    )
    result = replay.record(pipe, rows(1), store=store, at=AT)
    spec = decode(Spec, store.get_object(result.manifest.version), "spec")
    rev = sh(model_repo, "git", "rev-parse", "HEAD")
    assert f"(dvc rev {rev[:12]}, md5 " in lineage.text(result.manifest, spec)
