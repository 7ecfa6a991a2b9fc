"""Data versions of DVC-tracked inputs, with real git, DVC and a local remote."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import rows

import replay
from replay.capture import dvc as dvcdata
from replay.errors import DataVersionError

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def sh(cwd: Path, *cmd: str) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def dvc(cwd: Path, *args: str) -> None:
    sh(cwd, sys.executable, "-m", "dvc", *args)


def commit_table(repo: Path, table: pa.Table, message: str) -> None:
    pq.write_table(table, repo / "bureau.parquet")
    dvc(repo, "add", "bureau.parquet")
    sh(repo, "git", "add", "bureau.parquet.dvc", ".gitignore")
    sh(repo, "git", "commit", "-qm", message)
    dvc(repo, "push", "-q")


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.analytics", "false")
    dvc(repo, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    commit_table(repo, pa.table({"id": ["R0", "R1"], "score": [700, 610]}), "bureau v1")
    return repo


def lookup(table: pa.Table, *, data: dict) -> pa.Table:
    joined = table.join(data["bureau"], "id", join_type="left outer")
    return joined.sort_by("id")


def _data_version(store: replay.Store, result: replay.RecordResult) -> dict:
    spec = json.loads(store.get_object(result.manifest.version))
    return spec["steps"][0]["data"]["bureau"]


def test_a_run_records_the_dvc_md5_git_rev_and_remote(dvc_repo: Path, store) -> None:
    pipe = replay.Pipeline(
        "dvc", [replay.Step("lookup", lookup, data={"bureau": dvc_repo / "bureau.parquet"})]
    )
    result = replay.record(pipe, rows(2), store=store)
    version = _data_version(store, result)["dvc"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=dvc_repo, capture_output=True, text=True
    ).stdout.strip()
    assert version["rev"] == head
    assert version["md5"] == hashlib.md5((dvc_repo / "bureau.parquet").read_bytes()).hexdigest()
    assert version["remote"] == str(dvc_repo.parent / "remote")
    assert version["committed"] is True
    assert "object" not in _data_version(store, result)  # the remote holds the bytes


def test_after_a_refresh_the_old_run_still_reads_its_own_bytes(dvc_repo: Path, store) -> None:
    pipe = replay.Pipeline(
        "dvc", [replay.Step("lookup", lookup, data={"bureau": dvc_repo / "bureau.parquet"})]
    )
    old = replay.record(pipe, rows(2), store=store)
    old_bytes = (dvc_repo / "bureau.parquet").read_bytes()
    commit_table(dvc_repo, pa.table({"id": ["R0", "R1"], "score": [520, 480]}), "bureau v2")
    new = replay.record(pipe, rows(2), store=store)
    v_old, v_new = _data_version(store, old)["dvc"], _data_version(store, new)["dvc"]
    assert v_old["rev"] != v_new["rev"] and v_old["md5"] != v_new["md5"]
    assert new.output["score"].to_pylist() == [520, 480]
    shutil.rmtree(dvc_repo / ".dvc" / "cache")  # only the remote has the old bytes now
    assert dvcdata.fetch(v_old) == old_bytes


def test_an_uncommitted_change_keeps_the_bytes_in_the_store(dvc_repo: Path, store) -> None:
    pq.write_table(pa.table({"id": ["R0"], "score": [1]}), dvc_repo / "bureau.parquet")
    pipe = replay.Pipeline(
        "dvc", [replay.Step("lookup", lookup, data={"bureau": dvc_repo / "bureau.parquet"})]
    )
    record = _data_version(store, replay.record(pipe, rows(1), store=store))
    assert record["dvc"]["committed"] is False
    assert store.get_object(record["object"]) == (dvc_repo / "bureau.parquet").read_bytes()


def test_fetching_from_a_missing_remote_names_the_remote(dvc_repo: Path, store) -> None:
    pipe = replay.Pipeline(
        "dvc", [replay.Step("lookup", lookup, data={"bureau": dvc_repo / "bureau.parquet"})]
    )
    version = _data_version(store, replay.record(pipe, rows(1), store=store))["dvc"]
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    shutil.rmtree(dvc_repo.parent / "remote")
    (dvc_repo / "bureau.parquet").unlink()
    with pytest.raises(DataVersionError, match=f"from DVC remote '{dvc_repo.parent}/remote'"):
        dvcdata.fetch(version)
