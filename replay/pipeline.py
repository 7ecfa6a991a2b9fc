"""Pipelines and steps: what a user declares, before anything is captured."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from replay.errors import PipelineError

INPUT = "input"  # the name under which steps refer to the run's input rows
BINDABLE = ("models", "data", "params", "ctx")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class Step:
    """A callable plus what it is bound to.

    ``fn(table, *, models, data, params, ctx)`` receives the output of the step before it
    (or, with ``inputs=[...]``, a dict of the named earlier outputs; ``"input"`` names the
    run's input rows) and, by keyword, whichever of ``models``, ``data``, ``params`` and
    ``ctx`` it declares. Models and data given as paths are captured by their bytes; other
    model objects are pickled when the pipeline is first recorded. ``tolerances`` maps
    output columns to the absolute difference a replay may show and still be `equivalent`.
    """

    def __init__(self, name: str, fn: Callable[..., Any], *,
                 models: Mapping[str, Any] | None = None,
                 data: Mapping[str, str | Path] | None = None,
                 params: Mapping[str, Any] | None = None,
                 inputs: Sequence[str] | None = None,
                 tolerances: Mapping[str, float] | None = None) -> None:
        if not isinstance(name, str) or not _NAME.match(name) or name == INPUT:
            raise PipelineError(f"step name {name!r} is not usable",
                                hint="use letters, digits, _ . - (and not 'input')")
        if not callable(fn):
            raise PipelineError(f"step {name!r}: {fn!r} is not callable")
        self.name = name
        self.fn = fn
        self.models = dict(models or {})
        self.data = dict(data or {})
        self.params = dict(params or {})
        self.inputs = tuple(inputs) if inputs is not None else None
        self.tolerances = {k: float(v) for k, v in (tolerances or {}).items()}
        self.wants = _wanted_keywords(name, fn)

    def __repr__(self) -> str:
        return f"Step({self.name!r}, {getattr(self.fn, '__qualname__', self.fn)!r})"


def _wanted_keywords(name: str, fn: Callable[..., Any]) -> tuple[str, ...]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return BINDABLE
    positional = [p for p in params.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.name not in BINDABLE]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in params.values()):
        raise PipelineError(f"step {name!r}: {fn.__name__}() takes no table argument",
                            hint="the first positional parameter receives the input table")
    return tuple(k for k in BINDABLE if k in params)


class Pipeline:
    """A named chain (or DAG) of steps, run in the order given.

    ``personal`` names columns holding personal data (e.g. a customer id): their digests are
    kept apart, so an export can replace them by pseudonyms and still prove the rows.
    """

    def __init__(self, name: str, steps: Sequence[Step], *,
                 personal: Sequence[str] = ()) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise PipelineError(f"pipeline name {name!r} is not usable",
                                hint="use letters, digits, _ . -")
        if not steps:
            raise PipelineError(f"pipeline {name!r} has no steps")
        seen = {INPUT}
        for i, step in enumerate(steps):
            if not isinstance(step, Step):
                raise PipelineError(f"pipeline {name!r}: item {i} is not a replay.Step")
            if step.name in seen:
                raise PipelineError(f"pipeline {name!r}: step name {step.name!r} is repeated")
            for ref in step.inputs or ():
                if ref not in seen:
                    raise PipelineError(
                        f"step {step.name!r} reads {ref!r}, which is not an earlier step",
                        hint=f"name one of: {', '.join(sorted(seen))}")
            seen.add(step.name)
        self.name = name
        self.steps = tuple(steps)
        self.personal = tuple(sorted(set(personal)))
        self._bindings: dict[Path, Any] = {}  # per store: see replay.components.bind

    def sources(self, index: int) -> tuple[str, ...]:
        """Names of the tables step ``index`` reads."""
        step = self.steps[index]
        if step.inputs is not None:
            return step.inputs
        return (self.steps[index - 1].name if index else INPUT,)

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, {[s.name for s in self.steps]})"
