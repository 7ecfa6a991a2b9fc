"""How fast the catalog ingests new runs, and what a `replay reindex` costs (issue 16).

    python benchmarks/bench_ingest.py [--runs 20000] [--rows 1] [--rounds 3] [--new 10000]

Records --runs runs of --rows rows each (durable=False: the committer groups them into
blocks, as online runs are), then times the first catalog connection after they were all
recorded (what the first query after them waits for: in a fresh process, imports not counted,
median of --rounds, each from an empty catalog), and `replay reindex` in a child process: wall
time (imports counted) and peak memory (resident set). Then records --new runs more, as two
processes do, and times their ingest into the catalog of the others (the first query after
them; the ingest's imports counted, as a CLI process pays them): wall and CPU seconds, median
of --rounds, each from a copy of that catalog. Goals: ingest >= 50,000 runs/s on 2 cores;
reindex of 1M runs under 300 MB.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

import replay

T0 = datetime(2026, 3, 1, tzinfo=UTC)
GOAL_RUNS_PER_S = 50_000
GOAL_REINDEX_MB = 300


def decide(table: pa.Table) -> pa.Table:
    return table.append_column("decision", pa.array(["approve"] * table.num_rows))


def build(root: Path, runs: int, rows: int, prefix: str = "R") -> float:
    store = replay.Store.open(root, durable=False)
    pipe = replay.Pipeline("bulk", [replay.Step("decide", decide)])
    t0 = time.perf_counter()
    for i in range(runs):
        ids = [f"{prefix}{i}-{j}" for j in range(rows)]
        table = pa.table({"id": ids, "x": [float(j) for j in range(rows)]})
        replay.record(pipe, table, store=store, record_key="id", at=T0 + timedelta(seconds=i))
    store.flush()
    return time.perf_counter() - t0


# What the first query after the new runs waits for, timed in a fresh process (as a CLI
# call is) from a catalog of none of them; the imports are not counted.
INGEST = """
import sys, time
from pathlib import Path
import replay
import replay.catalog.ingest  # imported on first use: not counted either
from replay.catalog.index import Catalog
root = Path(sys.argv[1])
for p in root.glob("catalog.*"):
    p.unlink()
store = replay.Store.open(root)
t0 = time.perf_counter()
with Catalog(store).connect() as con:
    con.execute("select count(*) from runs").fetchall()
print(time.perf_counter() - t0)
"""


def ingest(root: Path) -> float:
    """Seconds until a catalog of no runs has indexed every run of the store."""
    run = [sys.executable, "-c", INGEST, str(root)]
    return float(subprocess.run(run, check=True, capture_output=True, text=True).stdout)


# The first query after new runs, in a fresh process from a catalog of the runs before them;
# the ingest's own imports counted (Catalog imports them on first use), replay's not.
INCREMENT = """
import sys, time
from pathlib import Path
import replay
from replay.catalog.index import Catalog
store = replay.Store.open(Path(sys.argv[1]))
t0, c0 = time.perf_counter(), time.process_time()
with Catalog(store).connect() as con:
    con.execute("select count(*) from runs").fetchall()
print(time.perf_counter() - t0, time.process_time() - c0)
"""


# Runs recorded by another process (two of them share the new runs, as bench_million's do).
ADD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench_ingest import build
build(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), prefix=sys.argv[5])
"""


def add(root: Path, runs: int, rows: int) -> None:
    """Record ``runs`` runs more in two processes at once."""
    here = str(Path(__file__).parent)
    shares = [(runs // 2, "N"), (runs - runs // 2, "M")]
    procs = [
        subprocess.Popen([sys.executable, "-c", ADD, here, str(root), str(n), str(rows), prefix])
        for n, prefix in shares
    ]
    if any(p.wait() for p in procs):
        sys.exit("a recording process failed")


def increment(root: Path, before: Path) -> tuple[float, float]:
    """Wall and CPU seconds until a catalog of the runs before the new ones (a copy of
    ``before``) has indexed them."""
    shutil.copy(before, root / "catalog.duckdb")
    run = [sys.executable, "-c", INCREMENT, str(root)]
    wall, cpu = subprocess.run(run, check=True, capture_output=True, text=True).stdout.split()
    return float(wall), float(cpu)


def reindex(root: Path) -> tuple[float, float]:
    """Wall seconds and peak MB of `replay reindex` in a child process."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "replay", "--store", str(root), "reindex"],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=1, help="rows per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new", type=int, default=10_000, help="runs ingested incrementally")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        built = build(root, args.runs, args.rows)
        print(f"built {args.runs} runs of {args.rows} rows in {built:.1f} s")
        took = statistics.median(ingest(root) for _ in range(args.rounds))
        rate = args.runs / took
        print(
            f"ingest: {rate:,.0f} runs/s ({took:.2f} s, median of {args.rounds})"
            f"   goal >= {GOAL_RUNS_PER_S:,} runs/s"
        )
        seconds, peak = reindex(root)
        print(
            f"reindex: {seconds:.1f} s, peak {peak:.0f} MB   "
            f"goal < {GOAL_REINDEX_MB} MB at 1,000,000 runs"
        )
        before = Path(tmp) / "before.duckdb"
        shutil.copy(root / "catalog.duckdb", before)
        add(root, args.new, args.rows)
        times = [increment(root, before) for _ in range(args.rounds)]
        wall, cpu = (statistics.median(t[i] for t in times) for i in (0, 1))
        print(
            f"ingest of {args.new:,} new runs into {args.runs:,}: {args.new / wall:,.0f} runs/s "
            f"({wall:.3f} s wall, {cpu:.3f} s CPU: {args.new / cpu:,.0f} runs/s a core; "
            f"median of {args.rounds})   goal >= {GOAL_RUNS_PER_S:,} runs/s"
        )


if __name__ == "__main__":
    main()
