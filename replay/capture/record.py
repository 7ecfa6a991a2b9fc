"""``record``: run a pipeline and commit a snapshot of everything it depended on."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import pyarrow as pa
from msgspec import UNSET

from replay.capture.bind import Binding, bind
from replay.capture.runner import as_table, call_step
from replay.core.context import RunContext, warn_wall_clock
from replay.core.digest import normalize_table, sha256
from replay.core.forms import Forms, TableForm
from replay.core.ids import new_run_id
from replay.core.kinds import PRODUCTION
from replay.core.manifest import (
    MANIFEST_FORMAT,
    Failure,
    InputRecord,
    Manifest,
    StepRecord,
    manifest_json,
    plain,
)
from replay.core.pipeline import INPUT, Pipeline
from replay.errors import InputError, ReplayError, StepError
from replay.store.segments import Layout, RunData, Sharing, StoredTable
from replay.store.store import Store

OVERLAP_ROWS = 4096  # below this, handing a table to another thread costs more than it saves
OVERLAP_BYTES = 1 << 18  # the same for a tape
T = TypeVar("T")
_digesters: dict[int, ThreadPoolExecutor] = {}  # per process: a forked child has no threads


def _digester() -> ThreadPoolExecutor:
    pid = os.getpid()
    if pid not in _digesters:
        _digesters[pid] = ThreadPoolExecutor(min(4, os.cpu_count() or 1), "replay-digest")
    return _digesters[pid]


@dataclass(frozen=True)
class RecordResult:
    """What ``record`` returns: the run's id, its final output and its manifest."""

    run_id: str
    output: pa.Table
    manifest: Manifest = field(repr=False)
    seq: int | None = None  # ledger sequence number, once durable

    @property
    def status(self) -> str:
        return self.manifest.status


def prepare_input(inputs: Any, record_key: str | None) -> pa.Table:
    table = as_table(inputs, "inputs")
    if table.num_rows == 0:
        raise InputError("the input has no rows", hint="record at least one row")
    if record_key is not None:
        _check_record_key(table, record_key)
    return table


# What can name a record: the catalog, `find` and an export know a record by its key as
# text, and a record must get the same text in every run. Floats cannot: NaN is not equal to
# itself, -0.0 and 0.0 are two keys that print alike, and a key computed in floating point
# (0.1 + 0.2) prints 0.30000000000000004 where its source said 0.3; an identifier is not a
# measurement. Booleans name two records, structs, lists and maps have no one text.
_KEY_TYPES = (pa.types.is_integer, pa.types.is_date, pa.types.is_timestamp, pa.types.is_decimal)
_TEXT_TYPES = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_string_view,
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_binary_view,
)
_KEY_HINT = (
    "key the records by a column of strings, integers, dates, timestamps or decimals "
    "(cast this one, or join its parts into a string)"
)


def _key_column(table: pa.Table, name: str) -> pa.ChunkedArray:
    count = len(indices := table.schema.get_all_field_indices(name))
    if not count:
        raise InputError(
            f"record key column {name!r} is not in the input",
            hint=f"choose one of: {', '.join(table.column_names)}",
        )
    if count > 1:
        raise InputError(
            f"record key column {name!r} appears {count} times in the input",
            hint="rename the others",
        )
    return table.column(indices[0])


def _check_record_key(table: pa.Table, name: str) -> None:
    """Refuse, before anything is written, a record key the catalog could not index: not
    there, there twice, not a scalar that names a record, bytes that are not UTF-8, nulls."""
    column = _key_column(table, name)
    kind = column.type
    values = kind.value_type if pa.types.is_dictionary(kind) else kind
    text = any(is_(values) for is_ in _TEXT_TYPES)  # a dictionary: only of strings
    if not (text or (values == kind and any(is_(kind) for is_ in _KEY_TYPES))):
        raise InputError(
            f"record key column {name!r} is of type {kind}, which cannot name a record",
            hint=_KEY_HINT,
        )
    if text and (row := _not_utf8(column)) is not None:
        raise InputError(
            f"record key column {name!r} ({kind}) holds bytes that are not UTF-8 (row {row})",
            hint="decode them into strings, or hex-encode them",
        )
    if column.null_count:
        raise InputError(
            f"record key column {name!r} has {column.null_count} null values",
            hint="every row needs a key; drop or fill those rows",
        )


