"""The store on S3 with many writers (issue 17), against a local S3 endpoint started here.

    python benchmarks/bench_scale.py [--runs 300] [--ingest 10000] [--killed 30]
        [--retired 100] [--rows 1000000]

Starts moto in server mode (one Python process, the endpoint the tests use) and prints, in
one run:

- runs/s from 1, 2, 4 and 8 writer processes recording 1-row runs of a bank chain into one
  S3 store (asynchronously: each process's runs share group-commit objects), beside the
  endpoint's own ceiling measured right after with bare PUTs of the same number and size
  from as many processes;
- seal lag, p50 and p99: from a durable ``record`` returning (its object PUT) to the end of
  the seal that chains it into the ledger, with a sealer sealing every 0.5 s beside 2 writers;
- catalog ingest runs/s of ``--ingest`` runs, on a folder store and on the S3 store (a new
  reader: its mirror taken from the epochs, then the first query);
- ``replay find`` as a whole process on a store with ``--killed`` writers killed without
  retiring, before and after this reader's cache has seen them quiet (each would cost a new
  process's seal a LIST);
- the epoch header as ``--retired`` writer processes exit (a rolling restart): with their
  heads, at the seal that deletes their names, and at the one after, which drops them;
- ``find KEY`` over ``--rows`` record rows on S3 (runs of 10,000 rows) from a new reader,
  its first and warm, with the keys compacted into Parquet on the store (and the requests and
  bytes each find reads there) and with every key in the reader's catalog; a one-hour window
  of runs, and of record rows read straight from the parts;
- bulk replay (``replay batch``) on 1 and 2 Dask workers against the same runs replayed in
  one process: benchmarks/bench_batch.py, run from here with ``--batch`` runs (0: skip).

The machine's 2 cores run the endpoint, the writers and the sealer together: read the
curve's shape, and the ratio to bare PUTs measured in the same run. Nothing asserts a time.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import atexit
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from s3_endpoint import moto_server, new_bucket  # the endpoint the tests start

import replay
from replay.store import seals
from replay.store.s3 import S3FS

T0 = datetime(2026, 3, 14, tzinfo=UTC)


def _features(table: Any) -> Any:
    import pyarrow as pa

    vectors = [[float(x), float(x) / 2, 0.0] for x in table["x"].to_pylist()]
    return table.append_column("embedding", pa.array(vectors, pa.list_(pa.float32())))


def _decide(table: Any) -> Any:
    import pyarrow as pa

    score = [v[0] + v[1] for v in table["embedding"].to_pylist()]
    return table.append_column(
        "decision", pa.array(["approve" if s < 9 else "refer" for s in score])
    )


def _chain() -> replay.Pipeline:
    return replay.Pipeline(
        "credit", [replay.Step("features", _features), replay.Step("decide", _decide)]
    )


def _applicant(i: int) -> Any:
    import pyarrow as pa

    return pa.table({"id": [f"A{i}"], "x": [float(i % 10)]})


def _writer(url: str, first: int, count: int, durable: bool, go: Any, out: Any) -> None:
    """One writing process: opens the store, waits for ``go``, records ``count`` runs; puts
    (start, end, [(run id, time acknowledged)]) on ``out``."""
    store = replay.Store.open(url, durable=durable)
    chain = _chain()
    replay.record(chain, _applicant(first), store=store, record_key="id", at=T0)  # warm
    store.flush()
    go.wait()
    start, acked = time.time(), []
    for i in range(first + 1, first + 1 + count):
        at = T0 + timedelta(seconds=i)
        result = replay.record(chain, _applicant(i), store=store, record_key="id", at=at)
        if durable:
            acked.append((result.run_id, time.time()))
    store.flush()
    out.put((start, time.time(), acked))


def _put(url: str, size: int, count: int, go: Any, out: Any) -> None:
    """A bare process: ``count`` PUTs of ``size`` bytes with If-None-Match, as writers do."""
    from replay.store.s3 import S3FS

    fs = S3FS.of(url)
    body = os.urandom(size)
    fs.put_if_absent(f"bare/{os.getpid()}-warm", body)
    go.wait()
    start = time.time()
    for i in range(count):
        fs.put_if_absent(f"bare/{os.getpid()}-{i}", body)
    out.put((start, time.time(), []))


def _round(target: Any, args_of: list[tuple[Any, ...]]) -> tuple[float, list[Any]]:
    """Run one process per argument tuple together; wall seconds from the go signal to the
    last one done, and what each reported."""
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, go, out)) for a in args_of]
    for p in procs:
        p.start()
    time.sleep(0.5)
    go.set()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    return max(r[1] for r in results) - min(r[0] for r in results), results


def writers_curve(endpoint: str, runs: int) -> None:
    print(f"writers on one S3 store, {runs} runs each (async: runs share group objects)")
    print(
        f"{'writers':>8} {'runs/s':>9} {'objects':>8} {'B/object':>9} {'bare PUT/s':>11}"
        f" {'ceiling runs/s':>15}"
    )
    for n in (1, 2, 4, 8):
        url = f"s3://{new_bucket(endpoint)}/credit"
        replay.Store.open(url)
        wall, _ = _round(_writer, [(url, 100_000 * w, runs, False) for w in range(n)])
        store = replay.Store.open(url, readonly=True)
        assert store.remote is not None
        names = [x for x in store.remote.names("segments")]
        sizes = [store.remote.size(f"segments/{x}") for x in names[:50]]
        size = int(statistics.mean(sizes))
        per_object = (n * (runs + 1)) / len(names)
        bare, _ = _round(
            _put,
            [
                (
                    url,
                    size,
                    len(names) // n,
                )
                for _ in range(n)
            ],
        )
        puts = (len(names) // n) * n / bare
        print(
            f"{n:>8} {n * runs / wall:>9.0f} {len(names):>8} {size:>9} {puts:>11.0f}"
            f" {puts * per_object:>15.0f}"
        )


def seal_lag(endpoint: str, runs: int) -> None:
    url = f"s3://{new_bucket(endpoint)}/credit"
    store = replay.Store.open(url)
    assert store.remote is not None
    sealer = seals.Sealer(store.remote)
    sealed_at: dict[str, float] = {}
    stop = threading.Event()

    def seal_loop() -> None:
        while not stop.is_set():
            epoch = sealer.seal()
            if epoch is not None:
                now = time.time()
                for line in epoch.lines.splitlines():
                    sealed_at[line.split(b'"run_id":"', 1)[1][:36].decode()] = now
            stop.wait(0.5)

    thread = threading.Thread(target=seal_loop)
    thread.start()
    _, results = _round(_writer, [(url, 100_000 * w, runs, True) for w in range(2)])
    time.sleep(1.5)
    stop.set()
    thread.join()
    lags = sorted(sealed_at[run] - t for r in results for run, t in r[2] if run in sealed_at)
    missing = sum(len(r[2]) for r in results) - len(lags)
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(
        f"seal lag, 2 durable writers, a sealer every 0.5 s: p50 {statistics.median(lags):.2f} s,"
        f" p99 {p99:.2f} s over {len(lags)} runs ({missing} not sealed when stopped)"
    )


def _find_took(url: str, key: str) -> float:
    """Seconds of a ``find`` by a reader that opens the store afresh (on S3: its mirror
    takes the epochs sealed since it last looked)."""
    t = time.perf_counter()
    assert replay.find(replay.Store.open(url), key), "the run is indexed"
    return time.perf_counter() - t


def ingest(endpoint: str, runs: int, tmp: Path) -> None:
    """The wait the issue names: the first query after ``runs`` new runs, less a query with
    nothing new, by a reader whose catalog holds the runs before them (a new reader's first
    query, which also creates its catalog, is printed beside it)."""
    per = runs // 2
    for backend in ("folder", "S3"):
        url = str(tmp / "local") if backend == "folder" else f"s3://{new_bucket(endpoint)}/credit"
        os.environ["XDG_CACHE_HOME"] = str(tmp / f"reader-{backend}")  # the analyst's mirror
        fs = None if backend == "folder" else S3FS.of(url)
        replay.Store.open(url)
        rates, firsts, note = [], [], ""
        rounds = 4  # a new reader's first query, then three with a catalog
        for r in range(rounds):
            _round(_writer, [(url, 100_000 * (2 * r + w), per - 1, False) for w in range(2)])
            if fs is not None:
                t = time.perf_counter()
                assert seals.Sealer(fs).seal() is not None
                note = f"; sealing {runs:,} runs takes {time.perf_counter() - t:.2f} s"
            key = f"A{100_000 * 2 * r + 5}"
            first = _find_took(url, key)
            rest = statistics.median(_find_took(url, key) for _ in range(3))
            (firsts if r == 0 else rates).append(first if r == 0 else runs / (first - rest))
        print(
            f"catalog ingest, {backend} store: {statistics.median(rates):,.0f} runs/s "
            f"(the first query after {runs:,} new runs less one with none; median of "
            f"{len(rates)}: {', '.join(f'{x:,.0f}' for x in rates)}); a new reader's first "
            f"query over {runs:,} runs {firsts[0]:.2f} s{note}"
        )
        if fs is not None:
            (logs, log_bytes), (epochs, epoch_bytes) = fs.usage("segments"), fs.usage("seal")
            print(
                f"S3 bytes per run: {log_bytes / (rounds * runs):,.0f} in {logs} log objects, "
                f"{epoch_bytes / (rounds * runs):,.0f} in {epochs} epochs"
            )


def _killed(url: str, i: int) -> None:
    """A writer that records one run and dies without saying it is done, as a SIGKILL or
    an unhandled SIGTERM leaves one."""
    store = replay.Store.open(url, durable=True)
    replay.record(_chain(), _applicant(i), store=store, record_key="id", at=T0)
    os._exit(0)


def _exits(url: str, i: int) -> None:
    """A writer that records one run and exits: its exit hooks run (it retires) as a
    process's do, in a child forked from this one, which does not import replay again."""
    store = replay.Store.open(url, durable=True)
    replay.record(_chain(), _applicant(i), store=store, record_key="id", at=T0)
    atexit._run_exitfuncs()


