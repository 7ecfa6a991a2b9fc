"""kill -9 at any point of the write path loses no committed run and leaves no partial one.

A child process records runs and prints each run id once ``record`` has returned (durable:
committed). The parent kills it with SIGKILL — at a random moment, or exactly between two
stages of the write path (block unsynced; ledger lines unsynced; commit frame and the one
fdatasync; the sealed mark) — then checks the store, and records into it again: the next
writer seals what the dead one left unsealed before chaining to it. ``--crash-trials N``
sets how many random kills run, two per store (default 6; CI's crash step runs 500: 1,000
kills).
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest
from crashing import acknowledged, kill_after, spawn

import replay
from replay.catalog.check import verify_store
from replay.catalog.repair import doctor
from replay.engine.replay import replay as replay_run

CHILD = """
import os
import replay.store.fs, replay.store.frames, replay.store.ledger, replay.store.recovery
import replay.store.segments
import crashing
from crashing import crash_in

POINT = {point!r}


def tear_append(folder, head=b""):
    # The next append to a log in ``folder`` (of bytes that start with ``head``) is torn in
    # the middle.
    original = replay.store.fs.LocalFile.append
    def append(log, data):
        if crashing.armed and log.name.startswith(folder + "/") and bytes(data[:len(head)]) == head:
            os.write(log.fd, bytes(data)[: max(1, len(data) // 2)])
            crashing.kill()
        return original(log, data)
    replay.store.fs.LocalFile.append = append


if POINT == "object-before-rename":
    crash_in(replay.store.fs.os, "replace")
elif POINT == "segment-mid-write":
    tear_append("segments")
elif POINT == "between-segment-and-ledger":
    crash_in(replay.store.ledger.Ledger, "append")
elif POINT == "ledger-mid-write":
    tear_append("ledger")
elif POINT == "between-ledger-and-frame":
    crash_in(replay.store.segments.SegmentWriter, "seal")
elif POINT == "frame-mid-write":
    tear_append("segments", replay.store.frames.HEAD)
elif POINT == "between-sync-and-sealed-mark":
    crash_in(replay.store.recovery.Journal, "_mark_sealed")

crashing.record_runs({store!r}, arm=POINT != "random")
"""


def _child(store: Path, crash_at: str) -> subprocess.Popen[str]:
    return spawn(CHILD.format(store=str(store), point=crash_at))


def _check(store_path: Path, committed: list[str]) -> None:
    store = replay.Store.open(store_path)
    visible = [e["run_id"] for _, e in store.entries()]
    assert set(committed) <= set(visible), "a run reported committed was lost"
    verify_store(store)  # every visible run is whole: blocks, parts, objects
    for run_id in committed[-2:]:
        assert replay_run(store, run_id).verdict == "exact"
    doctor(store)
    pipe = replay.Pipeline("crash", [replay.Step("id", lambda t: t)])
    import pyarrow as pa

    after = replay.record(
        pipe, pa.table({"id": ["resumed"], "x": [1.0]}), store=store, record_key="id"
    )
    assert store.ledger.verify() == len(visible) + 1 and after.seq == len(visible) + 1


@pytest.mark.parametrize(
    "point",
    [
        "object-before-rename",
        "segment-mid-write",
        "between-segment-and-ledger",
        "ledger-mid-write",
        "between-ledger-and-frame",
        "frame-mid-write",
        "between-sync-and-sealed-mark",
    ],
)
def test_a_crash_between_write_stages_loses_nothing_committed(tmp_path, point) -> None:
    committed = acknowledged(_child(tmp_path / "store", point))
    assert len(committed) == 3
    _check(tmp_path / "store", committed)


def test_random_kills_lose_no_committed_run(tmp_path, request) -> None:
    trials = request.config.getoption("--crash-trials")
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    for trial in range(trials):
        # A store of its own per trial keeps each check's cost flat; two kills per store
        # show a store survives repeated crashes.
        store = tmp_path / f"store-{trial}"
        committed: list[str] = []
        for _ in range(2):
            committed += kill_after(_child(store, "random"), rng.uniform(0.4, 1.0))
            _check(store, committed)
