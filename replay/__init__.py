"""pipeline-replay: snapshot every run of an inference pipeline, replay it exactly."""

from replay.bundle import BundleError, MalformedBundleError
from replay.capture import RecordResult, record
from replay.compare import RunDiff, diff
from replay.container import Limits, replay_in_container
from replay.context import ClockWarning, RunContext
from replay.engine import ReplayReport, StepResult, replay
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
from replay.models import Model
from replay.pipeline import Pipeline, Step
from replay.store import Store
from replay.timetravel import at, run_as_of

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
    "run_as_of",
]