def retired(endpoint: str, writers: int) -> None:
    """Epoch header bytes and seal times as ``writers`` writer processes exit."""
    url = f"s3://{new_bucket(endpoint)}/credit"
    replay.Store.open(url)
    fork = multiprocessing.get_context("fork")
    for start in range(0, writers, 8):
        procs = [fork.Process(target=_exits, args=(url, i)) for i in range(start, start + 8)]
        for p in procs[: writers - start]:
            p.start()
        for p in procs[: writers - start]:
            p.join()
    fs, sealer, live = S3FS.of(url), seals.Sealer(S3FS.of(url)), replay.Store.open(url)
    steps = []
    for i in range(3):
        if i:  # a running writer's run: an epoch to build
            replay.record(_chain(), _applicant(-i), store=live, at=T0)
        t = time.perf_counter()
        epoch = sealer.seal()
        took = time.perf_counter() - t
        assert epoch is not None
        header = len(fs.read(seals.name(epoch.number)).partition(b"\n")[0])
        steps.append(f"{header:,} B ({len(epoch.heads)} heads, seal {took:.2f} s)")
    print(
        f"epoch header, {writers} writers exited: {steps[0]} when retired, {steps[1]} at "
        f"the seal that deletes their names, {steps[2]} at the next"
    )


def dormant(endpoint: str, writers: int, tmp: Path) -> None:
    """``replay find`` as a whole process (median of 5) on a store with ``writers`` writers
    killed without retiring, before and after this reader's cache saw them quiet."""
    url = f"s3://{new_bucket(endpoint)}/credit"
    os.environ["XDG_CACHE_HOME"] = str(tmp / "reader-dormant")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_killed, args=(url, i)) for i in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    store = replay.Store.open(url)
    store.seal()

    def find() -> float:
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "replay", "--store", url, "find", "A3"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t

    before = statistics.median(find() for _ in range(5))
    for _ in range(seals.QUIET_SEALS):
        store.seal()
    after = statistics.median(find() for _ in range(5))
    print(
        f"`replay find` as a whole process, {writers} writers killed without retiring: "
        f"{before:.2f} s, then {after:.2f} s once this reader's cache saw them quiet"
    )


