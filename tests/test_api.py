"""The public API is exactly what replay/__init__.py lists."""

import importlib
import types

import replay

# Pinned: a name added to or dropped from the package is a decision this list records.
PUBLIC = [
    # the errors (replay.errors, and the two bundle errors of replay.evidence.bundle)
    "BundleError",
    "CaptureError",
    "CatalogError",
    "ClusterError",
    "Compaction",
    "ContainerError",
    "ContainerFailedError",
    "CorruptionError",
    "DataVersionError",
    "EngineUnavailableError",
    "ImageMissingError",
    "ImageTarError",
    "InputError",
    "MalformedBundleError",
    "NotFoundError",
    "PipelineError",
    "ReadOnlyStoreError",
    "ReplayError",
    "StepError",
    "StoreError",
    "StoreFormatError",
    "TapeMismatch",
    "UnsafeStoreError",
    "UntrustedSignerError",
    "UsageError",
    # what a pipeline is declared with, and what the functions return
    "BatchSummary",
    "Checkpoint",
    "Checkup",
    "ClockWarning",
    "Cosignature",
    "Epoch",
    "Exported",
    "Limits",
    "Lineage",
    "Model",
    "Pipeline",
    "RecordResult",
    "ReplayReport",
    "RunContext",
    "RunDiff",
    "Step",
    "StepResult",
    "Store",
    "TrustedKey",
    "Verification",
    "__version__",
    # one function per CLI command (tests/test_cli_surface.py holds the pairing)
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
    "run",
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
    # and the library's own
    "replay",
    "replay_in_container",
    "replay_many",
    "run_as_of",
    "run_at",
]


def test_all_is_exactly_the_pinned_list() -> None:
    assert replay.__all__ == sorted(PUBLIC)


def test_every_public_name_is_given_and_nothing_else() -> None:
    # The package imports its names on first use (PEP 562): what it can give is the lazy
    # map, the errors it imports, and the version. Subpackages become attributes when
    # imported, as for any package; every other name without an underscore is public.
    for name in replay.__all__:
        getattr(replay, name)
    given = {
        n
        for n, v in vars(replay).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert given | {"__version__"} == set(replay.__all__)
    assert set(replay._WHERE) <= set(replay.__all__)


def test_every_public_name_resolves_to_what_its_module_defines() -> None:
    for name in replay._WHERE:
        module, there = replay._where(name)
        assert getattr(replay, name) is getattr(importlib.import_module(module), there)
    assert dir(replay) == sorted(replay.__all__)


def test_every_public_function_is_typed_and_documented() -> None:
    for name in replay.__all__:
        value = getattr(replay, name)
        if callable(value) and not isinstance(value, type):
            assert value.__doc__, f"replay.{name} has no docstring"
            assert "return" in value.__annotations__, f"replay.{name} has no return type"


def test_every_exported_error_derives_from_replay_error() -> None:
    from replay import errors

    for name, code in errors.EXIT_CODES.items():
        cls = getattr(errors, name)
        assert issubclass(cls, replay.ReplayError)
        assert code not in (0, 1) or cls is replay.ReplayError
