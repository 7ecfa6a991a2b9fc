"""pipeline-replay: snapshot every run of an inference pipeline, replay it exactly."""

from replay.capture import RecordResult, record
from replay.compare import RunDiff, diff
from replay.container import Limits, replay_in_container
from replay.context import RunContext
from replay.engine import ReplayReport, StepResult, replay
from replay.errors import ReplayError
from replay.models import Model
from replay.pipeline import Pipeline, Step
from replay.store import Store
from replay.timetravel import at, run_as_of

__version__ = "0.1.0"

__all__ = [
    "Limits",
    "Model",
    "Pipeline",
    "RecordResult",
    "ReplayError",
    "ReplayReport",
    "RunContext",
    "RunDiff",
    "Step",
    "StepResult",
    "Store",
    "__version__",
    "at",
    "diff",
    "record",
    "replay",
    "replay_in_container",
    "run_as_of",
]
