"""Export of a window of runs against replaying the same runs alone, and where its time goes.

    python benchmarks/bench_export.py [--quick] [--runs N]

Records N runs of the reference credit chain (1 to 17 rows each, 12 minutes apart, as a day
of one branch's applications), then times, in this one process:

- export: ``replay.evidence.export.export`` of the window with a record asked about (ledger checks,
  files, proofs, replaying every run, the human report in HTML and PDF, the signature). The
  first export in a process also imports fpdf and loads the chain's code and models: it is
  shown apart, as ``replay export`` on the command line pays it each time.
- the baseline: ``replay.replay`` of the same runs, one after another, with nothing else.
- the split of one warm export by stage (from its progress callback), and the time to render
  the same report's HTML and PDF alone.

It prints figures and asserts nothing: compare ratios, not milliseconds, between machines.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # see bench_capture.py

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import replay
from pipelines.credit.generate import make_applications
from pipelines.credit.pipeline import make_pipeline
from pipelines.credit.workspace import build_workspace
from replay.catalog.queries import entries
from replay.core import keys
from replay.engine.recorded import load_run
from replay.evidence import report
from replay.evidence.export import export
from replay.evidence.facts import context
from replay.store import checkpoint

T0 = datetime(2026, 3, 14, 8, tzinfo=UTC)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn: Callable[[], object], repeat: int) -> float:
    return min(timed(fn) for _ in range(repeat))


class Stages:
    """A progress callback that keeps how long each stage of an export took."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._stage, self._since = "", time.perf_counter()

    def __call__(self, line: str) -> None:
        now = time.perf_counter()
        if self._stage:
            self.spent[self._stage] = self.spent.get(self._stage, 0.0) + now - self._since
        self._stage = "replaying the runs" if line.startswith("run ") else line
        self._since = now

    def close(self) -> dict[str, float]:
        self("")
        return self.spent


def record_window(root: Path, runs: int) -> tuple[replay.Store, list[str], str]:
    """The runs' ids, and the key of a record in the middle of the window."""
    pipeline = make_pipeline(build_workspace(root / "workspace"))
    store = replay.Store.open(root / "store")
    ids = []
    for i in range(runs):
        batch = make_applications(1 + (i * 7) % 17, seed=i, start_id=i * 100)
        ids.append(
            replay.record(
                pipeline,
                batch,
                store=store,
                record_key="application_id",
                at=T0 + timedelta(minutes=12 * i),
            ).run_id
        )
    return store, ids, f"APP-{(runs // 2) * 100:08d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 runs, fewer repeats")
    parser.add_argument("--runs", type=int, help="runs in the window (default 50)")
    args = parser.parse_args()
    runs, repeat = (10, 1) if args.quick else (50, 3)
    runs = args.runs or runs
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store, ids, asked = record_window(root, runs)
        key = keys.init_key(root / "k.pem")
        question = {"record": asked, "time": T0.isoformat()}
        out = root / "e.bundle"
        first = timed(lambda: export(store, ids, out, key=key, question=question))
        warm = best(lambda: export(store, ids, out, key=key, question=question), repeat)
        alone = best(lambda: [replay.replay(store, r) for r in ids], repeat)
        stages = Stages()
        export(store, ids, out, key=key, question=question, progress=stages)
        split = stages.close()
        loaded = [load_run(store, e) for e in entries(store, ids)]
        reports = {r: replay.replay(store, r) for r in ids}
        cp = checkpoint.sign(store, keys.load_private(key))
        ctx = context(store, loaded, reports, cp, question)
        html = best(lambda: report.render_html(ctx), repeat)
        pdf = best(lambda: report.render_pdf(ctx), repeat)
        size = out.stat().st_size
    print(
        f"window: {runs} credit runs of 1-17 rows; bundle {size / 1e6:.1f} MB; "
        f"record asked: {asked}"
    )
    print(f"{'':34} {'s':>7} {'x replay alone':>15}")
    print(f"{'replay the runs alone (baseline)':34} {alone:7.2f} {1:15.2f}")
    print(f"{'export, warm':34} {warm:7.2f} {warm / alone:15.2f}")
    print(f"{'export, first in the process':34} {first:7.2f} {first / alone:15.2f}")
    print("one warm export, by stage:")
    for stage, spent in split.items():
        print(f"  {stage:40} {spent:7.2f} s {100 * spent / sum(split.values()):5.1f} %")
    print(f"the report alone: HTML {html * 1e3:.0f} ms, PDF {pdf * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
