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
    from replay.bundle import BundleError, MalformedBundleError
    from replay.capture import RecordResult, record
    from replay.compare import RunDiff, diff
    from replay.container import Limits, replay_in_container
    from replay.context import ClockWarning, RunContext
    from replay.engine import ReplayReport, StepResult, replay, replay_many
    from replay.models import Model
    from replay.pipeline import Pipeline, Step
    from replay.store import Store
    from replay.timetravel import at, run_as_of

_WHERE = {
    "BundleError": "bundle", "MalformedBundleError": "bundle",
    "RecordResult": "capture", "record": "capture", "RunDiff": "compare", "diff": "compare",
    "Limits": "container", "replay_in_container": "container",
    "ClockWarning": "context", "RunContext": "context",
    "ReplayReport": "engine", "StepResult": "engine", "replay": "engine",
    "replay_many": "engine",
    "Model": "models", "Pipeline": "pipeline", "Step": "pipeline", "Store": "store",
    "at": "timetravel", "run_as_of": "timetravel",
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
