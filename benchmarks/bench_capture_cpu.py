"""CPU that recording adds to a 1-row credit run, split into the caller and the commit thread.

    python benchmarks/bench_capture_cpu.py [--runs 2000] [--rounds 20] [--profile caller|commit]

Bare and recorded 1-row runs alternate in rounds (``--runs`` of each in all). Each round
reads the caller's CPU clock, the commit thread's CPU clock and the process's CPU time, so
the figures per run are: the caller's CPU, recorded minus bare; the commit thread's CPU
(idle while bare runs); and the process's, recorded minus bare (both threads and any other).
Durable and asynchronous recording are measured alike (an asynchronous caller hands the
commit thread bigger groups); an asynchronous round ends with ``store.flush()``, so its
commits are counted in it. Figures are medians over the rounds, beside the goal of issue 16
(<= 0.5 ms of CPU per run). ``--profile`` prints instead the top functions of one side
(cProfile; the commit side by profiling the commit thread's group work). ``--pieces``
prints the CPU per run of each piece of capture in situ, on either thread (each function
timed by its thread's clock, no profiler: a piece costs several times in a run what it
costs in a loop, after a step's own work has left the caches cold).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as bench_capture: one OpenMP thread

import argparse
import collections
import cProfile
import importlib
import pstats
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_capture import bare_runner

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace
from replay.capture import record
from replay.store import commit

GOAL_MS = 0.5
_in_steps = [0.0]  # caller CPU spent inside step functions while recording


def _timed_steps() -> None:
    """Count the CPU the recorded steps' own functions take (in the caller's thread)."""
    call_step = record.call_step

    def timed(*args: Any) -> Any:
        t0 = time.thread_time()
        try:
            return call_step(*args)
        finally:
            _in_steps[0] += time.thread_time() - t0

    record.call_step = timed


def commit_clock() -> int:
    """The CPU clock of this process's commit thread."""
    (thread,) = [t for t in threading.enumerate() if t.name == "replay-commit"]
    assert thread.ident is not None
    return time.pthread_getcpuclockid(thread.ident)


def clocks(commit_thread: int) -> tuple[float, float, float, float]:
    return (
        time.thread_time(),
        time.clock_gettime(commit_thread),
        time.process_time(),
        time.perf_counter(),
    )


