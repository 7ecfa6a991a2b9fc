"""pipeline-replay: snapshot every run of an inference pipeline, replay it exactly.

The public names below are imported on first use (PEP 562), so that a command that needs
none of them (``replay --help``) does not import pyarrow, DuckDB and the rest.

Every command of the ``replay`` CLI is the function of the same name here (``replay runs`` is
``replay.runs``); a subcommand of a group is the group and the subcommand joined by an
underscore, hyphens read as underscores (``replay trust allow-store`` is
``replay.trust_allow_store``). ``at`` only finds the run deciding at a time; ``run_at``
finds and replays it, as the ``at`` command does (its recorded code runs), and
``run_as_of`` runs new rows through the pipeline as deployed then (``at --input``).
``run`` is ``replay run``: from a store or a verified bundle, here or in the recorded
image; ``replay`` is its in-process core. Only ``replay demo`` has no function: it is a
guided tour of the commands, told on the terminal.
"""

import importlib
import typing

from replay.errors import (
    CaptureError,
    CatalogError,
    ClusterError,
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

if typing.TYPE_CHECKING:
    from replay.capture.record import RecordResult, record
    from replay.catalog.compact import Compaction, compact
    from replay.catalog.queries import find, init, reindex, runs, show, sql
    from replay.catalog.repair import Checkup, doctor
    from replay.core.context import ClockWarning, RunContext
    from replay.core.keys import init_key as keys_init
    from replay.core.model import Model
    from replay.core.pipeline import Pipeline, Step
    from replay.core.trust import TrustedKey
    from replay.core.trust import add as trust_add
    from replay.core.trust import allow_store as trust_allow_store
    from replay.core.trust import list as trust_list
    from replay.core.trust import remove as trust_remove
    from replay.docker.sandbox import Limits, replay_in_container
    from replay.engine.batch.summary import BatchSummary
    from replay.engine.diff import RunDiff, diff
    from replay.engine.lineage import Lineage, lineage
    from replay.engine.replay import ReplayReport, StepResult, replay, replay_many
    from replay.engine.timetravel import at, run_as_of, run_at
    from replay.evidence.batch import batch
    from replay.evidence.bundle import BundleError, MalformedBundleError
    from replay.evidence.checks import checkpoint, seal, verify
    from replay.evidence.export import Exported, export
    from replay.evidence.run import run
    from replay.evidence.verify import Verification
    from replay.evidence.witness import Cosignature
    from replay.evidence.witness import cosign as witness_cosign
    from replay.store.checkpoint import Checkpoint
    from replay.store.seals import Epoch
    from replay.store.store import Store

# Where each name lives: "module" holds it under the same name, "module:name" under another
# (the group commands, whose modules say ``trust.add``).
_WHERE = {
    "BatchSummary": "engine.batch.summary",
    "batch": "evidence.batch",
    "BundleError": "evidence.bundle",
    "MalformedBundleError": "evidence.bundle",
    "RecordResult": "capture.record",
    "record": "capture.record",
    "Compaction": "catalog.compact",
    "compact": "catalog.compact",
    "find": "catalog.queries",
    "init": "catalog.queries",
    "reindex": "catalog.queries",
    "runs": "catalog.queries",
    "show": "catalog.queries",
    "sql": "catalog.queries",
    "Checkup": "catalog.repair",
    "doctor": "catalog.repair",
    "keys_init": "core.keys:init_key",
    "TrustedKey": "core.trust",
    "trust_add": "core.trust:add",
    "trust_allow_store": "core.trust:allow_store",
    "trust_list": "core.trust:list",
    "trust_remove": "core.trust:remove",
    "RunDiff": "engine.diff",
    "diff": "engine.diff",
    "Lineage": "engine.lineage",
    "lineage": "engine.lineage",
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
    "Checkpoint": "store.checkpoint",
    "Epoch": "store.seals",
    "Store": "store.store",
    "at": "engine.timetravel",
    "run_as_of": "engine.timetravel",
    "run_at": "engine.timetravel",
    "checkpoint": "evidence.checks",
    "seal": "evidence.checks",
    "verify": "evidence.checks",
    "Exported": "evidence.export",
    "export": "evidence.export",
    "run": "evidence.run",
    "Verification": "evidence.verify",
    "Cosignature": "evidence.witness",
    "witness_cosign": "evidence.witness:cosign",
}


def _where(name: str) -> tuple[str, str]:
    """The module of a public name (``replay.<module>``) and its name there."""
    module, _, there = _WHERE[name].partition(":")
    return f"replay.{module}", there or name


def __getattr__(name: str) -> typing.Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'replay' has no attribute {name!r}")
    module, there = _where(name)
    value = getattr(importlib.import_module(module), there)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "BatchSummary",
    "BundleError",
    "CaptureError",
    "CatalogError",
    "Checkpoint",
    "Checkup",
    "ClockWarning",
    "ClusterError",
    "Compaction",
    "ContainerError",
    "ContainerFailedError",
    "CorruptionError",
    "Cosignature",
    "DataVersionError",
    "EngineUnavailableError",
    "Epoch",
    "Exported",
    "ImageMissingError",
    "ImageTarError",
    "InputError",
    "Limits",
    "Lineage",
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
    "TrustedKey",
    "UnsafeStoreError",
    "UntrustedSignerError",
    "UsageError",
    "Verification",
    "__version__",
    "at",
    "batch",
    "checkpoint",
    "compact",
    "diff",
    "doctor",
    "export",
    "find",
    "init",
    "keys_init",
    "lineage",
    "record",
    "reindex",
    "replay",
    "replay_in_container",
    "replay_many",
    "run",
    "run_as_of",
    "run_at",
    "runs",
    "seal",
    "show",
    "sql",
    "trust_add",
    "trust_allow_store",
    "trust_list",
    "trust_remove",
    "verify",
    "witness_cosign",
]
