"""Export and verify throughput against plain sha256 of the same bytes.

    python benchmarks/bench_evidence.py [--quick]

Export includes replaying every run and rendering the human report; verify checks every
digest, proof and signature. Both are reported in MB/s of bundle bytes and as a ratio to
hashing those bytes once with sha256 (the floor any verification must pay).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace
from replay import keys
from replay.evidence import export
from replay.verify import verify_bundle


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs, rows = (4, 2_000) if args.quick else (10, 10_000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pipeline = make_pipeline(build_workspace(root / "workspace"))
        store = replay.Store.open(root / "store")
        key = keys.init_key(root / "k.pem")
        ids = [replay.record(pipeline, make_applications(rows, seed=i), store=store,
                             record_key="application_id").run_id for i in range(runs)]
        out = root / "e.bundle"
        t_export = best(lambda: export(store, ids, out, key=key), 2)
        data = out.read_bytes()
        pub = keys.public_path(key).read_bytes()
        t_verify = best(lambda: verify_bundle(out, pub), 3)
        t_hash = best(lambda: hashlib.sha256(data).digest(), 5)
    mb = len(data) / 1e6
    print(f"bundle: {runs} runs x {rows:,} rows = {mb:.1f} MB")
    print(f"{'':10} {'MB/s':>8} {'x sha256 time':>14}")
    print(f"{'sha256':10} {mb / t_hash:8.0f} {1:14.1f}")
    print(f"{'export':10} {mb / t_export:8.1f} {t_export / t_hash:14.1f}")
    print(f"{'verify':10} {mb / t_verify:8.1f} {t_verify / t_hash:14.1f}")


if __name__ == "__main__":
    main()
