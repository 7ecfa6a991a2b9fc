"""A recording process to kill -9, for the crash suites (tests/test_crash.py on a folder store,
tests/test_crash_s3.py on S3).

The child records one-row runs into a store and prints each run id once ``record`` returned
(acknowledged). Its crash points are patches its program makes before it records:
``crash_in`` makes a function SIGKILL the process (before or after it runs) once the child is
armed, from its fourth run on, when the pipeline's params change too (a new object to write).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from conftest import label, scale

import replay

ARM_AT = 3  # runs recorded before the crash points are armed
armed = False


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_in(
    owner: Any,
    name: str,
    *,
    after: bool = False,
    when: Callable[..., bool] = lambda *args, **kwargs: True,
) -> None:
    """Once armed, a call of ``owner.name`` for which ``when`` holds kills the process, just
    before the call (or just after it returned, with ``after``)."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = armed and when(*args, **kwargs)
        if hit and not after:
            kill()
        result = original(*args, **kwargs)
        if hit and after:
            kill()
        return result

    setattr(owner, name, wrapper)


def pipeline(k: float) -> replay.Pipeline:
    return replay.Pipeline(
        "crash", [replay.Step("scale", scale, params={"k": k}), replay.Step("label", label)]
    )


def record_runs(
    location: str,
    *,
    arm: bool,
    between: Callable[[replay.Store], object] = lambda _: None,
    runs: int = 100_000,
) -> None:
    """Record ``runs`` runs into ``location`` (until killed), printing each id once
    acknowledged; with ``arm``, arm the crash points at run ARM_AT; ``between`` runs after
    each run."""
    global armed
    store = replay.Store.open(location)
    pipe = pipeline(2.0)
    for i in range(runs):
        if i == ARM_AT and arm:
            armed = True
            pipe = pipeline(3.0)
        t = pa.table({"id": [f"{os.getpid()}-{i}"], "x": [float(i)]})
        print(replay.record(pipe, t, store=store, record_key="id").run_id, flush=True)
        between(store)


def spawn(program: str) -> subprocess.Popen[str]:
    """A child running ``program`` (Python that imports this module) from the tests folder."""
    code = f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n{program}"
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def acknowledged(proc: subprocess.Popen[str]) -> list[str]:
    """The run ids a child printed, once it died; it must have been killed (not failed)."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"the child was not killed but ended:\n{err}"
    return out.split()


def kill_after(proc: subprocess.Popen[str], seconds: float) -> list[str]:
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    return acknowledged(proc)
