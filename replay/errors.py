"""The one error tree of pipeline-replay.

    ReplayError                      exit 3   base: something went wrong, message says what next
    ├── UsageError                   exit 2   bad argument: malformed time, bad swap spec, ...
    ├── NotFoundError                exit 4   unknown or ambiguous run id, no run at a time, ...
    ├── InputError                   exit 5   unreadable input file, wrong schema, bad record key
    ├── PipelineError                exit 6   pipeline module missing / raising / not a Pipeline
    │   ├── StepError                exit 6   a step raised or returned the wrong type
    │   └── TapeMismatch             exit 6   (replay.core.context) a replayed step asked the world
    │                                         something it did not ask when recorded (a replay
    │                                         reports it as a diverged step: exit 1)
    ├── CaptureError                 exit 7   something a run depends on cannot be captured
    │   └── DataVersionError         exit 7   a DVC-tracked file cannot be versioned or fetched
    ├── StoreError                   exit 8   the store cannot be opened or written
    │   ├── StoreFormatError         exit 8   a store written by a newer pipeline-replay
    │   ├── ReadOnlyStoreError       exit 8   a store opened read-only was asked to write
    │   ├── UnsafeStoreError         exit 8   a store another user owns, not allowed
    │   └── CorruptionError          exit 9   bytes no longer match their digest, torn files
    ├── CatalogError                 exit 10  the DuckDB catalog or a SQL query failed
    ├── ContainerError               exit 11  an in-container replay cannot run
    │   ├── EngineUnavailableError   exit 11  no Docker engine answers (daemon down, no socket)
    │   ├── ImageMissingError        exit 12  the recorded image is not on the engine, no pull
    │   └── ContainerFailedError     exit 13  the container was killed (memory limit) or failed
    ├── ImageTarError                exit 15  (replay.docker.imagetar) a docker save tarball that is
    │                                         not the image it claims (a bundle holding one
    │                                         is refused)
    ├── ClusterError                 exit 16  a bulk replay's Dask cluster cannot be reached, or it
    │                                         failed mid-job (``replay batch --resume`` goes on)
    ├── UntrustedSignerError         exit 14  a bundle consistent in every byte, signed by a key
    │                                         nobody pinned (trust store, REPLAY_TRUSTED_KEYS,
    │                                         --key): nothing of it is replayed
    └── BundleError                  exit 15  (replay.evidence.bundle) a bundle refused: malformed,
        │                                     unsafe, or failing verification
        └── MalformedBundleError     exit 15  (replay.evidence.bundle) not even safe to read

`replay verify` itself exits 1 when a check fails, 15 for a bundle it would not read, and 14
for a consistent bundle, or a store checkpoint, whose signer is not pinned.

Every error carries its data as attributes and a message ending in what to do next. The CLI
catches ReplayError in one place and exits with `exit_code`; nothing else reaches the user
as a traceback: third-party errors that get that far are mapped in one table
(`replay.cli.app.translate`), anything else is an internal error, exit 70.
"""

from __future__ import annotations


class ReplayError(Exception):
    """Base of every error pipeline-replay raises on purpose."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class UsageError(ReplayError):
    exit_code = 2


class NotFoundError(ReplayError):
    exit_code = 4


class InputError(ReplayError):
    exit_code = 5


class PipelineError(ReplayError):
    exit_code = 6


class StepError(PipelineError):
    def __init__(self, step: str, message: str, *, hint: str = "") -> None:
        super().__init__(f"step {step!r}: {message}", hint=hint)
        self.step = step
        self.run_id: str | None = None  # set once the failed run is committed


class TapeMismatch(PipelineError):
    """A replayed step asked the world something it did not ask when recorded."""


class CaptureError(ReplayError):
    exit_code = 7


class DataVersionError(CaptureError):
    pass


class StoreError(ReplayError):
    exit_code = 8


class StoreFormatError(StoreError):
    pass


class ReadOnlyStoreError(StoreError):
    pass


class UnsafeStoreError(StoreError):
    """A store another user owns, not allowed (replay.core.ownership)."""


# What to do about damaged bytes, once they are listed (the hint `verify --store` gives).
RESTORE = (
    "restore it from a backup or replica of the store: recorded bytes cannot be made again, "
    "and `replay doctor` repairs only what a crash leaves"
)


class CorruptionError(StoreError):
    exit_code = 9
    LIST = "run `replay verify --store` to list every damaged file"

    def __init__(self, path: str, message: str, *, hint: str = "") -> None:
        super().__init__(f"{path}: {message}", hint=hint or self.LIST)
        self.path = path


class CatalogError(ReplayError):
    exit_code = 10


class ContainerError(ReplayError):
    exit_code = 11


class EngineUnavailableError(ContainerError):
    pass


class ImageMissingError(ContainerError):
    exit_code = 12


class ContainerFailedError(ContainerError):
    exit_code = 13


class ImageTarError(ReplayError):
    """The tarball is not the image it claims to be (or not an image at all)."""

    exit_code = 15


class ClusterError(ReplayError):
    exit_code = 16


class UntrustedSignerError(ReplayError):
    """Who is trusted is configured, never read from the evidence: a bundle whose every
    digest, proof and signature holds is still refused when no pinned key signed it."""

    exit_code = 14

    def __init__(self, signer: str, pinned: tuple[str, ...] = ()) -> None:
        which = (
            f"which is none of the pinned keys ({', '.join(pinned)})"
            if pinned
            else "and no signer is pinned (trust store empty, REPLAY_TRUSTED_KEYS unset)"
        )
        super().__init__(
            f"signer not trusted: {signer} signed this bundle, {which}",
            hint="get the bank's public key from the bank, not from the bundle, compare its "
            "key id, then pin it: `replay trust add BANK.pem --name NAME` (or --key "
            "BANK.pem for one call)",
        )
        self.signer = signer
        self.pinned = pinned


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        ReplayError,
        UsageError,
        NotFoundError,
        InputError,
        PipelineError,
        StepError,
        CaptureError,
        DataVersionError,
        StoreError,
        StoreFormatError,
        ReadOnlyStoreError,
        UnsafeStoreError,
        CorruptionError,
        CatalogError,
        ContainerError,
        EngineUnavailableError,
        ImageMissingError,
        ContainerFailedError,
        ClusterError,
        UntrustedSignerError,
        TapeMismatch,
        ImageTarError,
    )
}
