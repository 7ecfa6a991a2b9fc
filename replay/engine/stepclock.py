"""A step's duration without the imports its call happens to trigger.

A replay runs each step in a process that has not run it yet: the first call of a step can
import what the recording process had already imported (pyarrow imports pandas the first
time it meets a numpy array, a step may import a library lazily), and that import, paid
once per process, is not the step's work. ``StepClock`` measures the wall time of a call
minus the time spent loading modules during it, on the calling thread.

Imports are timed at CPython's one entry for loading a module that is not yet in
``sys.modules`` (``importlib._bootstrap._find_and_load``, looked up by name on every
import, from ``import`` statements and ``importlib.import_module`` alike); only the
outermost import of a thread is counted. On an interpreter that does not look it up there,
nothing is subtracted and durations are plain wall time.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

_local = threading.local()  # per thread: ns spent importing, and whether inside an import
_install_lock = threading.Lock()


def _importing_ns() -> int:
    ns: int = getattr(_local, "ns", 0)
    return ns


def _timed(find_and_load: Callable[..., Any]) -> Callable[..., Any]:
    def find_and_load_timed(name: str, import_: Any) -> Any:
        if getattr(_local, "inside", False):
            return find_and_load(name, import_)
        _local.inside = True
        t0 = time.perf_counter_ns()
        try:
            return find_and_load(name, import_)
        finally:
            _local.ns = _importing_ns() + time.perf_counter_ns() - t0
            _local.inside = False

    find_and_load_timed.__wrapped__ = find_and_load  # type: ignore[attr-defined]
    return find_and_load_timed


def install() -> None:
    """Start timing imports in this process (once; later calls do nothing)."""
    bootstrap = sys.modules.get("_frozen_importlib")
    with _install_lock:
        current = getattr(bootstrap, "_find_and_load", None)
        if current is None or hasattr(current, "__wrapped__"):
            return
        bootstrap._find_and_load = _timed(current)  # type: ignore[union-attr]


class StepClock:
    """``with StepClock() as clock: ...`` then ``clock.ns``: the block's wall time, less
    the imports it triggered on this thread."""

    def __init__(self) -> None:
        install()
        self.ns = 0
        self.imports_ns = 0

    def __enter__(self) -> StepClock:
        self._imports0 = _importing_ns()
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        wall = time.perf_counter_ns() - self._t0
        self.imports_ns = _importing_ns() - self._imports0
        self.ns = max(wall - self.imports_ns, 0)
