"""``replay batch --in-container`` against ``replay batch`` on the same runs (issue 17).

    DOCKER_HOST=unix:///path/docker.sock \\
        python benchmarks/bench_batch_container.py --image REF [--runs 200] [--rounds 3]

REF is a pipeline-replay image pushed to a registry (``repo@sha256:…``; see README,
*Container*). N one-row credit runs are recorded here, declared as run in that image
(REPLAY_IMAGE_DIGEST/REPLAY_IMAGE_ID, as a deployment declares it), so that they replay in
it. Then, alternating per round: on one LocalCluster of 1 worker (warmed by a job of each
kind), a batch job of the N runs in the worker's process, and the same job with its chunk in
a container of the image; each again on a LocalCluster of its own, started cold (as `replay
batch` without --cluster does); and apart, in this process, a chunk of 1 run and a chunk of
the batch's size, replayed here and in a container (the difference at 1 run: a chunk's
container cost). Every replay must be exact. Medians of the rounds; read the ratios of one
run (the machine is shared).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import contextlib
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench_batch import record_runs
from bench_capture import timed

import replay
from pipelines.credit.workspace import build_workspace
from replay.docker.batch import CHUNKS_PER_WORKER, in_container
from replay.docker.client import engine
from replay.engine.batch.cluster import local_cluster
from replay.engine.batch.run import chunk_size
from replay.engine.batch.task import in_process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True, help="a pushed pipeline-replay image")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with contextlib.closing(engine()) as client:
        os.environ["REPLAY_IMAGE_ID"] = client.images.get(args.image).id
    os.environ["REPLAY_IMAGE_DIGEST"] = args.image
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # the image's user reads the store and the workspace
        root = Path(tmp) / "store"
        ids = record_runs(root, build_workspace(Path(tmp) / "workspace"), args.runs)
        store = replay.Store.open(root)
        replay.runs(store, limit=1)  # the catalog ingests the runs now
        cluster = local_cluster(1)
        jobs = iter(range(1_000_000))

        def batch(inside: bool, own: bool = False) -> Callable[[], None]:
            def run() -> None:
                summary = replay.batch(
                    replay.Store.open(root),
                    cluster=None if own else cluster.scheduler_address,
                    workers=1,
                    job=f"bench-{next(jobs)}",
                    in_container=inside,
                )
                assert summary.by_verdict == {"exact": len(summary.rows)}, summary.by_verdict

            return run

        def chunk(inside: bool, n: int) -> Callable[[], None]:
            replayer = in_container if inside else in_process
            return lambda: replayer(store, ids[:n], "chained", {})

        for inside in (False, True):
            batch(inside)()  # the worker imports, opens the store, finds the image
        per_chunk = chunk_size(args.runs, 1, per_worker=CHUNKS_PER_WORKER)
        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, work in (
                ("batch, in process", batch(False)),
                ("batch, in container", batch(True)),
                ("own cluster, in process", batch(False, own=True)),
                ("own cluster, in container", batch(True, own=True)),
                ("chunk of 1, here", chunk(False, 1)),
                ("chunk of 1, in container", chunk(True, 1)),
                (f"chunk of {per_chunk}, here", chunk(False, per_chunk)),
                (f"chunk of {per_chunk}, in container", chunk(True, per_chunk)),
            ):
                times.setdefault(name, []).append(timed(work, 1))
        cluster.close()
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.runs} runs, 1 worker, chunks of {per_chunk}; medians of {args.rounds} rounds")
    for name, t in med.items():
        print(f"  {name:28} {t * 1e3:9.1f} ms")
    here, there = med["batch, in process"], med["batch, in container"]
    print(
        f"batch: {args.runs / here:.0f} vs {args.runs / there:.0f} runs/s; in container "
        f"{there / here:.2f}x, {(there - here) / args.runs * 1e3:.2f} ms more per run"
    )
    here, there = med["own cluster, in process"], med["own cluster, in container"]
    print(
        f"each with a cluster of its own (as `replay batch` starts one): in container "
        f"{there / here:.2f}x, {(there - here) / args.runs * 1e3:.2f} ms more per run"
    )
    start = med["chunk of 1, in container"] - med["chunk of 1, here"]
    grown = med[f"chunk of {per_chunk}, in container"] - med[f"chunk of {per_chunk}, here"]
    print(
        f"a chunk's container: {start * 1e3:.0f} ms (start, import, open, remove); "
        f"beyond it, {(grown - start) / max(per_chunk - 1, 1) * 1e3:.2f} ms per run"
    )


if __name__ == "__main__":
    main()
