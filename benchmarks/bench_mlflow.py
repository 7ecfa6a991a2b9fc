"""The peer: the credit-decision chain recorded by replay.record and logged by MLflow with the
same content, per run; then "find the run that decided record X" on both.

    pip install -e '.[bench]' && python benchmarks/bench_mlflow.py [--quick]
        [--runs N] [--rounds N] [--find-runs 10000,100000]

Per run, each side runs the same four steps (features -> fraud -> pd -> decision) over the
same rows and keeps the same content:

- ours: ``replay.record(..., record_key="application_id")``: the input and every step's
  output as Arrow tables, the tape (clock and the income service's answers), the code and
  models (stored once by content), the data's DVC version, the environment, a ledger entry;
  the catalog indexes every record key.
- MLflow (sqlite store ``sqlite:///…/mlflow.db``, its default database backend; artifacts in
  a local folder): every step's params, the input and each step's output as Parquet
  artifacts, the tape as a JSON artifact, and one tag per record key (``record.APP-…``, the
  only way its search can find a record). The code (the steps' modules), the models (the
  pickled files the chain loads) and the bureau data are logged ONCE, in a version run, and
  each run carries tags naming them and their sha256: we store them once per version too, so
  logging them in every run would charge MLflow for what we do not do.

Durable against durable: ``record(durable=True)`` returns after its fsyncs; MLflow's
synchronous calls return after sqlite commits (MLflow leaves sqlite at its default
``synchronous=FULL``, rollback journal: every commit fsyncs the journal and the database).
MLflow's artifacts are plain file copies, never fsynced. Async against async:
``record(durable=False)`` and MLflow's ``log_*(synchronous=False)`` (its async logging of
params and tags; runs start and end synchronously, artifacts have no async form); each
timed section ends with ``store.flush()`` / ``mlflow.flush_async_logging()``, so the
figures include the deferred work. MLflow's async logging gains nothing for a short run:
ending it drains the queue and joins the logging thread, which waits up to 1 s in
``queue.get(timeout=1)``; so its async sections log an eighth as many runs, and the table
also sets MLflow's synchronous figure against our async one. Both sides are warmed up,
then alternate in rounds (ours, MLflow, bare chain, ours, MLflow, bare chain, ...);
figures are medians over the rounds. The bare chain (the steps alone, which both sides
run) gives the last column: the ratio of what each side costs beyond it (a difference of
medians, so noisy when ours is small).

Find: a store of N 1-row runs on each side. Ours is built by the fast path (a one-step
pipeline recorded with durable=False, flushed once); MLflow's holds N copies of one 1-row
credit run it logged as above (its rows in ``runs``, ``tags`` and ``params``), each with its
own run id, name and record tag, inserted by SQL into MLflow's own schema in one
transaction: logging 100k runs through its API would take over an hour here (printed).
Timed in-process (``replay.find`` against ``mlflow.search_runs``, warm) and as a whole
process (``replay --store S find KEY`` against ``python -c`` that imports mlflow and
searches), alternating key by key, for keys spread over the store.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import hashlib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from bench_capture import BareContext

import pipelines.credit
import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import BUREAU, FRAUD_MODEL, PD_MODEL, build_workspace
from replay.capture.bind import bind
from replay.capture.runner import arguments

KEY = "application_id"
GOAL = 30.0  # same-content MLflow / durable record at 1 row
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class TapeContext(BareContext):
    """The bare context, keeping what a replay would need: the clock and each answer."""

    def __init__(self) -> None:
        self.tape: list[Any] = []

    def now(self) -> datetime:
        now = super().now()
        self.tape.append({"now": now.isoformat()})
        return now

    def call(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        answer = super().call(name, fn, *args)
        self.tape.append({"call": name, "args": args, "answer": answer})
        return answer


def steps_runner(pipeline: replay.Pipeline, store: replay.Store) -> Callable[[pa.Table], Any]:
    """The chain's steps called bare on the loaded models and data: every output and the tape."""
    binding = bind(pipeline, store)

    def run(table: pa.Table) -> tuple[dict[str, pa.Table], list[Any]]:
        ctx, outputs = TapeContext(), {"input": table}
        for bound in binding.steps:
            table = bound.step.fn(table, **arguments(bound.step, bound.kwargs, ctx))
            outputs[bound.step.name] = table
        return outputs, ctx.tape

    return run


