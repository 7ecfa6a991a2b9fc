"""In-container replay against replay in this process, same run, same rows.

    DOCKER_HOST=unix:///path/docker.sock python benchmarks/bench_container.py --image REF

REF is a pipeline-replay image (see README, *Container*). The in-container figure includes
what a replay in a sandbox costs on top: creating and starting the container, starting
Python and importing the stack in it, and removing it. Medians of alternating rounds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import contextlib
import tempfile
from pathlib import Path

from bench_capture import alternate

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace
from replay.docker.client import engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True, help="pipeline-replay image to replay in")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.closing(engine()) as client:
        workspace = build_workspace(Path(tmp) / "workspace")
        pipeline = make_pipeline(workspace)
        store = replay.Store.open(Path(tmp) / "store")
        print(f"{'rows per run':>12} {'in-process ms':>14} {'in-container ms':>16} {'ratio':>7}")
        for n in (1, 10_000):
            run_id = replay.record(
                pipeline, make_applications(n, seed=n), store=store, record_key="application_id"
            ).run_id
            inside = replay.replay_in_container(store, run_id, image=args.image, client=client)
            assert inside.verdict == "exact", inside.verdict
            here, there = alternate(
                lambda run_id=run_id: replay.replay(store, run_id),
                lambda run_id=run_id: replay.replay_in_container(
                    store, run_id, image=args.image, client=client
                ),
                args.rounds,
                1,
            )
            print(f"{n:12,} {here * 1e3:14.1f} {there * 1e3:16.1f} {there / here:6.1f}x")


if __name__ == "__main__":
    main()
