"""Capture of the components a run depends on: step code, models, data, params, environment.

Each component is stored once as a content-addressed object and named in the pipeline *spec*,
whose digest is the pipeline version. A binding is computed when a pipeline is first recorded
into a store and recomputed only for steps whose files changed on disk (a stat per file per
run, and a hash of each small file until it settles: see ``replay.capture.watch``), so the
per-run cost of capture does not grow with model or code size.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cloudpickle
import msgspec
import numpy as np
from msgspec import UNSET

from replay.capture import dvc as dvcdata
from replay.capture import environment
from replay.capture.code import capture_code
from replay.capture.models import capture as capture_model
from replay.capture.models import load as load_model
from replay.capture.watch import Watched, unchanged, watched
from replay.core import tables
from replay.core.declared import missing_hint
from replay.core.digest import canonical_json, sha256
from replay.core.forms import Forms
from replay.core.manifest import (
    SPEC_FORMAT,
    DataRef,
    DvcVersion,
    ModelRef,
    Spec,
    StepSpec,
    convert,
    encode,
    plain,
)
from replay.core.model import Model
from replay.core.pipeline import Pipeline, Step
from replay.errors import CaptureError, InputError
from replay.store.store import Store


class Staged:
    """Objects a capture needs, written only once every component was captured: a capture
    that fails (an unpicklable model, an unreadable file) leaves the store untouched."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, data: bytes) -> str:
        digest = sha256(data)
        self.objects[digest] = data
        return digest

    def write(self, store: Store) -> None:
        for data in self.objects.values():
            store.put_object(data)


@dataclass(frozen=True)
class BoundStep:
    step: Step
    spec: StepSpec
    kwargs: dict[str, Any]  # models / data / params as the step function receives them
    watch: tuple[Watched, ...]

    def fresh(self) -> bool:
        return unchanged(self.watch)


@dataclass(frozen=True)
class Binding:
    pipeline: Pipeline
    steps: tuple[BoundStep, ...]
    spec: Spec
    version: str
    envs: dict[tuple[str, ...], str] = field(default_factory=dict, compare=False)
    warned: set[str] = field(default_factory=set, compare=False)  # steps told of the clock

    def environment(self, store: Store) -> str:
        """The environment object of a run, taken after its steps ran: a library a step
        imports brings its thread pools and kernel settings, so each set of loaded
        libraries (``environment.generation()``) is captured once."""
        generation = environment.generation()
        if generation not in self.envs:
            self.envs[generation] = capture_environment(store)
        return self.envs[generation]

    @cached_property
    def forms(self) -> Forms:
        """The IPC forms of its tables, kept from run to run."""
        return Forms(self.pipeline.personal)

    @cached_property
    def watch(self) -> tuple[Watched, ...]:
        # Steps share git's files: each is checked once a run.
        return tuple({w.key: w for s in self.steps for w in s.watch}.values())

    def fresh(self) -> bool:
        return unchanged(self.watch)


def bind(pipeline: Pipeline, store: Store) -> Binding:
    """The pipeline's components as stored in ``store``, captured again where files changed."""
    key = store.location
    old: Binding | None = pipeline.bound(key)
    if old is not None and old.fresh():
        return old
    environment.declared_image()  # a malformed declaration fails before anything is written
    staged = Staged()
    steps = tuple(
        prev if old is not None and (prev := old.steps[i]).fresh() else _bind_step(s, staged)
        for i, s in enumerate(pipeline.steps)
    )
    spec = Spec(
        SPEC_FORMAT,
        pipeline.name,
        list(pipeline.personal),
        [
            msgspec.structs.replace(
                s.spec, inputs=list(pipeline.sources(i)), named_inputs=s.step.inputs is not None
            )
            for i, s in enumerate(steps)
        ],
        list(pipeline.decisions) if pipeline.decisions else UNSET,
    )
    version = staged.put_object(encode(spec))
    staged.write(store)
    binding = (
        Binding(pipeline, steps, spec, version)
        if old is None
        else Binding(pipeline, steps, spec, version, old.envs, old.warned)
    )
    pipeline.keep_bound(key, binding)
    return binding


def capture_environment(store: Store | Staged) -> str:
    store.put_object(canonical_json(list(environment.lock())))
    return store.put_object(canonical_json(environment.fingerprint()))


