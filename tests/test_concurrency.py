"""Several processes recording into one store at once lose nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import replay
from replay import queries

WRITER = '''
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
'''


def _writers(store: Path, processes: int, runs: int) -> list[subprocess.Popen[bytes]]:
    code = WRITER.format(tests=str(Path(__file__).parent), store=str(store), runs=runs)
    return [subprocess.Popen([sys.executable, "-c", code, f"w{p}"]) for p in range(processes)]


def test_two_processes_recording_500_runs_each_commit_all_1000(tmp_path: Path) -> None:
    store = replay.Store.open(tmp_path / "store")
    procs = _writers(store.root, 2, 500)
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert store.ledger.verify() == 1000
    counted = queries.sql(store, "select count(*) as n, count(distinct run_id) as ids, "
                                 "count(distinct key) as keys from runs join records "
                                 "using (run_id)").to_pylist()
    assert counted == [{"n": 1000, "ids": 1000, "keys": 1000}]


def test_readers_querying_while_writers_record_see_only_whole_runs(tmp_path: Path) -> None:
    store = replay.Store.open(tmp_path / "store")
    procs = _writers(store.root, 2, 300)
    seen = []
    while any(p.poll() is None for p in procs):
        listed = queries.sql(store, "select count(*) as n, count(k.key) as keyed from runs "
                                    "left join records k using (run_id)").to_pylist()[0]
        assert listed["n"] == listed["keyed"]  # never a run without its rows
        seen.append(listed["n"])
    assert [p.wait() for p in procs] == [0, 0]
    assert seen == sorted(seen)
    assert len(queries.runs(store, limit=10_000)) == 600
