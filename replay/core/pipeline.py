"""Pipelines and steps: what a user declares, before anything is captured."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from replay.core.declared import declaring_folder, resolve
from replay.core.model import Model
from replay.errors import PipelineError

INPUT = "input"  # the name under which steps refer to the run's input rows
BINDABLE = ("models", "data", "params", "ctx")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


# A step parameter takes (source, key): a whole group ("models", None), one item of it
# ("models", "pd"), the context ("ctx", None) or one of its doors ("ctx", "now").
Want = tuple[str, str, str | None]
DOORS = ("now", "rng", "call")


class Step:
    """A callable plus what it is bound to.

    ``fn(table, ...)`` receives the output of the step before it (or, with ``inputs=[...]``,
    a dict of the named earlier outputs; ``"input"`` names the run's input rows) and, by
    keyword, what its signature names: each model, data file and param of the step by its
    own name; ``now`` (the run's logical time), ``rng`` (a recorded-seed generator) and
    ``call`` (``ctx.call``); or the whole groups ``models``, ``data``, ``params`` and the
    context ``ctx``. Models and data given as paths are captured by their bytes; other
    model objects are pickled when the pipeline is first recorded. ``tolerances`` maps
    output columns to the absolute difference a replay may show and still be `equivalent`.

    Relative model and data paths resolve against ``folder``, the folder of the file that
    declares the step, not the working directory at record time (see ``replay.core.declared``).
    """

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        models: Mapping[str, Any] | None = None,
        data: Mapping[str, str | Path] | None = None,
        params: Mapping[str, Any] | None = None,
        inputs: Sequence[str] | None = None,
        tolerances: Mapping[str, float] | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name) or name == INPUT:
            raise PipelineError(
                f"step name {name!r} is not usable",
                hint="use letters, digits, _ . - (and not 'input')",
            )
        if not callable(fn):
            raise PipelineError(f"step {name!r}: {fn!r} is not callable")
        for key, path in (data or {}).items():
            if not isinstance(path, str | PathLike):
                raise PipelineError(
                    f"step {name!r}: data {key!r} is a {type(path).__name__}, not a path",
                    hint="give the data file's path",
                )
        self.name = name
        self.fn = fn
        self.folder = declaring_folder()
        self.models = {
            k: Model(v) if isinstance(v, str | Path) else v for k, v in (models or {}).items()
        }
        self.data = {k: resolve(v, self.folder) for k, v in (data or {}).items()}
        self.params = dict(params or {})
        self.inputs = tuple(inputs) if inputs is not None else None
        self.tolerances = {k: float(v) for k, v in (tolerances or {}).items()}
        self.wants = wanted(
            name, fn, {"models": self.models, "data": self.data, "params": self.params}
        )

    def __repr__(self) -> str:
        return f"Step({self.name!r}, {getattr(self.fn, '__qualname__', self.fn)!r})"


def wanted(
    name: str, fn: Callable[..., Any], groups: Mapping[str, Mapping[str, Any]]
) -> tuple[Want, ...]:
    """What each keyword parameter of ``fn`` receives; unbindable names are refused here,
    when the pipeline is declared, not at the first run."""
    owner = _owners(name, groups)
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return ()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return tuple((k, k, None) for k in BINDABLE)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise PipelineError(
            f"step {name!r}: {_fname(fn)}() takes no table argument",
            hint="the first positional parameter receives the input table",
        )
    wants: list[Want] = []
    for p in params[1:] if positional and params[0] is positional[0] else params:
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            continue
        want = _want(p.name, owner)
        if want is not None:
            wants.append(want)
        elif p.default is p.empty:
            raise PipelineError(
                f"step {name!r}: {_fname(fn)}() parameter {p.name!r} is not "
                "a model, data or param of the step",
                hint="bind it (models=, data=, params=), give it a default, "
                "or name one of: now, rng, call, ctx",
            )
    taken = {w[2] for w in wants if w[2] is not None and w[0] not in DOORS}
    if not any(w[2] is None for w in wants):
        unused = sorted(set(owner) - taken)
        if unused:
            raise PipelineError(
                f"step {name!r}: {_fname(fn)}() takes no parameter "
                f"{unused[0]!r}, which the step binds",
                hint="name it in the function's signature, or take the "
                "whole group (models, data, params)",
            )
    return tuple(wants)


def _want(param: str, owner: Mapping[str, str]) -> Want | None:
    if param in BINDABLE:
        return (param, param, None)
    if param in owner:
        return (param, owner[param], param)
    if param in DOORS:
        return (param, "ctx", param)
    return None


def _owners(name: str, groups: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    owner: dict[str, str] = {}
    for group, items in groups.items():
        for key in items:
            if key in owner:
                raise PipelineError(
                    f"step {name!r}: {key!r} is both in {owner[key]} and in {group}",
                    hint="give them different names",
                )
            owner[key] = group
    return owner


def _fname(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


class Pipeline:
    """A named chain (or DAG) of steps, run in the order given.

    ``decisions`` names the output columns that are decisions (approve/decline, reason
    codes): a counterfactual or a diff calls a record "flipped" only when one of them
    changed (without them, when any column that is not a number or a numeric vector did).
    ``personal`` names columns holding personal data (e.g. a customer id): their digests are
    kept apart, so an export can replace them by pseudonyms and still prove the rows.
    """

    def __init__(
        self,
        name: str,
        steps: Sequence[Step],
        *,
        personal: Sequence[str] = (),
        decisions: Sequence[str] = (),
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise PipelineError(
                f"pipeline name {name!r} is not usable", hint="use letters, digits, _ . -"
            )
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
                        hint=f"name one of: {', '.join(sorted(seen))}",
                    )
            seen.add(step.name)
        self.name = name
        self.steps = tuple(steps)
        self.personal = tuple(sorted(set(personal)))
        self.decisions = tuple(sorted(set(decisions)))
        self._bindings: dict[Path, Any] = {}  # per store: see replay.capture.bind.bind

    def __getstate__(self) -> dict[str, Any]:
        # A pipeline reached by pickled code carries its declaration, never loaded models.
        return {k: v for k, v in self.__dict__.items() if k != "_bindings"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _bindings={})

    def bound(self, store: Path) -> Any:
        """The binding ``replay.capture.bind`` last made of this pipeline into ``store``."""
        return self._bindings.get(store)

    def keep_bound(self, store: Path, binding: Any) -> None:
        """Keep ``binding`` for the next record into ``store`` (see ``bound``)."""
        self._bindings[store] = binding

    def sources(self, index: int) -> tuple[str, ...]:
        """Names of the tables step ``index`` reads."""
        step = self.steps[index]
        if step.inputs is not None:
            return step.inputs
        return (self.steps[index - 1].name if index else INPUT,)

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, {[s.name for s in self.steps]})"