def _median_ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.1f} ms (max {max(times) * 1000:.1f})"


def search(endpoint: str, rows: int, tmp: Path) -> None:
    """``find`` and a one-hour window over ``rows`` record rows on S3 (runs of 10,000 rows,
    6 minutes apart), their keys compacted into Parquet on the store, from a new reader."""
    import pyarrow as pa

    from replay.catalog import compact
    from replay.catalog.index import Catalog
    from replay.catalog.schema import compacted_below

    per_run, url = 10_000, f"s3://{new_bucket(endpoint)}/scoring"
    runs = rows // per_run
    pipe = replay.Pipeline("scoring", [replay.Step("decide", _decide_batch)])
    store = replay.Store.open(url, durable=False)
    t = time.perf_counter()
    for r in range(runs):
        ids = [f"K{r:04d}-{i:05d}" for i in range(per_run)]
        batch = pa.table({"id": ids, "x": [float(i % 10) for i in range(per_run)]})
        replay.record(pipe, batch, store=store, record_key="id", at=T0 + timedelta(minutes=6 * r))
    store.flush()
    seals.Sealer(S3FS.of(url)).seal()
    built = time.perf_counter() - t
    t = time.perf_counter()
    done = replay.compact(store)
    print(
        f"{rows:,} record rows on S3 ({runs} runs of {per_run:,}) recorded and sealed in "
        f"{built:.1f} s; compacted in {time.perf_counter() - t:.1f} s into {done.part} "
        f"({S3FS.of(url).size(done.part or '') / 1e6:.1f} MB)"
    )
    keys = [f"K{(37 * i) % runs:04d}-{(7919 * i) % per_run:05d}" for i in range(1, 22)]
    for layout in ("compacted", "every key in the catalog"):
        os.environ["XDG_CACHE_HOME"] = str(tmp / f"search-{layout}")  # a new analyst
        compact._DATASETS.clear()
        reader = replay.Store.open(url)
        t = time.perf_counter()
        if layout != "compacted":
            with Catalog(reader).connect(rebuild=True):  # indexes every key, from the blocks
                pass
        assert replay.find(reader, keys[0]), "the key is found"
        first = time.perf_counter() - t
        times, reads = [], compact.requests()
        for key in keys[1:]:
            t = time.perf_counter()
            assert replay.find(reader, key)
            times.append(time.perf_counter() - t)
        made = compact.requests()
        per = (made[0] - reads[0]) / len(times), (made[1] - reads[1]) / len(times)
        print(
            f"find KEY, {layout}: first (new reader) {first:.2f} s; warm {_median_ms(times)}"
            + (f", {per[0]:.1f} requests and {per[1] / 1e3:,.0f} KB read a find" if per[0] else "")
        )
    since = T0 + timedelta(minutes=3 * runs)  # mid-way through the runs
    window = []
    for _ in range(10):
        t = time.perf_counter()
        listed = replay.runs(reader, since=since, until=since + timedelta(hours=1), limit=None)
        window.append(time.perf_counter() - t)
    print(f"one-hour window (`runs --since --until`, {len(listed)} runs): {_median_ms(window)}")
    os.environ["XDG_CACHE_HOME"] = str(tmp / "search-compacted")
    reader = replay.Store.open(url)
    with Catalog(reader).connect() as con:
        reads = compact.register(reader, con, compacted_below(con))
        query = "select count(*) from compacted_records where clock >= $1 and clock < $2"
        times, before = [], (reads.requests, reads.bytes)
        for _ in range(10):
            t = time.perf_counter()
            ((n,),) = con.execute(query, [since, since + timedelta(hours=1)]).fetchall()
            times.append(time.perf_counter() - t)
    print(
        f"one-hour window of record rows straight from the parts ({n:,} rows): "
        f"{_median_ms(times)}, {(reads.requests - before[0]) / 10:.0f} requests and "
        f"{(reads.bytes - before[1]) / 10e6:.1f} MB read each (rows sorted by key: every "
        "row group holds every hour)"
    )


