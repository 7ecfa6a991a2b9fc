"""Rebuilding a recorded run from the store alone: its manifest, rows, tape and components.

Nothing here looks at the live workspace's code or models: step code comes from its recorded
pickle, models from their recorded bytes, data from the store or from DVC at the recorded rev
(the workspace file is used only when its bytes still hash to the recorded sha256). Loaded
components are kept by digest in the store's cache (replay.store.cache, bounded in bytes), so
replaying many runs of one version loads each once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from replay.capture import dvc as dvcdata
from replay.capture.models import load as load_recorded_model
from replay.core import tables
from replay.core.digest import sha256, table_digest
from replay.core.manifest import (
    DataRef,
    Entry,
    Environment,
    Manifest,
    ModelRef,
    Spec,
    StepSpec,
    convert,
    decode,
    plain,
)
from replay.core.pipeline import INPUT, Step
from replay.core.unpickle import unpickle_trusted
from replay.errors import CorruptionError, DataVersionError, NotFoundError
from replay.store.segments import Block
from replay.store.store import Store

STEP_BYTES = 1 << 10  # a declared Step beside its cached code: a few small dicts


@dataclass(frozen=True)
class RecordedRun:
    """A committed run as the store holds it."""

    entry: Entry
    manifest: Manifest
    spec: Spec
    block: Block

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def clock(self) -> datetime:
        return datetime.fromisoformat(self.manifest.clock)

    def table(self, kind: str) -> pa.Table:
        """A recorded table (``input`` or a step's output), checked against the manifest."""
        expected = (
            self.manifest.input.digest
            if kind == INPUT
            else next(s.output for s in self.manifest.steps if s.name == kind)
        )
        table = self.block.table(self.run_id, kind)
        if table_digest(table, self.personal) != expected:
            raise CorruptionError(
                self.block.where,
                f"recorded {kind!r} rows of run {self.run_id} do not match their manifest digest",
            )
        return table

    @property
    def personal(self) -> tuple[str, ...]:
        return tuple(self.spec.personal)

    def has_table(self, kind: str) -> bool:
        return kind in self.block.kinds(self.run_id)

    def tape(self) -> dict[str, list[dict[str, Any]]]:
        if not self.manifest.tape:
            return {}
        blob = self.block.blob(self.run_id, "tape")
        if sha256(blob) != self.manifest.tape:
            raise CorruptionError(
                self.block.where, f"tape of run {self.run_id} does not match its digest"
            )
        return orjson.loads(blob)  # type: ignore[no-any-return]


def load_run(store: Store, entry: dict[str, Any]) -> RecordedRun:
    """A committed run, once its ledger entry is verified (replay.store.history): callers go on
    to unpickle the code and models it names."""
    from replay.store.history import check_entry

    check_entry(store, entry)
    run = f"run {entry['run_id']}"
    line = convert(
        Entry, {k: v for k, v in entry.items() if k != "manifest"}, f"the entry of {run}"
    )
    manifest = convert(Manifest, entry["manifest"], f"the manifest of {run}")
    return RecordedRun(
        line, manifest, load_spec(store, manifest.version), store.block(entry["block"])
    )


def load_spec(store: Store, version: str) -> Spec:
    """A pipeline version's spec, decoded once per store: objects never change."""
    spec: Spec = _cached(store, "spec", version, lambda raw: decode(Spec, raw, version))
    return spec


def load_environment(store: Store, digest: str) -> Environment:
    """A run's environment, decoded once per store: objects never change."""
    env: Environment = _cached(store, "env", digest, lambda raw: decode(Environment, raw, digest))
    return env


def _cached(store: Store, kind: str, digest: str, make: Callable[[bytes], Any]) -> Any:
    """``make`` of an object's bytes, kept in the store's cache by its stored size."""

    def load() -> tuple[Any, int]:
        raw = store.get_object(digest)
        return make(raw), len(raw)

    return store.cache.load((kind, digest), load)


def load_code(store: Store, step: StepSpec) -> Step:
    """The recorded step function, unpickled from its verified bytes (this runs its code),
    declared as it was; kept in the store's cache, as declaring one inspects the function."""
    inputs = tuple(step.inputs) if step.named_inputs else None
    data = {name: d.path for name, d in step.data.items()}
    shape = (step.name, step.code, step.params, inputs, *step.models)
    key = ("step", shape, tuple(step.tolerances.items()), tuple(data.items()))

    def declare() -> tuple[Step, int]:
        fn = _cached(store, "code", step.code, lambda raw: unpickle_trusted(raw, step.code))
        # Only the names matter here: they tell which keyword receives which component.
        declared = Step(
            step.name,
            fn,
            inputs=inputs,
            tolerances=step.tolerances,
            models=dict.fromkeys(step.models),
            data=data,
            params=dict.fromkeys(load_params(store, step.params)),
        )
        return declared, STEP_BYTES

    step_: Step = store.cache.load(key, declare)
    return step_


def load_model(store: Store, model: ModelRef) -> Any:
    """A recorded model from its stored bytes, once per process (see replay.capture.models:
    record and replay share one model cache, bounded by count, so a model a process bound
    is not loaded a second time to replay)."""
    return load_recorded_model(
        plain(model), store.get_object, f"model {model.path or model.digest}"
    )


def data_bytes(store: Store, record: DataRef) -> bytes:
    """The exact bytes a run read: from the store, the workspace if unchanged, or DVC."""
    if record.object:
        return store.get_object(record.object)
    if store.objects.has(record.sha256):  # DVC data an evidence bundle carried
        return store.get_object(record.sha256)
    path = Path(record.path)
    try:
        raw = path.read_bytes()
        if sha256(raw) == record.sha256:
            return raw
    except OSError:
        pass
    version = record.dvc
    if not version:
        raise NotFoundError(
            f"data {path} changed since the run and no copy was kept",
            hint="restore the file with sha256 " + record.sha256,
        )
    raw = dvcdata.fetch(plain(version))
    if sha256(raw) != record.sha256:
        raise DataVersionError(
            f"DVC returned bytes for {version.path} that are not the recorded {record.sha256}"
        )
    return raw


def load_data_component(store: Store, record: DataRef) -> Any:
    def load() -> tuple[Any, int]:
        raw = data_bytes(store, record)
        return tables.read(record.format, raw), len(raw)

    return store.cache.load(("data", record.sha256), load)


def load_params(store: Store, digest: str) -> dict[str, Any]:
    params: dict[str, Any] = _cached(store, "params", digest, json.loads)
    return params


def step_kwargs(store: Store, step: StepSpec) -> dict[str, Any]:
    """models / data / params of a recorded step, as its function receives them."""
    return {
        "models": {n: load_model(store, m) for n, m in step.models.items()},
        "data": {n: load_data_component(store, d) for n, d in step.data.items()},
        "params": load_params(store, step.params),
    }
