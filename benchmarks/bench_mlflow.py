"""The peer: the same 1-row runs logged with MLflow tracking, per-run cost against record.

    pip install -e '.[bench]' && python benchmarks/bench_mlflow.py [--runs N]

MLflow logs the run's params, metrics and its input/output as one small artifact, into its
file store (MLFLOW_ALLOW_FILE_STORE=true) and its sqlite store. pipeline-replay records the
same no-op pipeline run with its full snapshot, durably. Goal: >= 50x cheaper than the file
store.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa

import replay

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"


def mlflow_per_run(uri: str, artifacts: Path, runs: int, payload: dict) -> float:  # type: ignore[type-arg]
    import mlflow

    mlflow.set_tracking_uri(uri)
    # A database store would put artifacts under ./mlruns of the working directory.
    mlflow.set_experiment(
        experiment_id=mlflow.create_experiment("bench", artifact_location=artifacts.as_uri())
    )
    t0 = time.perf_counter()
    for i in range(runs):
        with mlflow.start_run():
            mlflow.log_params(
                {
                    "k": 2.0,
                    "model": "pd-v3",
                    "threshold": 0.25,
                    "seed": i,
                    "pipeline": "credit-decision",
                }
            )
            mlflow.log_metrics({"pd": 0.12, "fraud_score": 0.01, "latency_ms": 2.4})
            mlflow.log_dict(payload, "io.json")
    return (time.perf_counter() - t0) / runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    row = pa.table({"application_id": ["APP-1"], "x": [1.0]})
    payload = {"input": row.to_pylist(), "output": row.to_pylist()}
    with tempfile.TemporaryDirectory() as tmp:
        store = replay.Store.open(Path(tmp) / "store")
        pipe = replay.Pipeline("noop", [replay.Step("id", lambda t: t)])
        replay.record(pipe, row, store=store)
        t0 = time.perf_counter()
        for _ in range(args.runs * 5):
            replay.record(pipe, row, store=store, record_key="application_id")
        ours = (time.perf_counter() - t0) / (args.runs * 5)
        lazy = replay.Store.open(Path(tmp) / "store", durable=False)
        t0 = time.perf_counter()
        for _ in range(args.runs * 5):
            replay.record(pipe, row, store=lazy, record_key="application_id")
        lazy.flush()  # still fsynced, once per group instead of per run
        ours_async = (time.perf_counter() - t0) / (args.runs * 5)
        file_store = mlflow_per_run(
            f"file://{tmp}/mlruns", Path(tmp) / "file-artifacts", args.runs, payload
        )
        sqlite = mlflow_per_run(
            f"sqlite:///{tmp}/mlflow.db", Path(tmp) / "db-artifacts", args.runs // 2, payload
        )
    print(f"{'per 1-row run':38} {'ms':>8} {'x replay.record':>16}")
    print(f"{'replay.record (durable, full snapshot)':38} {ours * 1e3:8.2f} {1:16.1f}")
    print(
        f"{'replay.record (async, flushed at end)':38} {ours_async * 1e3:8.2f} "
        f"{ours_async / ours:16.2f}"
    )
    print(f"{'MLflow file store (no fsync)':38} {file_store * 1e3:8.2f} {file_store / ours:16.1f}")
    print(f"{'MLflow sqlite store':38} {sqlite * 1e3:8.2f} {sqlite / ours:16.1f}")
    print(f"MLflow file store / async record: {file_store / ours_async:.1f}x")
    print(json.dumps({"payload_bytes": len(json.dumps(payload))}))


if __name__ == "__main__":
    main()
