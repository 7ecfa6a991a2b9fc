"""pipeline-replay: snapshot every run of an inference pipeline, replay it exactly.

The public names below are imported on first use (PEP 562), so that a command that needs
none of them (``replay --help``) does not import pyarrow, DuckDB and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from replay.errors import (
    CaptureError,
    CatalogError,
    ContainerError,
    ContainerFailedError,
    CorruptionError,
    DataVersionError,
    EngineUnavailableError,
    ImageMissingError,
    ImageTarError,
    InputError,
    NotFoundError,
    PipelineError,
    ReadOnlyStoreError,
    ReplayError,
    StepError,
    StoreError,
    StoreFormatError,
    TapeMismatch,
    UnsafeStoreError,
    UntrustedSignerError,
    UsageError,
)

if TYPE_CHECKING:
    from replay.capture.record import RecordResult, record
    from replay.core.context import ClockWarning, RunContext
    from replay.core.model import Model
    from replay.core.pipeline import Pipeline, Step
    from replay.docker.sandbox import Limits, replay_in_container
    from replay.engine.diff import RunDiff, diff
    from replay.engine.replay import ReplayReport, StepResult, replay, replay_many
    from replay.engine.timetravel import at, run_as_of
    from replay.evidence.bundle import BundleError, MalformedBundleError
    from replay.store.store import Store

_WHERE = {
    "BundleError": "evidence.bundle",
    "MalformedBundleError": "evidence.bundle",
    "RecordResult": "capture.record",
    "record": "capture.record",
    "RunDiff": "engine.diff",
    "diff": "engine.diff",
    "Limits": "docker.sandbox",
    "replay_in_container": "docker.sandbox",
    "ClockWarning": "core.context",
    "RunContext": "core.context",
    "ReplayReport": "engine.replay",
    "StepResult": "engine.replay",
    "replay": "engine.replay",
    "replay_many": "engine.replay",
    "Model": "core.model",
    "Pipeline": "core.pipeline",
    "Step": "core.pipeline",
    "Store": "store.store",
    "at": "engine.timetravel",
    "run_as_of": "engine.timetravel",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'replay' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"replay.{_WHERE[name]}"), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "BundleError",
    "CaptureError",
    "CatalogError",
    "ClockWarning",
    "ContainerError",
    "ContainerFailedError",
    "CorruptionError",
    "DataVersionError",
    "EngineUnavailableError",
    "ImageMissingError",
    "ImageTarError",
    "InputError",
    "Limits",
    "MalformedBundleError",
    "Model",
    "NotFoundError",
    "Pipeline",
    "PipelineError",
    "ReadOnlyStoreError",
    "RecordResult",
    "ReplayError",
    "ReplayReport",
    "RunContext",
    "RunDiff",
    "Step",
    "StepError",
    "StepResult",
    "Store",
    "StoreError",
    "StoreFormatError",
    "TapeMismatch",
    "UnsafeStoreError",
    "UntrustedSignerError",
    "UsageError",
    "__version__",
    "at",
    "diff",
    "record",
    "replay",
    "replay_in_container",
    "replay_many",
    "run_as_of",
]
