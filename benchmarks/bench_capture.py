"""Capture overhead of replay.record against the same credit pipeline called bare.

    python benchmarks/bench_capture.py [--quick]

Prints, from one process run: the 10,000-row batch and 1-row overheads (durable, and
asynchronous), and durable 1-row runs per second from 1 and 8 threads (group commit). Bare
and recorded runs alternate in rounds so that machine noise hits both alike; figures are
medians over the rounds.
"""

from __future__ import annotations

import os

# scikit-learn's OpenMP pool thrashes when many threads each predict a few rows (a 1-row
# prediction from a worker thread costs ~15 ms instead of 1 ms); serving deployments pin
# it to one thread, and so do we, for the bare and the recorded pipeline alike.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace
from replay.components import bind


class BareContext:
    """What a pipeline sees without pipeline-replay: the clock, chance and the world."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def rng(self, name: str = "default") -> np.random.Generator:
        return np.random.default_rng()

    def call(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


def bare_runner(pipeline: replay.Pipeline, store: replay.Store) -> Callable[[Any], Any]:
    """The same step functions with the same loaded models and data, nothing recorded."""
    binding = bind(pipeline, store)
    ctx = BareContext()

    def run(table: Any) -> Any:
        for bound in binding.steps:
            kwargs = {k: (ctx if k == "ctx" else bound.kwargs[k]) for k in bound.step.wants}
            table = bound.step.fn(table, **kwargs)
        return table

    return run


def timed(fn: Callable[[], Any], repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def alternate(bare: Callable[[], Any], recorded: Callable[[], Any], rounds: int,
              repeat: int) -> tuple[float, float]:
    b, r = [], []
    for _ in range(rounds):
        b.append(timed(bare, repeat))
        r.append(timed(recorded, repeat))
    return statistics.median(b), statistics.median(r)


def throughput(pipeline: replay.Pipeline, store: replay.Store, rows: Any, threads: int,
               runs: int) -> float:
    def work(_: int) -> None:
        for _ in range(runs // threads):
            replay.record(pipeline, rows, store=store, record_key="application_id")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return runs / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = parser.parse_args()
    rounds, one_row = (3, 50) if args.quick else (7, 300)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = build_workspace(Path(tmp) / "workspace")
        pipeline = make_pipeline(workspace)
        store = replay.Store.open(Path(tmp) / "store")
        bare = bare_runner(pipeline, store)
        batch, single = make_applications(10_000, seed=1), make_applications(1, seed=2)

        def rec(t: Any, durable: bool = True) -> Callable[[], Any]:
            return lambda: replay.record(pipeline, t, store=store, record_key="application_id",
                                         durable=durable)

        for fn in (lambda: bare(batch), rec(batch), lambda: bare(single), rec(single)):
            fn()  # warm caches, imports and the binding
        b10k, r10k = alternate(lambda: bare(batch), rec(batch), rounds, 3)
        b1, r1 = alternate(lambda: bare(single), rec(single), rounds, one_row)
        # Asynchronous: record returns once the run is queued; the commit thread's work
        # still competes for the same two cores, so it is inside the figures.
        a10k_b, a10k = alternate(lambda: bare(batch), rec(batch, False), rounds, 3)
        a1_b, a1 = alternate(lambda: bare(single), rec(single, False), rounds, one_row)
        store.flush()
        tps1 = throughput(pipeline, store, single, 1, one_row * 2)
        tps8 = throughput(pipeline, store, single, 8, one_row * 8)
        trivial = replay.Pipeline("trivial", [replay.Step("id", lambda t: t)])
        ttps1 = throughput(trivial, store, single, 1, one_row * 4)
        ttps8 = throughput(trivial, store, single, 8, one_row * 16)

    print(f"{'measure':44} {'bare':>10} {'record':>10} {'overhead':>9}")
    print(f"{'10,000-row batch (ms per run)':44} {b10k * 1e3:10.1f} {r10k * 1e3:10.1f} "
          f"{(r10k / b10k - 1) * 100:8.1f}%")
    print(f"{'1-row run (ms per run)':44} {b1 * 1e3:10.2f} {r1 * 1e3:10.2f} "
          f"{(r1 / b1 - 1) * 100:8.1f}%")
    print(f"{'10,000-row batch, asynchronous (ms per run)':44} {a10k_b * 1e3:10.1f} "
          f"{a10k * 1e3:10.1f} {(a10k / a10k_b - 1) * 100:8.1f}%")
    print(f"{'1-row run, asynchronous (ms per run)':44} {a1_b * 1e3:10.2f} {a1 * 1e3:10.2f} "
          f"{(a1 / a1_b - 1) * 100:8.1f}%")
    print(f"{'durable 1-row runs/s, 1 thread':44} {1 / b1:10.0f} {tps1:10.0f}")
    print(f"{'durable 1-row runs/s, 8 threads':44} {'':10} {tps8:10.0f}")
    print(f"{'durable runs/s of a 1-step no-op, 1 thread':44} {'':10} {ttps1:10.0f}")
    print(f"{'durable runs/s of a 1-step no-op, 8 threads':44} {'':10} {ttps8:10.0f}")


if __name__ == "__main__":
    main()
