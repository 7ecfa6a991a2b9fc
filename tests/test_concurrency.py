"""Several processes recording into one store at once lose nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import replay
from replay.catalog import queries

WRITER = """
import sys
import pyarrow as pa
import replay
sys.path.insert(0, {tests!r})
from conftest import scale
pipe = replay.Pipeline("concurrent", [replay.Step("scale", scale, params={{"k": 3.0}})])
store = replay.Store.open({store!r})
for i in range({runs}):
    replay.record(pipe, pa.table({{"id": [f"{{sys.argv[1]}}-{{i}}"], "x": [float(i)]}}),
                  store=store, record_key="id")
"""


def _writers(store: Path, processes: int, runs: int) -> list[subprocess.Popen[bytes]]:
    code = WRITER.format(tests=str(Path(__file__).parent), store=str(store), runs=runs)
    return [subprocess.Popen([sys.executable, "-c", code, f"w{p}"]) for p in range(processes)]


def test_two_processes_recording_500_runs_each_commit_all_1000(tmp_path: Path) -> None:
    store = replay.Store.open(tmp_path / "store")
    procs = _writers(store.root, 2, 500)
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert store.ledger.verify() == 1000
    counted = queries.sql(
        store,
        "select count(*) as n, count(distinct run_id) as ids, "
        "count(distinct key) as keys from runs join records "
        "using (run_id)",
    ).to_pylist()
    assert counted == [{"n": 1000, "ids": 1000, "keys": 1000}]


def test_readers_querying_while_writers_record_see_only_whole_runs(tmp_path: Path) -> None:
    store = replay.Store.open(tmp_path / "store")
    procs = _writers(store.root, 2, 300)
    seen = []
    while any(p.poll() is None for p in procs):
        listed = queries.sql(
            store,
            "select count(*) as n, count(k.key) as keyed from runs "
            "left join records k using (run_id)",
        ).to_pylist()[0]
        assert listed["n"] == listed["keyed"]  # never a run without its rows
        seen.append(listed["n"])
    assert [p.wait() for p in procs] == [0, 0]
    assert seen == sorted(seen)
    assert len(queries.runs(store, limit=10_000)) == 600


def test_eight_writers_and_busy_readers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    store = replay.Store.open(tmp_path / "store")
    procs = _writers(store.root, 8, 100)
    reads = 0
    while any(p.poll() is None for p in procs):
        if queries.runs(store, limit=5):  # the row views exist once a run does
            queries.find(store, "w3-7")
            queries.sql(store, "select count(*) from concurrent.scale")
        reads += 1
    assert [p.wait() for p in procs] == [0] * 8
    assert reads > 0
    assert store.ledger.verify() == 800
    ids = queries.sql(
        store,
        "select count(*) as n, count(distinct run_id) as d, "
        "count(distinct key) as k from runs join records "
        "using (run_id)",
    ).to_pylist()
    assert ids == [{"n": 800, "d": 800, "k": 800}]


def test_two_reindex_processes_at_once_both_succeed(tmp_path: Path) -> None:
    store = replay.Store.open(tmp_path / "store")
    assert [p.wait(timeout=300) for p in _writers(store.root, 1, 200)] == [0]
    cmd = [sys.executable, "-m", "replay", "--store", str(store.root), "reindex", "--json"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all('"runs": 200' in out for out, _ in outs)
