"""pipeline-replay: snapshot every run of an inference pipeline, replay it exactly."""

from replay.capture import RecordResult, record
from replay.context import RunContext
from replay.errors import ReplayError
from replay.pipeline import Pipeline, Step
from replay.store import Store

__version__ = "0.1.0"

__all__ = [
    "Pipeline",
    "RecordResult",
    "ReplayError",
    "RunContext",
    "Step",
    "Store",
    "__version__",
    "record",
]
