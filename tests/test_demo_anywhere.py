"""`replay demo` works in any folder, as often as wanted, and never writes into the package.

One real demo per folder, run as a user would (`python -m replay`, stdout not a terminal):
folder A tells the story once in text and once more in JSON; folder B tells it with a store
of its own. The demos import `replay` and `pipelines` from a copy, standing for the installed
package, so that what the demo writes there is told apart from edits to the working tree.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pipelines
import replay

SOURCES = (Path(replay.__file__).parent, Path(pipelines.__file__).parent)


def _env(home: Path) -> dict[str, str]:
    """A user of their own: own key, trust store and caches; no ambient store or engine;
    the package installed in `home/site`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REPLAY_") and k not in ("CREDIT_WORKSPACE", "COLUMNS")
    }
    return {
        **env,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONPATH": str(home / "site"),
        "DOCKER_HOST": "unix:///nonexistent/pipeline-replay-tests.sock",
    }


def _replay(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replay", *args],
        cwd=cwd,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _package_files(site: Path) -> dict[str, int]:
    # Bytecode caches are Python's own (written on a module's first import).
    return {
        str(p): p.stat().st_mtime_ns
        for p in sorted(site.rglob("*"))
        if "__pycache__" not in p.parts
    }


def _story(stdout: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(stdout)
    return {
        "application": summary["application"],
        "replay": summary["replay"],
        "counterfactual": summary["counterfactual"]["decision"],
        "verified": summary["evidence"]["verified"],
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose `site` holds the package (old demo workspaces in the tree left out)."""
    home = tmp_path_factory.mktemp("home")
    for source in SOURCES:
        shutil.copytree(
            source,
            home / "site" / source.name,
            ignore=shutil.ignore_patterns("__pycache__", "workspace", "workspace-remote"),
        )
    found = subprocess.run(
        [sys.executable, "-c", "import replay; print(replay.__file__)"],
        cwd=home,
        env=_env(home),
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == str(home / "site" / "replay" / "__init__.py")
    return home


@pytest.fixture(scope="module")
def folder_a(home: Path) -> Path:
    (home / "a").mkdir()
    return home / "a"


@pytest.fixture(scope="module")
def first(folder_a: Path, home: Path) -> tuple[subprocess.CompletedProcess[str], dict, dict]:
    """The demo in text on a new store `store` in folder A, and the package before/after."""
    before = _package_files(home / "site")
    done = _replay(folder_a, home, "--store", "store", "demo")
    return done, before, _package_files(home / "site")


@pytest.fixture(scope="module")
def again(first: Any, folder_a: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return _replay(folder_a, home, "--store", "store", "demo", "--json")


@pytest.fixture(scope="module")
def elsewhere(again: Any, home: Path) -> subprocess.CompletedProcess[str]:
    """After folder A's story: another folder, its own new store (the default one)."""
    (home / "b").mkdir()
    return _replay(home / "b", home, "demo", "--json")


def _printed_commands(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = lines.index("Do it yourself:") + 1
    return [line.strip() for line in lines[start:] if line.startswith("  ")]


def test_the_demo_builds_its_workspace_beside_its_store(first, folder_a) -> None:
    done, _, _ = first
    assert done.returncode == 0, done.stdout + done.stderr
    workspace = folder_a / "store-demo" / "workspace"
    assert f"workspace {workspace.resolve()}, store store" in done.stdout
    assert (workspace / ".git").is_dir() and (workspace / ".dvc").is_dir()
    assert (folder_a / "store-demo" / "workspace-remote").is_dir()


def test_the_demo_writes_nothing_inside_the_installed_package(first) -> None:
    done, before, after = first
    assert done.returncode == 0, done.stdout + done.stderr
    assert after == before


def test_the_demo_draws_no_progress_when_stdout_is_not_a_terminal(first, again) -> None:
    done, _, _ = first
    assert done.stderr == "" and again.stderr == ""


def test_running_the_demo_again_on_its_store_reuses_its_runs(first, again) -> None:
    assert again.returncode == 0, again.stdout + again.stderr
    summary = json.loads(again.stdout)
    assert f"run {summary['decided_by']} (clock" in first[0].stdout
    assert f"(PD step of run {summary['today_run']})" in first[0].stdout


def test_a_second_demo_in_another_folder_tells_the_same_story(again, elsewhere, home) -> None:
    assert elsewhere.returncode == 0, elsewhere.stdout + elsewhere.stderr
    assert _story(elsewhere.stdout) == _story(again.stdout)
    assert _story(again.stdout)["replay"] == "exact"
    assert json.loads(elsewhere.stdout)["workspace"] == str(
        (home / "b" / "snapshots-demo" / "workspace").resolve()
    )


def test_every_printed_command_runs_as_printed(first, folder_a, home) -> None:
    commands = _printed_commands(first[0].stdout)
    assert len(commands) == 12
    assert any("at 2026-03-14T12:00:00+00:00 --pipeline credit-decision" in c for c in commands)
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "replay"
        # Each exits 0: the counterfactual (`--swap`) and `diff` report changes, not failures.
        done = _replay(folder_a, home, *argv[1:])
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"


def test_printed_commands_name_the_store_only_when_it_is_not_the_default(first, elsewhere) -> None:
    assert _printed_commands(first[0].stdout)[0].startswith("replay --store store find ")
    assert json.loads(elsewhere.stdout)["commands"][0].startswith("replay find ")


def test_a_new_store_given_a_workdir_past_the_incident_starts_the_story_afresh(
    elsewhere, home
) -> None:
    done = _replay(
        home / "b", home, "--store", "other", "demo", "--json", "--workdir", "snapshots-demo"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _story(done.stdout) == _story(elsewhere.stdout)


def test_a_store_whose_workspace_was_deleted_tells_its_story_again(elsewhere, home) -> None:
    shutil.rmtree(home / "b" / "snapshots-demo")
    done = _replay(home / "b", home, "demo", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _story(done.stdout) == _story(elsewhere.stdout)
    log = subprocess.run(
        ["git", "log", "--format=%s"],
        cwd=home / "b" / "snapshots-demo" / "workspace",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.splitlines()[0].startswith("bureau refresh v2")  # after the incident, as stored


def test_workdir_and_workspace_together_are_refused(home) -> None:
    done = _replay(home, home, "--store", "refused", "demo", "--workdir", "w", "--workspace", "v")
    assert done.returncode == 2
    assert "give --workdir or --workspace, not both" in done.stderr