class Mlflow:
    """MLflow tracking on its sqlite store, logging what one credit run is."""

    def __init__(self, root: Path, pipeline: replay.Pipeline, workspace: Path, steps: Any):
        import mlflow

        self.mlflow, self.steps = mlflow, steps
        root.mkdir(parents=True)
        self.db = root / "mlflow.db"
        mlflow.set_tracking_uri(f"sqlite:///{self.db}")
        # Without an artifact location a database store writes under ./mlruns.
        self.experiment = mlflow.create_experiment(
            "credit", artifact_location=(root / "artifacts").as_uri()
        )
        mlflow.set_experiment(experiment_id=self.experiment)
        self.params = {
            f"{step.name}.{k}": v for step in pipeline.steps for k, v in (step.params or {}).items()
        }
        self.version_tags = self._log_version(workspace)

    def _log_version(self, workspace: Path) -> dict[str, str]:
        """Code, models and data, logged once; runs name them by artifact URI and sha256."""
        code = sorted(Path(pipelines.credit.__file__).parent.glob("*.py"))
        files = [*code, *(workspace / p for p in (FRAUD_MODEL, PD_MODEL, BUREAU))]
        with self.mlflow.start_run(run_name="version") as run:
            for path in files:
                self.mlflow.log_artifact(str(path), path.parent.name)
        return {
            f"version.{path.name}": f"{run.info.artifact_uri}#sha256="
            + hashlib.sha256(path.read_bytes()).hexdigest()
            for path in files
        }

    def run(self, table: pa.Table, synchronous: bool) -> None:
        """One run: the steps, then their params, tags, tables and tape (the tape on disk as
        JSON, the tables as Parquet, written to a folder and logged from it)."""
        outputs, tape = self.steps(table)
        tags = {f"record.{k}": "1" for k in table[KEY].to_pylist()}
        with self.mlflow.start_run(), tempfile.TemporaryDirectory() as tmp:
            self.mlflow.log_params(self.params, synchronous=synchronous)
            self.mlflow.set_tags({**self.version_tags, **tags}, synchronous=synchronous)
            for name, out in outputs.items():
                pq.write_table(out, f"{tmp}/{name}.parquet")
            Path(tmp, "tape.json").write_bytes(orjson.dumps(tape, default=str))
            self.mlflow.log_artifacts(tmp, "tables")

    def flush(self) -> None:
        self.mlflow.flush_async_logging()


def per_run(run: Callable[[], Any], n: int, finish: Callable[[], Any]) -> float:
    """Seconds per run of ``n`` runs, ``finish`` (a flush) included."""
    t0 = time.perf_counter()
    for _ in range(n):
        run()
    finish()
    return (time.perf_counter() - t0) / n


def alternate(sides: list[Callable[[], float]], rounds: int) -> list[float]:
    """Each side's median over ``rounds`` rounds, the sides in turn in each round."""
    times: list[list[float]] = [[] for _ in sides]
    for _ in range(rounds):
        for side, fn in zip(times, sides, strict=True):
            side.append(fn())
    return [statistics.median(t) for t in times]


class Ours:
    """replay.record of the chain, durable or async, on one store."""

    def __init__(self, store: replay.Store, pipeline: replay.Pipeline):
        self.store, self.pipeline = store, pipeline

    def run(self, table: pa.Table, durable: bool) -> None:
        # The wall clock, as the MLflow side's steps see it, given as the run's time.
        at = datetime.now(UTC)
        replay.record(
            self.pipeline, table, store=self.store, record_key=KEY, at=at, durable=durable
        )

    def flush(self) -> None:
        self.store.flush()


