"""The typed records of a store: a pipeline's *spec*, a run's *manifest*, its *environment*
and the ledger *entry* that commits it.

Both are written as canonical JSON and named by digest (the spec's digest is the pipeline
version), so these values are immutable and their encoding must give back the very bytes
that were hashed: a field a record may lack is ``UNSET`` (left out), never ``None`` (written
as null). Decoding validates types, and a field an older format lacks takes its default, so
every store ever written reads through here (tests/test_golden_stores.py holds one per
format). ``Spec.components`` is the one walk over a spec's components.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Struct, UnsetType

from replay.core.digest import canonical_json
from replay.core.kinds import kind_of
from replay.errors import CorruptionError

SPEC_FORMAT = 1
MANIFEST_FORMAT = 1
ComponentKind = Literal["code", "source", "params", "module", "model", "data"]


class DvcVersion(Struct, frozen=True, forbid_unknown_fields=True):
    """Where DVC can give a file's bytes back: a repo, the git rev and the DVC md5."""

    repo: str
    rev: str
    path: str
    md5: str | None
    remote: str | None
    committed: bool


class LoaderRef(Struct, frozen=True, forbid_unknown_fields=True):
    """A model's own loader function, captured by value like step code."""

    code: str
    qualname: str
    modules: dict[str, str]
    installed: dict[str, str]


class ModelRef(Struct, frozen=True, forbid_unknown_fields=True):
    """A model a step is bound to (see replay.capture.models for the fields' meaning)."""

    kind: str  # file | folder | object
    digest: str
    format: str
    path: str | UnsetType = UNSET
    type: str | UnsetType = UNSET  # an object's class
    loader: LoaderRef | UnsetType = UNSET
    objects: list[str] | UnsetType = UNSET
    dvc: DvcVersion | UnsetType = UNSET


class DataRef(Struct, frozen=True, forbid_unknown_fields=True):
    """A data file a step is bound to; ``object`` when the store keeps its bytes."""

    path: str
    sha256: str
    format: str
    dvc: DvcVersion | None
    object: str | UnsetType | None = UNSET


class StepSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """One step of a spec: its code by value and every component it is bound to."""

    name: str
    code: str
    source: str
    qualname: str
    params: str
    models: dict[str, ModelRef]
    data: dict[str, DataRef]
    inputs: list[str]
    named_inputs: bool = False
    tolerances: dict[str, float] = {}
    modules: dict[str, str] | UnsetType = UNSET
    installed: dict[str, str] | UnsetType = UNSET


class Component(Struct, frozen=True):
    """One component of one step, as ``Spec.components`` walks them."""

    step: str
    kind: ComponentKind
    name: str
    digest: str  # what identifies it: the stored object's digest, or a data file's sha256
    stored: tuple[str, ...]  # the objects the store holds for it
    path: str | None = None
    dvc: DvcVersion | None = None

    @property
    def label(self) -> str:
        return self.kind if self.kind == self.name else f"{self.kind} {self.name}"


class Spec(Struct, frozen=True, forbid_unknown_fields=True):
    """A pipeline version: its steps in order, the personal columns, the decision columns."""

    format: int
    pipeline: str
    personal: list[str]
    steps: list[StepSpec]
    decisions: list[str] | UnsetType = UNSET

    def step(self, name: str) -> StepSpec | None:
        return next((s for s in self.steps if s.name == name), None)

    def components(self) -> Iterator[Component]:
        """Every component of every step, in step order: code, source, params, module
        sources, models (with a folder's files and a loader's code) and data files."""
        for step in self.steps:
            yield from step_components(step)

    def objects(self, *, data: bool = True) -> list[str]:
        """Every object the spec names (``data`` False: but the data files' kept bytes,
        which may themselves be personal)."""
        return [d for c in self.components() if data or c.kind != "data" for d in c.stored]


def step_components(step: StepSpec) -> Iterator[Component]:
    name = step.name
    for kind, digest in (("code", step.code), ("source", step.source), ("params", step.params)):
        yield Component(name, kind, kind, digest, (digest,))  # type: ignore[arg-type]
    for module, digest in (step.modules or {}).items():
        yield Component(name, "module", module, digest, (digest,))
    for label, model in step.models.items():
        stored = (model.digest, *(model.objects or ()))
        yield Component(
            name, "model", label, model.digest, stored, model.path or None, model.dvc or None
        )
    for label, data in step.data.items():
        kept = (data.object,) if data.object else ()
        yield Component(name, "data", label, data.sha256, kept, data.path, data.dvc)


class InputRecord(Struct, frozen=True, forbid_unknown_fields=True):
    digest: str
    rows: int
    parts: dict[str, Any] | UnsetType = UNSET  # the personal columns' digests


class StepRecord(Struct, frozen=True, forbid_unknown_fields=True):
    """What one step did in one run: what it read, wrote and drew, and how long it took."""

    name: str
    inputs: list[str]
    output: str | None
    rows: int | None
    duration_ns: int
    seeds: dict[str, int]
    calls: int
    output_parts: dict[str, Any] | UnsetType = UNSET