def measure(
    bare: Callable[[], Any], rec: Callable[[], Any], flush: Callable[[], None], args: Any
) -> dict[str, float]:
    """Medians per run (ms) of the CPU and wall time recording adds."""
    clock = commit_clock()
    per = max(1, args.runs // args.rounds)
    rows: list[tuple[float, ...]] = []
    for _ in range(args.rounds):
        a = clocks(clock)
        for _ in range(per):
            bare()
        b = clocks(clock)
        _in_steps[0] = 0.0
        for _ in range(per):
            rec()
        flush()
        c = clocks(clock)
        bare_d = [y - x for x, y in zip(a, b, strict=True)]
        rec_d = [y - x for x, y in zip(b, c, strict=True)]
        rows.append(
            (
                rec_d[0] - bare_d[0],  # caller
                rec_d[0] - _in_steps[0],  # caller, outside the steps
                rec_d[1],  # commit thread (idle during the bare runs)
                rec_d[2] - bare_d[2],  # process
                bare_d[3],  # wall, bare
                rec_d[3],  # wall, recorded
            )
        )
    names = ("caller", "outside", "commit", "process", "bare", "record")
    return {n: statistics.median(r[i] for r in rows) / per * 1e3 for i, n in enumerate(names)}


# The pieces ``--pieces`` times: (module, class or "", function); nested ones count twice.
PIECES = [
    ("replay.capture.record", "", "prepare_input"),
    ("replay.capture.record", "", "bind"),
    ("replay.capture.record", "", "normalize_table"),
    ("replay.capture.record", "", "new_run_id"),
    ("replay.capture.record", "", "_tape"),
    ("replay.capture.record", "", "plain"),
    ("replay.capture.record", "", "manifest_json"),
    ("replay.core.context", "RunContext", "call"),
    ("replay.core.forms", "Forms", "of"),
    ("replay.store.segments", "StoredTable", "formed"),
    ("replay.store.segments", "Sharing", "split"),
    ("replay.store.store", "Store", "commit"),
    ("replay.store.commit", "Committer", "_commit"),
    ("replay.store.commit", "Committer", "_note"),
    ("replay.store.segments", "SegmentWriter", "write"),
    ("replay.store.segments", "", "encode_block"),
    ("replay.store.segments", "SegmentWriter", "seal"),
    ("replay.store.ledger", "Ledger", "append"),
]


def pieces(rec: Callable[[], Any], flush: Callable[[], None], runs: int) -> None:
    spent: dict[tuple[str, str], float] = collections.defaultdict(float)

    def timed(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[threading.current_thread().name, label] += time.thread_time() - t0

        return run

    for module, cls, name in PIECES:
        found = importlib.import_module(module)
        owner = getattr(found, cls) if cls else found
        original = owner.__dict__[name]
        fn = original.__func__ if isinstance(original, classmethod) else original
        wrapped = timed(fn, f"{cls}.{name}" if cls else name)
        setattr(owner, name, classmethod(wrapped) if isinstance(original, classmethod) else wrapped)
    for _ in range(runs):
        rec()
    flush()
    for (thread, label), seconds in sorted(spent.items()):
        print(f"{thread:14} {label:24} {seconds / runs * 1e6:8.1f} µs")


def profile(side: str, rec: Callable[[], Any], flush: Callable[[], None], runs: int) -> None:
    prof = cProfile.Profile()
    if side == "commit":
        original = commit.Committer._commit

        def profiled(self: commit.Committer, group: list[commit.Pending]) -> None:
            prof.runcall(original, self, group)

        commit.Committer._commit = profiled  # type: ignore[method-assign]
        for _ in range(runs):
            rec()
        flush()
        commit.Committer._commit = original  # type: ignore[method-assign]
    else:
        prof.enable()
        for _ in range(runs):
            rec()
        prof.disable()
        flush()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000, help="recorded runs (and bare) in all")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--profile", choices=("caller", "commit"))
    parser.add_argument("--pieces", action="store_true", help="CPU per run of each piece")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = make_pipeline(build_workspace(Path(tmp) / "workspace"))
        store = replay.Store.open(Path(tmp) / "store")
        run_bare = bare_runner(pipeline, store)
        single = make_applications(1, seed=2)

        def bare() -> Any:
            return run_bare(single)

        def rec(durable: bool) -> Callable[[], Any]:
            return lambda: replay.record(
                pipeline, single, store=store, record_key="application_id", durable=durable
            )

        for _ in range(50):  # warm caches, imports, the binding and the segment log
            bare()
            rec(True)()
        if args.profile:
            profile(args.profile, rec(True), store.flush, args.runs)
            return
        if args.pieces:
            pieces(rec(True), store.flush, args.runs)
            return
        _timed_steps()
        figures = {
            "durable": measure(bare, rec(True), store.flush, args),
            "asynchronous": measure(bare, rec(False), store.flush, args),
        }
    print(f"1-row credit run, {args.runs} runs of each in {args.rounds} alternating rounds")
    print(f"capture CPU per 1-row run (ms; goal <= {GOAL_MS} ms of CPU per run)")
    print(
        f"{'mode':13} {'caller':>7} {'commit':>7} {'both':>7} {'process':>8} | "
        f"{'outside steps':>13} {'+ commit':>8} | {'bare wall':>9} {'rec wall':>8} {'overhead':>8}"
    )
    for mode, f in figures.items():
        print(
            f"{mode:13} {f['caller']:7.3f} {f['commit']:7.3f} {f['caller'] + f['commit']:7.3f} "
            f"{f['process']:8.3f} | {f['outside']:13.3f} {f['outside'] + f['commit']:8.3f} | "
            f"{f['bare']:9.3f} {f['record']:8.3f} {(f['record'] / f['bare'] - 1) * 100:7.1f}%"
        )


if __name__ == "__main__":
    main()