def compare(ours: Ours, peer: Mlflow, table: pa.Table, durable: bool, args: Any) -> list[float]:
    """Median seconds per run of ``table``: ours, MLflow's and the bare chain's (the steps
    alone, which both sides run), warmed up, alternating."""
    n = args.runs if table.num_rows == 1 else max(1, args.runs // 20)
    # An async MLflow run waits about a second as it ends (see report()): fewer of them.
    m = n if durable else max(1, n // 8)
    sides = [
        lambda: per_run(lambda: ours.run(table, durable), n, ours.flush),
        lambda: per_run(lambda: peer.run(table, durable), m, peer.flush),
        lambda: per_run(lambda: peer.steps(table), n, lambda: None),
    ]
    for side in sides:
        side()  # warm-up: imports, caches, the binding, sqlite's pages
    return alternate(sides, args.rounds)


def recording(ours: Ours, peer: Mlflow, args: Any) -> dict[str, list[float]]:
    """Per-run seconds of both sides, durable and async, at 1 row and 10,000 rows."""
    inputs = {"1 row": make_applications(1, seed=2), "10k rows": make_applications(10_000, seed=1)}
    out = {}
    for durable in (True, False):
        mode = "durable" if durable else "async"
        peer.mlflow.config.enable_async_logging(not durable)
        for label, table in inputs.items():
            out[f"{label}, {mode}"] = compare(ours, peer, table, durable, args)
            print(f"  recorded {label}, {mode}", file=sys.stderr)
    peer.mlflow.config.enable_async_logging(False)
    return out


def our_find_store(root: Path, runs: int) -> str:
    """``runs`` 1-row runs recorded by the fast path; returns the store's path."""
    store = replay.Store.open(root, durable=False)
    pipe = replay.Pipeline(
        "bulk", [replay.Step("id", lambda t: t.append_column("decision", pa.array(["approve"])))]
    )
    for i in range(runs):
        row = pa.table({KEY: [f"APP-{i:08d}"], "x": [float(i)]})
        replay.record(pipe, row, store=store, record_key=KEY, at=T0 + timedelta(seconds=i))
    store.flush()
    replay.find(store, "APP-00000000")  # the catalog ingests the store once
    return str(root)


def mlflow_find_store(peer: Mlflow, runs: int) -> tuple[str, str]:
    """``runs`` copies of one 1-row credit run ``peer`` logged; its tracking URI, experiment."""
    peer.run(make_applications(1, seed=3), synchronous=True)  # record APP-00000000
    template = peer.mlflow.last_active_run().info.run_id
    with sqlite3.connect(peer.db) as db:
        copy_run(db, template, runs)
    return f"sqlite:///{peer.db}", peer.experiment


def copy_run(db: sqlite3.Connection, template: str, runs: int) -> None:
    """Insert copies 1 .. runs-1 of ``template`` (run 0) with their own id, name and record."""
    ids = [uuid.uuid4().hex for _ in range(runs)]
    for table in ("runs", "params", "tags"):
        cur = db.execute(f"select * from {table} where run_uuid = ?", (template,))
        names, found = [c[0] for c in cur.description], cur.fetchall()
        copies = [renamed(names, row, ids[i], i) for i in range(1, runs) for row in found]
        marks = ",".join("?" * len(names))
        db.executemany(f"insert into {table} ({','.join(names)}) values ({marks})", copies)


def renamed(names: list[str], row: tuple[Any, ...], run_id: str, i: int) -> tuple[Any, ...]:
    """``row`` of run copy ``i``: its run id, run name and record tag key."""
    values = dict(zip(names, row, strict=True))
    values["run_uuid"] = run_id
    if "artifact_uri" in values:
        values["artifact_uri"] = values["artifact_uri"].replace(
            row[names.index("run_uuid")], run_id
        )
    if "name" in values:
        values["name"] = f"run-{i}"
    if values.get("key") == "record.APP-00000000":
        values["key"] = f"record.APP-{i:08d}"
    elif values.get("key") == "mlflow.runName":
        values["value"] = f"run-{i}"
    return tuple(values[n] for n in names)


SEARCH = """
import sys, mlflow
uri, experiment, key = sys.argv[1:]
mlflow.set_tracking_uri(uri)
found = mlflow.search_runs([experiment], filter_string=f"tags.`record.{key}` = '1'")
print(found["run_id"].tolist())
"""


def finders(ours: str, theirs: tuple[str, str]) -> dict[str, tuple[Callable[[str], Any], ...]]:
    """Both sides' "which run decided record KEY", in-process and as a whole process."""
    import mlflow

    store = replay.Store.open(ours)
    mlflow.set_tracking_uri(theirs[0])

    def search(key: str) -> Any:
        found = mlflow.search_runs([theirs[1]], filter_string=f"tags.`record.{key}` = '1'")
        assert len(found) == 1, (key, found)

    def mine(key: str) -> Any:
        assert len(replay.find(store, key)) == 1, key

    def process(*argv: str) -> Callable[[str], Any]:
        return lambda key: subprocess.run([*argv, key], check=True, capture_output=True)

    cli = str(Path(sys.executable).parent / "replay")
    return {
        "in-process": (mine, search),
        "whole process": (
            process(cli, "--store", ours, "find"),
            process(sys.executable, "-c", SEARCH, *theirs),
        ),
    }


def finding(
    tmp: Path, runs: int, keys: dict[str, int], peer: Callable[[Path], Mlflow]
) -> dict[str, list[float]]:
    """Median seconds of both sides' find over a store of ``runs`` runs, keys spread."""
    t0 = time.perf_counter()
    ours = our_find_store(tmp / f"find-ours-{runs}", runs)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = mlflow_find_store(peer(tmp / f"find-mlflow-{runs}"), runs)
    print(
        f"  find stores of {runs:,} runs: ours recorded in {built:.0f} s, "
        f"MLflow's copied in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    out = {}
    for how, (mine, search) in finders(ours, theirs).items():
        probes = [f"APP-{i * runs // keys[how] + 7:08d}" for i in range(keys[how])]
        mine(probes[-1]), search(probes[-1])  # warm-up
        times: list[list[float]] = [[], []]
        for key in probes:  # alternating, key by key
            for side, fn in zip(times, (mine, search), strict=True):
                t0 = time.perf_counter()
                fn(key)
                side.append(time.perf_counter() - t0)
        out[f"find, {runs:,} runs, {how}"] = [statistics.median(t) for t in times]
    return out


def report(figures: dict[str, list[float]]) -> None:
    print(
        f"{'median ms per run':34} {'replay':>8} {'MLflow':>9} {'ratio':>7}"
        f" {'bare chain':>11} {'ratio of costs beyond it':>25}"
    )
    for name, (ours, theirs, *bare) in figures.items():
        line = f"{name:34} {ours * 1e3:8.2f} {theirs * 1e3:9.2f} {theirs / ours:6.1f}x"
        if bare:
            beyond = (theirs - bare[0]) / (ours - bare[0])
            line += f" {bare[0] * 1e3:11.2f} {beyond:24.1f}x"
        print(line)
    for rows in ("1 row", "10k rows"):
        best, ours = figures[f"{rows}, durable"][1], figures[f"{rows}, async"][0]
        print(f"{rows}: MLflow's best (synchronous) / async record: {best / ours:.1f}x")
    # end_run drains MLflow's async queue and joins its logging thread, which blocks up to
    # 1 s in queue.get(timeout=1): a short run gains nothing from async logging.
    print("MLflow async: each run waits as it ends for its logging thread (polls every 1 s)")
    print(
        f"logging 100,000 1-row runs through MLflow's API: about "
        f"{figures['1 row, durable'][1] * 1e5 / 60:.0f} min at its durable rate"
    )
    ours, theirs, _ = figures["1 row, durable"]
    met = "met" if theirs / ours >= GOAL else "NOT MET"
    print(
        f"goal: same-content MLflow >= {GOAL:.0f}x durable record at 1 row "
        f"(durable vs durable): {theirs / ours:.1f}x, {met}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes")
    parser.add_argument("--runs", type=int, help="1-row runs per side per round (default 40)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 7)")
    parser.add_argument(
        "--find-runs", help="store sizes for find, comma-separated (default 10000,100000)"
    )
    args = parser.parse_args()
    quick = (10, 3, "2000") if args.quick else (40, 7, "10000,100000")
    args.runs = args.runs or quick[0]
    args.rounds = args.rounds or quick[1]
    keys = (
        {"in-process": 10, "whole process": 3}
        if args.quick
        else {
            "in-process": 30,
            "whole process": 7,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workspace = build_workspace(root / "workspace")
        pipeline = make_pipeline(workspace)
        store = replay.Store.open(root / "store")
        steps = steps_runner(pipeline, store)

        def peer(path: Path) -> Mlflow:
            return Mlflow(path, pipeline, workspace, steps)

        figures = recording(Ours(store, pipeline), peer(root / "mlflow"), args)
        for runs in (int(n) for n in (args.find_runs or quick[2]).split(",")):
            figures |= finding(root, runs, keys, peer)
    print(f"MLflow {__import__('mlflow').__version__}, the credit-decision chain")
    report(figures)


if __name__ == "__main__":
    main()