def _bind_step(step: Step, store: Staged) -> BoundStep:
    code = _capture_code(step, store)
    models: dict[str, ModelRef] = {}
    data: dict[str, DataRef] = {}
    live: dict[str, dict[str, Any]] = {"models": {}, "data": {}}
    watch: list[Watched] = []
    for name, value in step.models.items():
        if isinstance(value, (str, Path, Model)):
            model = value if isinstance(value, Model) else Model(value)
            watch += watched(model.path)  # before reading
            entry, live["models"][name] = capture_model(
                model, store, f"step {step.name!r}: model {name!r}"
            )
            _add_dvc_version(entry, model.path)
            models[name] = convert(ModelRef, entry, f"step {step.name!r}: model {name!r}")
        else:
            models[name], live["models"][name] = _capture_model_object(step, name, value, store)
    for name, value in step.data.items():
        watch += watched(Path(value))
        data[name], live["data"][name] = _capture_data(step, Path(value), store)
    params = _json_params(step)
    spec = StepSpec(
        name=step.name,
        **code,
        models=models,
        data=data,
        params=store.put_object(canonical_json(params)),
        inputs=[],  # where the step reads from is the pipeline's to say (bind)
        tolerances=dict(step.tolerances),
    )
    kwargs = {"models": live["models"], "data": live["data"], "params": params}
    return BoundStep(step, spec, kwargs, tuple(watch))


def _capture_code(step: Step, store: Staged) -> dict[str, Any]:
    """The step function by value, with the source of every module of the user's it reaches."""
    code = capture_code(step.fn, f"step {step.name!r}")
    modules = {name: store.put_object(text.encode()) for name, text in code.modules.items()}
    own = getattr(step.fn, "__module__", None)
    if own in modules:
        source = modules[own]
    else:
        try:
            text = inspect.getsource(step.fn)
        except (OSError, TypeError):
            text = f"# source of {step.fn!r} is not available (defined interactively?)\n"
        source = store.put_object(text.encode())
    return {
        "code": store.put_object(code.pickled),
        "source": source,
        "qualname": code.qualname,
        "modules": modules,
        "installed": code.installed,
    }


def _read(step: Step, path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CaptureError(
            f"step {step.name!r}: {what} {path} does not exist", hint=missing_hint(step.folder)
        ) from None
    except OSError as exc:
        raise CaptureError(
            f"step {step.name!r}: cannot read {what} {path}: {exc.strerror}",
            hint="check the path bound to the step",
        ) from None


def _capture_model_object(step: Step, name: str, obj: Any, store: Staged) -> tuple[ModelRef, Any]:
    try:
        data = cloudpickle.dumps(obj, protocol=5)
    except Exception as exc:
        raise CaptureError(
            f"step {step.name!r}: model {name!r} cannot be pickled ({exc})",
            hint="bind the model as a file, or make it picklable",
        ) from None
    digest = store.put_object(data)
    ref = ModelRef("object", digest, "pickle", type=type(obj).__qualname__)
    # The step runs on a copy made from the stored bytes: mutating the original later
    # cannot make the snapshot lie about what ran.
    what = f"step {step.name!r}: model {name!r}"
    return ref, load_model(plain(ref), {digest: data}.__getitem__, what)


def _capture_data(step: Step, path: Path, store: Staged) -> tuple[DataRef, Any]:
    raw = _read(step, path, "data file")
    fmt = tables.format_of(path)
    version = dvcdata.version(path)
    record = DataRef(
        str(path.resolve()),
        sha256(raw),
        fmt,
        convert(DvcVersion, version, str(path)) if version is not None else None,
        # Not recoverable from a DVC remote at a git rev: keep the bytes themselves.
        store.put_object(raw) if version is None or not version["committed"] else UNSET,
    )
    return record, tables.read(fmt, raw)


def _add_dvc_version(entry: dict[str, Any], path: Path) -> None:
    """A DVC-tracked model file or folder is named by its DVC version too (repo, rev, path,
    md5), as data is; its bytes are stored all the same: a replay loads models from the
    store, never from a DVC remote."""
    version = dvcdata.version(path)
    if version is not None:
        entry["dvc"] = version


def _json_params(step: Step) -> dict[str, Any]:
    """Params as JSON gives them back, the same on record and on replay: tuples become
    lists and numpy values Python numbers; anything JSON would change silently (a set's
    order, a datetime, a non-text key, NaN) is refused."""
    return {k: _json_value(step, k, v) for k, v in step.params.items()}


def _json_value(step: Step, where: str, value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        value = value.tolist()
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(step, f"{where}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_value(step, f"{where}.{k}", v) for k, v in value.items()}
    raise InputError(
        f"step {step.name!r}: param {where} = {value!r} has no exact JSON form",
        hint="use strings, finite numbers, booleans, None, lists, tuples and "
        "dicts with text keys (a datetime as its ISO text)",
    )
