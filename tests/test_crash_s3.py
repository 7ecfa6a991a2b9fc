"""kill -9 at any point of the S3 write path loses no acknowledged run and seals none twice.

The crash suite of tests/test_crash.py, on a store on S3 (a real moto endpoint in its own
process, tests/s3_endpoint.py). A child process records runs, prints each run id once
``record`` returned (acknowledged: its log object's PUT returned), and seals what is pending
after every second run, signed, as a writer sealing beside its writes does. The parent kills
it with SIGKILL, at a random moment after its first run or at a stage of the write path (its
writer registered and no object yet; a run's objects PUT and not its log object; the log
object's PUT cut in the middle of its body, or returned and not acknowledged; a seal before
its epoch's PUT, or between the epoch and its kept checkpoint; the local mirror between an
epoch's lines and its state), then seals and checks: every acknowledged run is in the signed
ledger exactly once and replays exact, the store verifies, and a new writer process records
into it, which is sealed and checked too. ``--s3-crash-trials N`` sets how many stores are
killed twice at random, a fresh bucket each (default 1; CI's crash step runs more).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from crashing import acknowledged, spawn
from s3_endpoint import new_bucket

import replay
from replay.catalog.check import verify_store
from replay.core import keys
from replay.store import checkpoint, seals

CHILD = """
import socket, urllib.parse
import replay.store.fs, replay.store.mirror, replay.store.s3, replay.store.seals
import crashing
from crashing import crash_in

POINT = {point!r}


def putting(folder):
    return lambda fs, path, data: path.startswith(folder + "/")


def tear(request, **kwargs):
    # The PUT of a log object is sent with its full length but half its body, then the
    # process dies: the endpoint holds a request cut in the middle.
    if not (crashing.armed and "/segments/" in request.url):
        return None
    url = urllib.parse.urlsplit(request.url)
    body = request.body if isinstance(request.body, bytes) else request.body.read()
    fields = {{k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}}
    head = "".join(f"{{k}}: {{v}}\\r\\n" for k, v in fields.items() if k != "Expect")
    start = f"PUT {{url.path}}?{{url.query}} HTTP/1.1\\r\\nHost: {{url.netloc}}\\r\\n{{head}}\\r\\n"
    sock = socket.create_connection((url.hostname, url.port))
    sock.sendall(start.encode("latin-1") + body[: len(body) // 2])
    crashing.kill()


S3FS = replay.store.s3.S3FS
if POINT == "after-writer-registered":
    crash_in(S3FS, "put_if_absent", after=True, when=putting("writers"))
    crashing.armed = True  # a writer registers before its first object only
elif POINT == "before-log-put":  # after its new objects' PUTs
    crash_in(S3FS, "put_if_absent", when=putting("segments"))
elif POINT == "mid-log-put":
    replay.store.s3._client().meta.events.register("before-send.s3.PutObject", tear)
elif POINT == "after-log-put":
    crash_in(S3FS, "put_if_absent", after=True, when=putting("segments"))
elif POINT == "before-epoch-put":
    crash_in(S3FS, "put_if_absent", when=putting("seal"))
elif POINT == "between-epoch-and-checkpoint":
    crash_in(replay.store.seals.checkpoint, "keep")
elif POINT == "mirror-mid-epoch":
    state = replay.store.mirror.STATE
    crash_in(replay.store.fs.LocalFS, "write_atomic", when=lambda fs, path, data: path == state)

runs = 0


def seal_every_second(store):
    global runs
    runs += 1
    if runs % 2 == 0:
        replay.seal(store)  # signed with $REPLAY_SIGNING_KEY


crashing.record_runs({store!r}, arm=POINT != "random", between=seal_every_second)
"""

POINTS = [
    "after-writer-registered",
    "before-log-put",
    "mid-log-put",
    "after-log-put",
    "before-epoch-put",
    "between-epoch-and-checkpoint",
    "mirror-mid-epoch",
]


@pytest.fixture
def signer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The key the writers' seals sign with (theirs, and the parent's after each kill)."""
    key = keys.init_key(tmp_path / "sealer.pem")
    monkeypatch.setenv("REPLAY_SIGNING_KEY", str(key))
    return key


def _child(url: str, crash_at: str) -> subprocess.Popen[str]:
    return spawn(CHILD.format(store=url, point=crash_at))


def _check(url: str, key: Path, acked: list[str], kills: int) -> str:
    """Seal what the killed writers left and check the store; then let a new writer process
    record a run, seal and check again. The new run's id."""
    store = replay.Store.open(url)
    signed_by = keys.key_id(keys.load_private(key).public_key())
    for second in (False, True):
        replay.seal(store, key)
        sealed = Counter(entry["run_id"] for _, entry in store.ledger.read())
        assert set(acked) <= set(sealed), "an acknowledged run was lost"
        assert max(sealed.values(), default=1) == 1, "a run was sealed twice"
        # At most one run a kill was stored and not acknowledged: the one whose PUT landed.
        assert len(sealed) - len(acked) <= kills
        kept = [cp.tree_size for _, cp in checkpoint.stored(store)]
        assert max(kept, default=0) == len(sealed), "the ledger's tail is not signed"
        report = verify_store(store, signers=(signed_by,) if sealed else None)
        assert report["sealing"]["sealed"] == len(sealed) and report["sealing"]["unsealed"] == 0
        for run_id in acked[-2:]:
            assert replay.replay(store, run_id).verdict == "exact"
        if not second:
            acked = [*acked, _record_one(url)]
    return acked[-1]


def _record_one(url: str) -> str:
    """A run recorded by a writer process of its own (which exits, retired); its id."""
    writer = spawn(f"import crashing\ncrashing.record_runs({url!r}, arm=False, runs=1)")
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    (run_id,) = out.split()
    return run_id


def _kill_while_recording(proc: subprocess.Popen[str], seconds: float) -> list[str]:
    """Kill ``proc`` ``seconds`` after its first acknowledged run (after its start up, so
    that the moment falls among its writes and seals); the runs it acknowledged."""
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    return first + acknowledged(proc)


def test_a_seal_keeps_the_checkpoint_of_an_epoch_whose_sealer_died_before_keeping_it(
    s3_url: str, signer: Path
) -> None:
    _record_one(s3_url)
    store = replay.Store.open(s3_url)
    assert store.remote is not None
    private = keys.load_private(signer)
    found = seals.pending(store.remote, seals.NONE)
    epoch, body = seals.build(seals.NONE, found, private)
    assert store.remote.put_if_absent(seals.name(1), body)  # and killed before keeping it
    assert store.seal(private) is None  # nothing left to seal
    assert [cp.tree_size for _, cp in checkpoint.stored(store)] == [epoch.size]


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_at_a_stage_of_the_s3_write_path_loses_nothing_acknowledged(
    s3_url: str, signer: Path, point: str
) -> None:
    acked = acknowledged(_child(s3_url, point))
    assert len(acked) in (0, 3, 4)  # killed at its registration, its 4th run or the seal after
    _check(s3_url, signer, acked, kills=1)


def test_random_kills_lose_no_acknowledged_run_on_s3(
    s3_endpoint: str, s3_url: str, signer: Path, request: pytest.FixtureRequest
) -> None:
    trials = request.config.getoption("--s3-crash-trials")
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    for _ in range(trials):
        url = f"s3://{new_bucket(s3_endpoint)}/bank/decisions"  # a fresh store per trial
        acked: list[str] = []
        for kill in range(1, 3):
            acked += _kill_while_recording(_child(url, "random"), rng.uniform(0.0, 1.5))
            acked.append(_check(url, signer, acked, kills=kill))
