"""``record``: run a pipeline and commit a snapshot of everything it depended on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from replay.components import Binding, bind
from replay.context import RunContext
from replay.digest import sha256
from replay.errors import InputError, ReplayError, StepError
from replay.ids import new_run_id
from replay.pipeline import INPUT, Pipeline
from replay.runner import as_table, call_step
from replay.segments import RunData, StoredTable
from replay.store import Store

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class RecordResult:
    """What ``record`` returns: the run's id, its final output and its manifest."""

    run_id: str
    output: pa.Table
    manifest: dict[str, Any] = field(repr=False)
    seq: int | None = None  # ledger sequence number, once durable

    @property
    def status(self) -> str:
        return str(self.manifest["status"])


def prepare_input(inputs: Any, record_key: str | None) -> pa.Table:
    table = as_table(inputs, "inputs")
    if table.num_rows == 0:
        raise InputError("the input has no rows", hint="record at least one row")
    if record_key is not None:
        if record_key not in table.column_names:
            raise InputError(f"record key column {record_key!r} is not in the input",
                             hint=f"choose one of: {', '.join(table.column_names)}")
        if table.column(record_key).null_count:
            raise InputError(f"record key column {record_key!r} has "
                             f"{table.column(record_key).null_count} null values",
                             hint="every row needs a key; drop or fill those rows")
    return table


def record(pipeline: Pipeline, inputs: Any, *, store: Store | None = None,
           record_key: str | None = None, at: datetime | None = None,
           durable: bool | None = None, tags: dict[str, str] | None = None) -> RecordResult:
    """Run ``pipeline`` over ``inputs`` and snapshot the run into ``store``.

    ``at`` sets the logical clock steps see through ``ctx.now()`` (default: now).
    ``durable`` (default: the store's setting) returns only after the run is fsynced.
    A step that raises is recorded as a failed run and then raised as ``StepError``.
    """
    store = store if store is not None else Store.open()
    table = StoredTable.of(prepare_input(inputs, record_key), pipeline.personal)
    return record_with(bind(pipeline, store), table, store=store, record_key=record_key,
                       at=at, durable=durable, tags=tags)


def record_with(binding: Binding, table: StoredTable, *, store: Store, record_key: str | None,
                at: datetime | None, durable: bool | None,
                tags: dict[str, str] | None) -> RecordResult:
    """Record a run of an already captured binding (also used for counterfactual runs)."""
    started = time.time_ns()
    if at is not None and at.tzinfo is None:
        raise InputError("the logical time has no timezone", hint="pass an aware datetime")
    clock = (at or datetime.fromtimestamp(started / 1e9, UTC)).astimezone(UTC)
    run_id = new_run_id()
    outputs, steps, tapes, failure = _execute(binding, table, clock)
    manifest = _manifest(run_id, binding, table, steps, record_key, clock, started,
                         tags or {}, failure)
    blobs = {}
    if tapes is not None:
        blobs["tape"], manifest["tape"] = tapes, sha256(tapes)
    future = store.commit(RunData(run_id, {INPUT: table, **outputs}, blobs), manifest)
    entry = future.result() if (store.durable if durable is None else durable) else None
    if failure is not None:
        failure.hint = f"the failed run is recorded as {run_id}; {failure.hint}".rstrip("; ")
        failure.run_id = run_id
        raise failure
    final = outputs[binding.pipeline.steps[-1].name].table
    return RecordResult(run_id, final, manifest, entry["seq"] if entry else None)


def _execute(binding: Binding, inp: StoredTable, clock: datetime) -> tuple[
        dict[str, StoredTable], list[dict[str, Any]], bytes | None, StepError | None]:
    tables = {INPUT: inp}
    steps: list[dict[str, Any]] = []
    tape: dict[str, list[dict[str, Any]]] = {}
    for i, bound in enumerate(binding.steps):
        sources = binding.pipeline.sources(i)
        arg = tables[sources[0]].table if len(sources) == 1 and bound.step.inputs is None \
            else {s: tables[s].table for s in sources}
        ctx = RunContext(clock, step=bound.step.name)
        t0 = time.perf_counter_ns()
        try:
            out = StoredTable.of(call_step(bound.step, arg, bound.kwargs, ctx),
                                 binding.pipeline.personal)
        except ReplayError as exc:
            err = exc if isinstance(exc, StepError) else StepError(bound.step.name, str(exc))
            steps.append(_step_entry(bound.step.name, sources, tables, None, ctx, t0))
            return {k: v for k, v in tables.items() if k != INPUT}, steps, \
                _tape_blob(tape, ctx), err
        tables[bound.step.name] = out
        steps.append(_step_entry(bound.step.name, sources, tables, out, ctx, t0))
        if ctx.tape:
            tape[bound.step.name] = ctx.tape
    return {k: v for k, v in tables.items() if k != INPUT}, steps, _tape_blob(tape, None), None


def _tape_blob(tape: dict[str, list[dict[str, Any]]], failed: RunContext | None) -> bytes | None:
    if failed is not None and failed.tape:
        tape = tape | {failed.step: failed.tape}
    # Hashed as the bytes written, so any valid JSON will do: orjson, sorted like the rest.
    return orjson.dumps(tape, option=orjson.OPT_SORT_KEYS) if tape else None


def _step_entry(name: str, sources: tuple[str, ...], tables: dict[str, StoredTable],
                out: StoredTable | None, ctx: RunContext, t0: int) -> dict[str, Any]:
    entry = {"name": name, "inputs": [tables[s].digest for s in sources],
             "output": out.digest if out is not None else None,
             "rows": out.table.num_rows if out is not None else None,
             "duration_ns": time.perf_counter_ns() - t0, "seeds": ctx.seeds,
             "calls": len(ctx.tape)}
    if out is not None and out.parts is not None:
        entry["output_parts"] = out.parts
    return entry


def _manifest(run_id: str, binding: Binding, inp: StoredTable, steps: list[dict[str, Any]],
              record_key: str | None, clock: datetime, started: int, tags: dict[str, str],
              failure: ReplayError | None) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "run_id": run_id, "pipeline": binding.pipeline.name,
        "version": binding.version, "status": "failed" if failure else "ok",
        "started_ns": started, "ended_ns": time.time_ns(),
        "clock": clock.isoformat(), "record_key": record_key,
        "input": {"digest": inp.digest, "rows": inp.table.num_rows}
        | ({"parts": inp.parts} if inp.parts else {}),
        "env": binding.env, "steps": steps, "tags": dict(tags),
    }
    if failure is not None:
        manifest["error"] = {"step": getattr(failure, "step", None), "message": failure.message}
    return manifest
