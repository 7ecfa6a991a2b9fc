"""Step code travels by value with every module of the user's it reaches (issue 12, 1 and 6).

The pipelines here are shaped as a bank engineer writes them: a plain folder (no package)
holding ``pipe.py`` and the helper modules it imports by plain name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import replay
from replay.capture.code import capture_code
from replay.errors import CaptureError

PIPE = """
import pyarrow as pa
import replay
import helper
from rules import band

def doubled(table):
    return table.append_column("y", pa.array([helper.double(v) for v in table["x"].to_pylist()]))

def decide(table):
    return table.append_column("band", pa.array([band(v) for v in table["y"].to_pylist()]))

pipeline = replay.Pipeline("folder-pipe", [replay.Step("double", doubled),
                                           replay.Step("decide", decide)])
"""
HELPER = "def double(v):\n    return v * 2\n"
RULES = "LIMIT = 5\n\ndef band(v):\n    return 'high' if v > LIMIT else 'low'\n"


def _folder(root: Path) -> Path:
    root.mkdir()
    (root / "pipe.py").write_text(PIPE)
    (root / "helper.py").write_text(HELPER)
    (root / "rules.py").write_text(RULES)
    pq.write_table(pa.table({"id": ["a", "b"], "x": [1.0, 4.0]}), root / "in.parquet")
    return root


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REPLAY_STORE"}
    return subprocess.run(
        [sys.executable, "-m", "replay", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _record(folder: Path, store: Path) -> str:
    done = _cli(
        folder,
        "--store",
        str(store),
        "record",
        "--create",
        "pipe.py:pipeline",
        "--input",
        "in.parquet",
        "--record-key",
        "id",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["run_id"])


def test_a_sibling_helper_edited_after_the_run_does_not_change_its_replay(tmp_path) -> None:
    folder = _folder(tmp_path / "bank")
    run_id = _record(folder, tmp_path / "store")
    (folder / "helper.py").write_text("def double(v):\n    return v * 3\n")
    (folder / "rules.py").write_text("LIMIT = 0\n\ndef band(v):\n    return 'high'\n")
    done = _cli(folder, "--store", str(tmp_path / "store"), "run", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exact" in done.stdout


def test_a_folder_pipeline_replays_from_another_folder_after_its_folder_is_gone(tmp_path) -> None:
    folder = _folder(tmp_path / "bank")
    run_id = _record(folder, tmp_path / "store")
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _cli(elsewhere, "--store", str(tmp_path / "store"), "run", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exact" in done.stdout


def test_every_reached_module_keeps_its_own_source(tmp_path) -> None:
    folder = _folder(tmp_path / "bank")
    _record(folder, tmp_path / "store")
    store = replay.Store.open(tmp_path / "store")
    ((_, entry),) = store.entries()
    spec = json.loads(store.get_object(entry["manifest"]["version"]))
    double, decide = (step["modules"] for step in spec["steps"])
    assert (set(double), set(decide)) == ({"pipe", "helper"}, {"pipe", "rules"})
    assert store.get_object(double["helper"]).decode() == HELPER
    assert store.get_object(decide["rules"]).decode() == RULES
    assert store.get_object(decide["pipe"]).decode() == PIPE


def test_installed_libraries_are_referenced_by_name_and_version() -> None:
    def step(table: pa.Table) -> pa.Table:
        return table

    code = capture_code(step, "step 's'")
    assert code.installed == {}
    code = capture_code(lambda t: pa.table(t), "step 's'")
    assert code.installed["pyarrow"] == f"pyarrow=={pa.__version__}"


class Session:
    """Stands for an onnxruntime session: an object of a model library."""


Session.__module__ = "onnxruntime.capi.session"
_sessions: dict[str, Session] = {}


def cached_step(table: pa.Table) -> pa.Table:
    _sessions.setdefault("pd", Session())
    return table


def test_a_model_cached_in_a_module_global_is_refused_with_the_fix(store) -> None:
    cached_step(pa.table({"x": [1]}))
    pipe = replay.Pipeline("cached", [replay.Step("pd", cached_step)])
    with pytest.raises(CaptureError) as err:
        replay.record(pipe, pa.table({"x": [1.0]}), store=store)
    assert (
        "test_code_capture._sessions holds a Session, which is state, not code" in err.value.message
    )
    assert "Step(models=" in err.value.hint
    assert list(store.entries()) == []


def test_an_unpicklable_global_is_named(store) -> None:
    import threading

    lock = threading.Lock()

    def locked(table: pa.Table) -> pa.Table:
        with lock:
            return table

    pipe = replay.Pipeline("locked", [replay.Step("s", locked)])
    with pytest.raises(CaptureError, match="step 's': its code cannot be pickled"):
        replay.record(pipe, pa.table({"x": [1.0]}), store=store)


def test_show_source_prints_each_module_the_step_ran(tmp_path) -> None:
    from typer.testing import CliRunner

    from replay.cli.app import app

    folder = _folder(tmp_path / "bank")
    run_id = _record(folder, tmp_path / "store")
    (folder / "helper.py").write_text("def double(v):\n    return v * 3\n")
    result = CliRunner().invoke(
        app, ["--store", str(tmp_path / "store"), "show", run_id, "--source", "--step", "double"]
    )
    assert result.exit_code == 0, result.output
    assert "# step double · module helper · sha256:" in result.output
    assert HELPER in result.output and "v * 3" not in result.output
    assert "module rules" not in result.output


def test_lineage_names_every_module_by_digest(tmp_path) -> None:
    from typer.testing import CliRunner

    from replay.cli.app import app

    run_id = _record(_folder(tmp_path / "bank"), tmp_path / "store")
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "store"), "lineage", run_id])
    assert result.exit_code == 0, result.output
    assert "module helper" in result.output and "module rules" in result.output


def test_an_installed_pipeline_package_travels_by_value_and_a_library_by_name(
    tmp_path, monkeypatch
) -> None:
    from replay.capture import code as codecapture

    site = tmp_path / "site-packages"
    (site / "bankpkg").mkdir(parents=True)
    (site / "bankpkg" / "__init__.py").write_text("")
    (site / "bankpkg" / "steps.py").write_text(
        "import libpkg\n\ndef score(table):\n    return libpkg.tag(table)\n"
    )
    (site / "libpkg").mkdir()
    (site / "libpkg" / "__init__.py").write_text(
        "__version__ = '1.2'\n\ndef tag(table):\n    return table\n"
    )
    monkeypatch.syspath_prepend(str(site))
    roots = (*codecapture._installed_roots(), site.resolve())
    monkeypatch.setattr(codecapture, "_installed_roots", lambda: roots)
    codecapture._is_users_file.cache_clear()
    try:
        import bankpkg.steps  # type: ignore[import-not-found]

        code = capture_code(bankpkg.steps.score, "step 'score'")
    finally:
        codecapture._is_users_file.cache_clear()
        for name in ("bankpkg", "bankpkg.steps", "libpkg"):
            sys.modules.pop(name, None)
    assert set(code.modules) == {"bankpkg.steps"}
    assert code.installed == {"libpkg": "libpkg==1.2"}