def _decide_batch(table: Any) -> Any:
    import pyarrow as pa

    return table.append_column("decision", pa.array(["approve"] * table.num_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="runs per writer")
    parser.add_argument("--ingest", type=int, default=10_000, help="runs to ingest")
    parser.add_argument("--killed", type=int, default=30, help="writers killed, for find")
    parser.add_argument("--retired", type=int, default=100, help="writers exited, for headers")
    parser.add_argument("--rows", type=int, default=1_000_000, help="record rows to search")
    parser.add_argument("--batch", type=int, default=1000, help="runs for bench_batch.py")
    args = parser.parse_args()
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            XDG_CACHE_HOME=str(Path(tmp) / "cache"),
        )
        writers_curve(endpoint, args.runs)
        seal_lag(endpoint, args.runs)
        ingest(endpoint, args.ingest, Path(tmp))
        dormant(endpoint, args.killed, Path(tmp))
        retired(endpoint, args.retired)
        search(endpoint, args.rows, Path(tmp))
    if args.batch:
        print(f"bulk replay, {args.batch} credit runs (benchmarks/bench_batch.py):", flush=True)
        batch = Path(__file__).with_name("bench_batch.py")
        runs = ["--runs", str(args.batch), "--rounds", "1"]
        subprocess.run([sys.executable, str(batch), *runs], check=True)


if __name__ == "__main__":
    main()
