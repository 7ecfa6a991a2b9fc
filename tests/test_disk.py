"""A full disk and a read-only store, on real filesystems mounted by the test (root only)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import rows
from typer.testing import CliRunner

import replay
from replay.catalog.check import verify_store
from replay.cli.app import app
from replay.errors import ReadOnlyStoreError, StoreError


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "fs"
    if not _mount_tmpfs(mount, "4m"):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(fs: Path, leave: int) -> Path:
    filler = fs / "filler"
    free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def big_rows(n: int) -> pa.Table:
    return pa.table({"id": [f"B{i}" for i in range(n)], "x": [float(i) for i in range(n)]})


def test_a_full_disk_fails_clearly_and_keeps_every_committed_run(small_fs, toy) -> None:
    store = replay.Store.open(small_fs / "store")
    before = [replay.record(toy, rows(2, i), store=store, record_key="id").run_id for i in range(5)]
    filler = _fill(small_fs, leave=8 * 1024)
    with pytest.raises(StoreError, match="No space left on device"):
        replay.record(toy, big_rows(20_000), store=store, record_key="id")
    assert [e["run_id"] for _, e in store.entries()] == before  # nothing partial is visible
    verify_store(store)
    filler.unlink()
    after = replay.record(toy, rows(1, 99), store=store, record_key="id")
    assert after.seq == 6
    assert replay.replay(store, before[-1]).verdict == "exact"


def test_the_cli_reports_a_full_disk_in_one_line(small_fs, tmp_path, toy) -> None:
    import pyarrow.parquet as pq

    store = small_fs / "store"
    replay.record(toy, rows(2), store=replay.Store.open(store), record_key="id")
    tests = str(Path(__file__).parent)
    (tmp_path / "toy.py").write_text(
        f"import sys\nsys.path.insert(0, {tests!r})\nimport replay\nfrom conftest import scale\n"
        "pipeline = replay.Pipeline('toy', [replay.Step('scale', scale, params={'k': 2.0})])\n"
    )
    pq.write_table(big_rows(20_000), tmp_path / "big.parquet")
    _fill(small_fs, leave=8 * 1024)
    result = CliRunner().invoke(
        app,
        [
            "--store",
            str(store),
            "record",
            "--create",
            f"{tmp_path}/toy.py:pipeline",
            "--input",
            str(tmp_path / "big.parquet"),
        ],
    )
    assert result.exit_code == 8, result.output
    assert "No space left on device" in result.stderr and "Traceback" not in result.output


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A writable folder and a read-only bind mount of it."""
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "--bind", str(rw), str(ro)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("needs root and permission to bind-mount")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        yield rw, ro
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_a_read_only_store_is_queried_and_replayed_but_not_written(read_only_view, toy) -> None:
    rw, ro_root = read_only_view
    store = replay.Store.open(rw / "store")
    run_id = replay.record(toy, rows(3), store=store, record_key="id").run_id
    ro = replay.Store.open(ro_root / "store")
    assert ro.readonly
    assert replay.replay(ro, run_id).verdict == "exact"
    listed = CliRunner().invoke(app, ["--store", str(ro.root), "runs", "--json"])
    assert listed.exit_code == 0 and run_id in listed.stdout
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        replay.record(toy, rows(1), store=ro)
