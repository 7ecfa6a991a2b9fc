"""Export and verify throughput against plain sha256 of the same bytes, and verify's memory.

    python benchmarks/bench_evidence.py [--quick] [--runs N --rows N]

Export includes replaying every run and rendering the human report; verify checks every
digest, proof and signature. Both are reported in MB/s of bundle bytes and as a ratio to
hashing those bytes once with sha256 (the floor any verification must pay). Verify's peak
memory is the RSS high-water mark of a fresh process verifying the bundle, beside that of
the same process after its imports alone: verify streams the bundle, so the difference
stays small whatever the bundle's size. Last, the verified read: what checking a run's
ledger entry (hash, chain, pinned checkpoint) costs each replay, against a 1-row replay of
the credit chain, and what the first read in a process pays to hash the whole ledger.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace
from replay.core import keys
from replay.evidence.export import export
from replay.evidence.verify import verify_bundle


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# Run in a fresh interpreter, since a high-water mark never goes down: this process's own
# (the recording, the export) would hide verify's. Linux's VmHWM is the new program's own;
# ru_maxrss would also carry the RSS of this process, which the child was forked from.
PEAK = """
import json, resource, sys
from pathlib import Path

def high_water_kb():
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux too

from replay.evidence.verify import verify_bundle
imported = high_water_kb()
check = verify_bundle(Path(sys.argv[1]), Path(sys.argv[2]).read_bytes())
print(json.dumps({"ok": check.ok, "imports_kb": imported, "peak_kb": high_water_kb()}))
"""


def verify_peak(bundle: Path, public_key: Path) -> dict[str, float]:
    """Verify's RSS high-water mark in MB, and that after its imports alone."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, str(bundle), str(public_key)],
        check=True,
        capture_output=True,
        text=True,
    )
    found = json.loads(done.stdout)
    assert found["ok"], "the benchmark's bundle must verify"
    return {"imports": found["imports_kb"] / 1024, "peak": found["peak_kb"] / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, help="runs in the bundle (default 10)")
    parser.add_argument("--rows", type=int, help="rows per run (default 10,000)")
    args = parser.parse_args()
    runs, rows = (4, 2_000) if args.quick else (10, 10_000)
    runs, rows = args.runs or runs, args.rows or rows
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pipeline = make_pipeline(build_workspace(root / "workspace"))
        store = replay.Store.open(root / "store")
        key = keys.init_key(root / "k.pem")
        ids = [
            replay.record(
                pipeline, make_applications(rows, seed=i), store=store, record_key="application_id"
            ).run_id
            for i in range(runs)
        ]
        out = root / "e.bundle"
        t_export = best(lambda: export(store, ids, out, key=key), 2)
        data = out.read_bytes()
        pub = keys.public_path(key).read_bytes()
        t_verify = best(lambda: verify_bundle(out, pub), 3)
        t_hash = best(lambda: hashlib.sha256(data).digest(), 5)
        memory = verify_peak(out, keys.public_path(key))
    mb = len(data) / 1e6
    print(f"bundle: {runs} runs x {rows:,} rows = {mb:.1f} MB")
    print(f"{'':10} {'MB/s':>8} {'x sha256 time':>14}")
    print(f"{'sha256':10} {mb / t_hash:8.0f} {1:14.1f}")
    print(f"{'export':10} {mb / t_export:8.1f} {t_export / t_hash:14.1f}")
    print(f"{'verify':10} {mb / t_verify:8.1f} {t_verify / t_hash:14.1f}")
    print(
        f"verify peak memory: {memory['peak']:.0f} MB RSS "
        f"({memory['imports']:.0f} MB of it the interpreter and imports)"
    )
    verified_read(50 if args.quick else 200)


def verified_read(n: int) -> None:
    """check_entry per run against a 1-row replay, in a checkpointed store whose signer is
    pinned (the strictest policy: chain and checkpoint coverage)."""
    from replay.catalog import queries
    from replay.store import checkpoint
    from replay.store.history import check_entry

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(root / "cache")
        pipeline = make_pipeline(build_workspace(root / "workspace"))
        store = replay.Store.open(root / "store")
        t0 = datetime(2026, 3, 14, 9, tzinfo=UTC)
        ids = [
            replay.record(
                pipeline, make_applications(1, seed=i), store=store, at=t0 + timedelta(minutes=i)
            ).run_id
            for i in range(n)
        ]
        key = keys.init_key(root / "k.pem")
        checkpoint.sign(store, keys.load_private(key))
        os.environ["REPLAY_TRUSTED_KEYS"] = str(keys.public_path(key))
        reopened = replay.Store.open(store.root)
        entries = [queries.entry(reopened, r) for r in ids]
        start = time.perf_counter()
        check_entry(reopened, entries[0])  # a new process hashes the whole ledger once
        first = time.perf_counter() - start
        per_check = best(lambda: [check_entry(reopened, e) for e in entries], 5) / n
        replay.replay(reopened, ids[0])  # warm: models and code loaded once per process
        per_replay = best(lambda: [replay.replay(reopened, r) for r in ids[:20]], 3) / 20
    print(
        f"verified read: {per_check * 1e6:.1f} us per run = "
        f"{100 * per_check / per_replay:.2f}% of a 1-row replay ({per_replay * 1e3:.1f} ms); "
        f"first read in a process hashes the ledger: {first * 1e3:.1f} ms for {n} entries"
    )


if __name__ == "__main__":
    main()