class Failure(Struct, frozen=True, forbid_unknown_fields=True):
    step: str | None
    message: str


class Manifest(Struct, frozen=True, forbid_unknown_fields=True):
    """One run: which pipeline version ran on which input, at what logical time, in which
    environment, and what each step produced."""

    format: int
    run_id: str
    pipeline: str
    version: str
    status: str  # ok | failed
    started_ns: int
    ended_ns: int
    clock: str
    record_key: str | None
    input: InputRecord
    env: str
    steps: list[StepRecord]
    tags: dict[str, str]
    kind: str | UnsetType = UNSET  # older runs: production
    tape: str | UnsetType = UNSET
    error: Failure | UnsetType = UNSET

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def run_kind(self) -> str:
        return kind_of(self.kind, self.tags)


class BlockPlace(Struct, frozen=True, forbid_unknown_fields=True):
    """Where a commit group's block lies in a segment log, and the digest of its header."""

    segment: str
    offset: int
    length: int
    header: str


class Entry(Struct, frozen=True, forbid_unknown_fields=True):
    """One ledger line: a committed run, where its block is, its manifest by digest, and the
    hash chain (``hash`` covers every other field and the previous entry's ``prev``).
    The ledger hashes the line's JSON; this is a reader's view of a line already checked."""

    seq: int
    run_id: str
    block: BlockPlace
    manifest_sha256: str
    prev: str
    hash: str


class PythonInfo(Struct, frozen=True, forbid_unknown_fields=True):
    version: str
    implementation: str
    build: list[str]
    executable: str


class PlatformInfo(Struct, frozen=True, forbid_unknown_fields=True):
    system: str
    release: str
    machine: str
    libc: list[str]

    @property
    def summary(self) -> str:
        return f"{self.system} {self.release} {self.machine}"


class CpuInfo(Struct, frozen=True, forbid_unknown_fields=True):
    model: str
    flags: list[str]
    count: int | None


class Packages(Struct, frozen=True, forbid_unknown_fields=True):
    count: int
    lock_sha256: str  # the digest of the package lock, an object when the store keeps it


class ImageRef(Struct, frozen=True, forbid_unknown_fields=True):
    digest: str  # a repo digest or an image ID, or why there is none
    id: str | UnsetType | None = UNSET
    source: str | UnsetType = UNSET


class Kernels(Struct, frozen=True, forbid_unknown_fields=True):
    env: dict[str, str | None]  # the variables that choose numeric kernels
    libraries: dict[str, Any]  # each loaded library's own report of its kernels


class Environment(Struct, frozen=True, forbid_unknown_fields=True):
    """Where a run ran: interpreter, machine, numeric libraries and their threads, packages
    and container image. ``blas`` is as numpy and threadpoolctl report it."""

    python: PythonInfo
    platform: PlatformInfo
    cpu: CpuInfo
    blas: dict[str, Any]
    threads: dict[str, str | None]
    packages: Packages
    image: ImageRef
    kernels: Kernels | UnsetType = UNSET  # older runs did not record them


T = TypeVar("T", bound=Struct)


def decode(kind: type[T], raw: bytes | str, where: str) -> T:
    """A record from its stored JSON bytes; bytes that are not one is a corrupt store."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:
        raise CorruptionError(where, f"not a valid {kind.__name__.lower()} ({exc})") from None


def convert(kind: type[T], value: Any, where: str) -> T:
    """A record from JSON already parsed (a ledger entry's manifest, a report's copy)."""
    try:
        return msgspec.convert(value, type=kind)
    except msgspec.ValidationError as exc:
        raise CorruptionError(where, f"not a valid {kind.__name__.lower()} ({exc})") from None


def plain(value: Struct) -> dict[str, Any]:
    """The record as JSON-ready dicts and lists (what ``--json`` prints)."""
    out: dict[str, Any] = msgspec.to_builtins(value)
    return out


def encode(value: Struct) -> bytes:
    """The record's canonical JSON: the bytes its digest names."""
    return canonical_json(plain(value))


# msgspec writes strings (every code point, escapes alike, raw UTF-8; a lone surrogate fails
# alike), integers of any size, booleans, null, lists and dicts keyed by strings (sorted by
# code point) byte for byte as ``canonical_json`` does, ten times faster; but floats in
# another form (0.00001 for 1e-05) and dicts keyed otherwise not at all.
_SORTED = msgspec.json.Encoder(order="sorted")


def manifest_json(manifest: dict[str, Any]) -> bytes:
    """``canonical_json`` of a manifest that ``record`` made (``plain(Manifest)``). Only a
    manifest whose values all have their declared types is encoded by msgspec: no field of
    one is a float, and the open ``parts`` hold only the digests and column names record
    puts there. Anything else (a tag that is not a string) takes ``canonical_json``."""
    try:
        msgspec.convert(manifest, Manifest)
    except msgspec.ValidationError:
        return canonical_json(manifest)
    return _SORTED.encode(manifest)