def _not_utf8(column: pa.ChunkedArray) -> int | None:
    """The first row whose bytes are not UTF-8, if any."""
    kind = column.type
    try:  # a cast from bytes checks them; strings need a full validation
        text = (
            column
            if pa.types.is_string(kind) or pa.types.is_large_string(kind)
            else column.cast(pa.large_string())
        )
        text.validate(full=True)
        return None
    except pa.ArrowInvalid:
        raw = column.cast(pa.large_binary()).to_pylist()
    return next((i for i, v in enumerate(raw) if v is not None and not _decodes(v)), None)


def _decodes(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def record(
    pipeline: Pipeline,
    inputs: Any,
    *,
    store: Store | None = None,
    record_key: str | None = None,
    at: datetime | None = None,
    durable: bool | None = None,
    tags: dict[str, str] | None = None,
) -> RecordResult:
    """Run ``pipeline`` over ``inputs`` and snapshot the run into ``store``.

    ``at`` sets the logical clock steps see through ``ctx.now()`` (default: now).
    ``durable`` (default: the store's setting) returns only after the run is fsynced.
    A step that raises is recorded as a failed run and then raised as ``StepError``.
    """
    store = store if store is not None else Store.open()
    table = prepare_input(inputs, record_key)
    return record_with(
        bind(pipeline, store),
        table,
        store=store,
        record_key=record_key,
        at=at,
        durable=durable,
        tags=tags,
    )


def record_with(
    binding: Binding,
    table: pa.Table,
    *,
    store: Store,
    record_key: str | None,
    at: datetime | None,
    durable: bool | None,
    tags: dict[str, str] | None,
    kind: str = PRODUCTION,
) -> RecordResult:
    """Record a run of an already captured binding (``kind`` whatif: a counterfactual)."""
    started = time.time_ns()
    if at is not None and at.tzinfo is None:
        raise InputError("the logical time has no timezone", hint="pass an aware datetime")
    clock = (at or datetime.fromtimestamp(started / 1e9, UTC)).astimezone(UTC)
    run_id = new_run_id()
    stored, steps, tape, failure = _execute(binding, normalize_table(table), clock, wall=at is None)
    blobs = {"tape": tape[0]} if tape is not None else {}
    manifest = Manifest(
        MANIFEST_FORMAT,
        run_id,
        binding.pipeline.name,
        binding.version,
        "failed" if failure else "ok",
        started,
        time.time_ns(),
        clock.isoformat(),
        record_key,
        _input_record(stored[INPUT]),
        binding.environment(store),
        steps,
        dict(tags or {}),
        kind=kind,
        tape=tape[1] if tape is not None else UNSET,
        error=Failure(getattr(failure, "step", None), failure.message) if failure else UNSET,
    )
    built = plain(manifest)
    waited = store.durable if durable is None else durable
    future = store.commit(
        RunData(run_id, stored, blobs), built, manifest_json(built), waited=waited
    )
    entry = future.result() if waited else None
    if failure is not None:
        failure.hint = f"the failed run is recorded as {run_id}; {failure.hint}".rstrip("; ")
        failure.run_id = run_id
        raise failure
    final = stored[binding.pipeline.steps[-1].name].table
    return RecordResult(run_id, final, manifest, entry.get("seq") if entry else None)


def _stored_soon(
    kind: str,
    table: pa.Table,
    forms: Forms,
    memo: dict[tuple[Any, ...], str],
    sharing: Sharing,
) -> Callable[[], StoredTable]:
    """A call that gives the stored form of a table. A big table is serialized and hashed at
    once on another core while the next step runs (Arrow and hashlib release the GIL), off
    the commit's path. A small one waits for the last step: a step's own work (a model's
    predict) leaves the caches cold, and a 1-row run's tables digested in a row cost half
    of what each costs right after its step."""
    shared = sharing.split(kind, table)  # in the order the tables were made
    if table.num_rows >= OVERLAP_ROWS:
        return (
            _digester().submit(_prepared, table, forms.of(kind, table.schema), memo, shared).result
        )
    return lambda: StoredTable.formed(table, forms.of(kind, table.schema), memo, shared)


def _prepared(
    table: pa.Table,
    form: TableForm,
    memo: dict[tuple[Any, ...], str],
    shared: tuple[pa.Table, Layout] | None,
) -> StoredTable:
    stored = StoredTable.formed(table, form, memo, shared)
    _ = stored.data_digest  # the stored bytes serialized and hashed here, not at commit
    return stored


def _now(value: T | Future[T]) -> T:
    return value.result() if isinstance(value, Future) else value


@dataclass
class _Ran:
    name: str
    sources: tuple[str, ...]
    ctx: RunContext
    duration_ns: int
    ok: bool


def _execute(
    binding: Binding, inp: pa.Table, clock: datetime, *, wall: bool
) -> tuple[dict[str, StoredTable], list[StepRecord], tuple[bytes, str] | None, StepError | None]:
    forms = binding.forms
    tables = {INPUT: inp}  # what later steps read
    memo: dict[tuple[Any, ...], str] = {}  # lives no longer than the run's tables
    sharing = Sharing()
    pending = {INPUT: _stored_soon(INPUT, inp, forms, memo, sharing)}  # what is stored
    ran: list[_Ran] = []
    failure: StepError | None = None
    for i, bound in enumerate(binding.steps):
        sources = binding.pipeline.sources(i)
        arg = (
            tables[sources[0]]
            if len(sources) == 1 and bound.step.inputs is None
            else {s: tables[s] for s in sources}
        )
        ctx = RunContext(clock, step=bound.step.name)
        t0 = time.perf_counter_ns()
        try:
            out = normalize_table(call_step(bound.step, arg, bound.kwargs, ctx))
        except ReplayError as exc:
            failure = exc if isinstance(exc, StepError) else StepError(bound.step.name, str(exc))
            ran.append(_Ran(bound.step.name, sources, ctx, time.perf_counter_ns() - t0, False))
            break
        ran.append(_Ran(bound.step.name, sources, ctx, time.perf_counter_ns() - t0, True))
        if wall and ctx.clock_read and bound.step.name not in binding.warned:
            binding.warned.add(bound.step.name)  # once per step: not on every online run
            warn_wall_clock(bound.step.name)
        tables[bound.step.name] = out
        pending[bound.step.name] = _stored_soon(bound.step.name, out, forms, memo, sharing)
    tape = _tape(ran)  # hashed while the last tables' digests are computed
    stored = {name: made() for name, made in pending.items()}
    steps = [_step_entry(r, stored) for r in ran]
    return stored, steps, (tape[0], _now(tape[1])) if tape else None, failure


def _tape(ran: list[_Ran]) -> tuple[bytes, str | Future[str]] | None:
    """The run's tape and its digest, a big one hashed on another core."""
    tape = {r.name: r.ctx.tape for r in ran if r.ctx.tape}
    if not tape:
        return None
    # Hashed as the bytes written, so any valid JSON will do: orjson, sorted like the rest.
    blob = orjson.dumps(tape, option=orjson.OPT_SORT_KEYS)
    if len(blob) >= OVERLAP_BYTES:
        return blob, _digester().submit(sha256, blob)
    return blob, sha256(blob)


def _step_entry(ran: _Ran, stored: dict[str, StoredTable]) -> StepRecord:
    out = stored[ran.name] if ran.ok else None
    return StepRecord(
        ran.name,
        [stored[s].digest for s in ran.sources],
        out.digest if out is not None else None,
        out.table.num_rows if out is not None else None,
        ran.duration_ns,
        ran.ctx.seeds,
        len(ran.ctx.tape),
        _redactable(out.parts) if out is not None and out.parts is not None else UNSET,
    )


def _input_record(inp: StoredTable) -> InputRecord:
    return InputRecord(
        inp.digest, inp.table.num_rows, _redactable(inp.parts) if inp.parts else UNSET
    )


def _redactable(parts: dict[str, Any]) -> dict[str, Any]:
    """What a redacted copy cannot recompute: the digests of its personal columns. The rest
    (the column order, the other columns) comes from the copy itself."""
    return {"personal": parts["personal"]}
