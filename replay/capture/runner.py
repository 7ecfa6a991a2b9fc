"""Calling one step function with what it is bound to, and checking what it returns."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from replay.core.context import RunContext
from replay.core.pipeline import Step
from replay.errors import InputError, ReplayError, StepError


def as_table(value: Any, what: str) -> pa.Table:
    """A pyarrow Table from a Table, RecordBatch or pandas DataFrame."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if type(value).__name__ == "DataFrame" and hasattr(value, "to_numpy"):
        try:
            return pa.Table.from_pandas(value, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise InputError(f"{what}: cannot convert the DataFrame to Arrow ({exc})") from None
    raise InputError(
        f"{what} is a {type(value).__name__}, not a table",
        hint="pass a pyarrow.Table or a pandas.DataFrame",
    )


def call_step(step: Step, table_arg: Any, kwargs: dict[str, Any], ctx: RunContext) -> pa.Table:
    """Run ``step`` and return its output as a table; any failure becomes a StepError."""
    try:
        out = step.fn(table_arg, **arguments(step, kwargs, ctx))
    except ReplayError:
        raise
    except Exception as exc:
        raise StepError(
            step.name,
            f"raised {type(exc).__name__}: {exc}",
            hint="fix the step; the failed run is kept with its error",
        ) from exc
    try:
        return as_table(out, f"step {step.name!r} output")
    except InputError as exc:
        raise StepError(
            step.name,
            f"returned {type(out).__name__}, not a table",
            hint="return a pyarrow.Table or a pandas.DataFrame",
        ) from exc


def arguments(step: Step, kwargs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """The keyword arguments ``step.fn`` asks for, from its components and the context."""
    return {arg: _value(source, key, kwargs, ctx) for arg, source, key in step.wants}


def _value(source: str, key: str | None, kwargs: dict[str, Any], ctx: RunContext) -> Any:
    if source != "ctx":
        return kwargs[source] if key is None else kwargs[source][key]
    if key is None:
        return ctx
    return ctx.now() if key == "now" else ctx.rng() if key == "rng" else ctx.call
