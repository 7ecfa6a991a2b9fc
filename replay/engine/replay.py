"""``replay``: re-execute a recorded run from its snapshot alone and say where it diverges.

chained   each step gets the replayed output of the step before it (the chain as it ran);
isolated  each step gets its recorded input, which tells a step that is itself
          nondeterministic from one that only inherits a difference.

Outputs are compared by digest first and column by column on a mismatch. ``swap`` replaces
one step's components (a counterfactual: "today's model on March's inputs").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

import pyarrow as pa
from msgspec import structs

from replay.capture import environment
from replay.capture.runner import call_step
from replay.core.context import RunContext
from replay.core.digest import table_digest
from replay.core.manifest import Environment, ModelRef, Spec, StepRecord, StepSpec, convert, plain
from replay.core.pipeline import INPUT
from replay.engine.delta import Change, env_changes
from replay.engine.recorded import RecordedRun, load_code, load_environment, load_run, step_kwargs
from replay.engine.records import RecordChange, record_changes
from replay.engine.stepclock import StepClock
from replay.engine.tablediff import ColumnDiff, TableDiff, compare_tables
from replay.errors import NotFoundError, ReplayError, UsageError
from replay.store.store import Store

MODES = ("chained", "isolated")
HEX = frozenset("0123456789abcdef")
ORDER = {"exact": 0, "equivalent": 1, "diverged": 2, "skipped": 2}


@dataclass(frozen=True)
class StepResult:
    name: str
    verdict: str  # exact | equivalent | diverged | skipped
    recorded: str | None
    replayed: str | None
    duration_ns: int = 0
    diff: TableDiff | None = None
    error: str | None = None
    swapped: bool = False


@dataclass(frozen=True)
class ReplayReport:
    run_id: str
    pipeline: str
    mode: str
    verdict: str
    steps: tuple[StepResult, ...]
    first_divergence: str | None
    drift: tuple[Change, ...]
    recorded_image: str
    current_image: str
    clock: str
    swap: dict[str, str] = field(default_factory=dict)
    records: tuple[RecordChange, ...] = ()
    output: pa.Table | None = field(default=None, repr=False, compare=False)
    tolerances: dict[str, float] = field(default_factory=dict)  # given at replay time

    @property
    def ok(self) -> bool:
        return self.verdict in ("exact", "equivalent")

    def as_json(self) -> dict[str, Any]:
        return json.loads(self.json_text())  # type: ignore[no-any-return]

    def json_text(self) -> str:
        """``as_json`` as JSON text, written straight from the report: ``asdict`` would
        deep-copy every field first, the output table too (most of its cost)."""
        top = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "output"}
        return json.dumps(top, default=_plain)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplayReport:
        """The report ``as_json`` wrote (e.g. by a replay inside a container)."""
        steps = tuple(StepResult(**{**s, "diff": _table_diff(s["diff"])}) for s in data["steps"])
        return cls(
            **{
                **data,
                "steps": steps,
                "drift": tuple(Change(**c) for c in data["drift"]),
                "records": tuple(
                    RecordChange(
                        r["key"], r["flipped"], {k: tuple(v) for k, v in r["changes"].items()}
                    )
                    for r in data["records"]
                ),
            }
        )


def _plain(value: Any) -> Any:
    """What JSON makes of a value it has no form for: a dataclass's fields, else its text."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return str(value)


def _table_diff(data: dict[str, Any] | None) -> TableDiff | None:
    if data is None:
        return None
    # Both rebuild their tuples from JSON's lists; fields a report lacks keep their defaults.
    return TableDiff(**{**data, "columns": tuple(ColumnDiff(**c) for c in data["columns"])})


def replay(
    store: Store,
    run_id: str,
    mode: str = "chained",
    swap: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    tolerances: dict[str, float] | None = None,
) -> ReplayReport:
    """Replay a committed run; see the module docstring for modes and swaps. ``tolerances``
    (column -> absolute difference) add to, or override, those the steps declared."""
    if mode not in MODES:
        raise UsageError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    run = load_run(store, store.entry(run_id))
    spec = apply_swap(store, run.spec, swap or {})
    swapped = {target.partition(".")[0] for target in swap or {}}
    judge = Tolerances(run, spec.steps, dict(tolerances or {}))
    tape = run.tape()
    tables = {INPUT: run.table(INPUT)}
    results: list[StepResult] = []
    for i, step_spec in enumerate(spec.steps):
        if progress:
            progress(step_spec.name)
        recorded = run.manifest.steps[i] if i < len(run.manifest.steps) else None
        result, out = _replay_step(store, run, step_spec, recorded, tables, tape, mode, judge)
        results.append(replace(result, swapped=step_spec.name in swapped))
        if out is not None:
            tables[step_spec.name] = out
    return replace(
        _report(store, run, mode, swap or {}, tuple(results), tables.get(spec.steps[-1].name)),
        tolerances=judge.given,
    )


def replay_many(
    store: Store,
    run_ids: Sequence[str],
    mode: str = "chained",
    swap: dict[str, str] | None = None,
    tolerances: dict[str, float] | None = None,
) -> Iterator[ReplayReport]:
    """Replay runs one after another, as ``replay`` does each: the ids (or unique prefixes)
    are found together in one pass over the ledger first, and specs, code and models are
    loaded once per digest for them all (``store.cache``)."""
    for found in store.find_entries(list(run_ids)):
        yield replay(store, found["run_id"], mode=mode, swap=swap, tolerances=tolerances)


class Tolerances:
    """The tolerance of each column of each step's output, following the data: a column
    a step passes through unchanged (in the recording) keeps the tolerance of the step that
    made it; a step's own declaration and then the replay's given ones take precedence."""

    def __init__(self, run: RecordedRun, steps: list[StepSpec], given: dict[str, float]) -> None:
        self.run = run
        self.steps = {s.name: s for s in steps}
        self.given = given
        self._memo: dict[str, dict[str, float]] = {}

    def of(self, name: str) -> dict[str, float]:
        if name == INPUT:
            return {}
        if name not in self._memo:
            spec = self.steps[name]
            inherited: dict[str, float] = {}
            for source in reversed(spec.inputs):  # the first source wins, as in a dict
                inherited |= {
                    c: t
                    for c, t in self.of(source).items()
                    if self._passes_through(name, source, c)
                }
            self._memo[name] = inherited | spec.tolerances | self.given
        return self._memo[name]

    def _passes_through(self, name: str, source: str, column: str) -> bool:
        if not (self.run.has_table(name) and self.run.has_table(source)):
            return False
        out = self.run.block.table(self.run.run_id, name)
        given = self.run.block.table(self.run.run_id, source)
        return (
            column in out.column_names
            and column in given.column_names
            and out.column(column).equals(given.column(column))
        )


def _inputs(
    run: RecordedRun, sources: list[str], tables: dict[str, pa.Table], mode: str
) -> dict[str, pa.Table] | None:
    got = {}
    for s in sources:
        if mode == "isolated" and s != INPUT:
            if not run.has_table(s):
                return None
            got[s] = run.table(s)
        elif s in tables:
            got[s] = tables[s]
        else:
            return None
    return got


def _replay_step(
    store: Store,
    run: RecordedRun,
    spec: StepSpec,
    recorded: StepRecord | None,
    tables: dict[str, pa.Table],
    tape: dict[str, list[dict[str, Any]]],
    mode: str,
    judge: Tolerances,
) -> tuple[StepResult, pa.Table | None]:
    name = spec.name
    want = recorded.output if recorded else None
    given = _inputs(run, spec.inputs, tables, mode)
    if given is None:
        return StepResult(name, "skipped", want, None, error="its input was not produced"), None
    step = load_code(store, spec)
    arg = given if step.inputs is not None else given[spec.inputs[0]]
    ctx = RunContext(
        run.clock, step=name, seeds=recorded.seeds if recorded else {}, tape=tape.get(name, [])
    )
    kwargs = step_kwargs(store, spec)
    # The call only: loading code and models is done above, imports the call triggers are
    # left out (replay.engine.stepclock).
    clock = StepClock()
    try:
        with clock:
            out = call_step(step, arg, kwargs, ctx)
    except ReplayError as exc:
        error = run.manifest.error or None
        same = (
            error is not None and error.step == name and want is None and error.message in str(exc)
        )
        return StepResult(
            name, "exact" if same else "diverged", want, None, clock.ns, error=exc.message
        ), None
    took = clock.ns
    digest = table_digest(out, run.personal)
    if digest == want:
        return StepResult(name, "exact", want, digest, took), out
    if want is None or not run.has_table(name):
        return StepResult(
            name,
            "diverged",
            want,
            digest,
            took,
            error="the recorded run has no output for this step",
        ), out
    before = run.block.table(run.run_id, name)
    if table_digest(before, run.personal) == digest:  # same values, another pyarrow
        return StepResult(name, "exact", want, digest, took), out
    diff = compare_tables(before, out, judge.of(name))
    # The digests differ: equivalent only if something was found and all of it is covered.
    verdict = "equivalent" if diff and diff.equivalent else "diverged"
    return StepResult(name, verdict, want, digest, took, diff, error=diff.reason()), out


def _report(
    store: Store,
    run: RecordedRun,
    mode: str,
    swap: dict[str, str],
    steps: tuple[StepResult, ...],
    output: pa.Table | None,
) -> ReplayReport:
    verdict = max((s.verdict for s in steps), key=lambda v: ORDER[v])
    verdict = "diverged" if verdict == "skipped" else verdict
    first = next((s.name for s in steps if s.verdict in ("diverged", "skipped")), None)
    recorded_env = load_environment(store, run.manifest.env)
    current_env = convert(Environment, environment.fingerprint(), "this process's environment")
    lock = recorded_env.packages.lock_sha256
    locks = None
    if lock != current_env.packages.lock_sha256 and store.objects.has(lock):
        locks = (json.loads(store.get_object(lock)), list(environment.lock()))
    records: tuple[RecordChange, ...] = ()
    last = run.manifest.steps[-1].name
    if swap and output is not None and run.has_table(last):
        records = tuple(
            record_changes(
                run.block.table(run.run_id, last),
                output,
                run.manifest.record_key,
                run.spec.decisions or (),
            )
        )
    return ReplayReport(
        run.run_id,
        run.manifest.pipeline,
        mode,
        verdict,
        steps,
        first,
        tuple(env_changes(plain(recorded_env), plain(current_env), locks)),
        recorded_env.image.digest,
        current_env.image.digest,
        run.manifest.clock,
        dict(swap),
        records,
        output,
    )


def apply_swap(store: Store, spec: Spec, swap: dict[str, str]) -> Spec:
    """The spec with ``STEP`` (or ``STEP.MODEL``) taken from another run or an object."""
    by_name = {s.name: s for s in spec.steps}
    for target, source in swap.items():
        name, _, model = target.partition(".")
        step = by_name.get(name)
        if step is None:
            raise UsageError(
                f"--swap {target}: the run has no step {name!r}",
                hint=f"steps: {', '.join(by_name)}",
            )
        if source.startswith("sha256:"):
            by_name[name] = structs.replace(step, models=_swap_model(store, step, model, source))
        else:
            donor = load_run(store, store.entry(source)).spec.step(name)
            if donor is None:
                raise UsageError(f"--swap {target}: run {source} has no step {name!r}")
            # The donor's components, read where this run's step read.
            by_name[name] = structs.replace(
                donor, inputs=step.inputs, named_inputs=step.named_inputs
            )
    return structs.replace(spec, steps=list(by_name.values()))


def _swap_model(store: Store, step: StepSpec, model: str, digest: str) -> dict[str, ModelRef]:
    models = dict(step.models)
    if not model:
        if len(models) != 1:
            raise UsageError(
                f"step {step.name!r} has {len(models)} models",
                hint="name one: --swap STEP.MODEL=sha256:…",
            )
        model = next(iter(models))
    if model not in models:
        raise UsageError(f"step {step.name!r} has no model {model!r}")
    digest = resolve_digest(store, digest, f"--swap {step.name}")
    store.get_object(digest)  # refuse a digest the store does not hold, before running
    models[model] = structs.replace(models[model], digest=digest)
    return models


def resolve_digest(store: Store, digest: str, what: str) -> str:
    """The full digest of an object named by a ``sha256:`` prefix of 8 or more hex digits
    (the tables print 12), refused when no object or more than one starts with it."""
    hexpart = digest.removeprefix("sha256:").lower()
    if not 8 <= len(hexpart) <= 64 or not HEX.issuperset(hexpart):
        raise UsageError(
            f"{what}={digest}: not a digest or a prefix of 8+ hex digits",
            hint="copy a digest from `replay show RUN` (sha256:…)",
        )
    if len(hexpart) == 64:
        return "sha256:" + hexpart
    found = store.objects.starting_with(hexpart)
    if not found:
        raise NotFoundError(
            f"no object in the store starts with {digest}",
            hint="`replay show RUN --json` prints every component's full digest",
        )
    if len(found) > 1:
        raise UsageError(
            f"{what}={digest}: {len(found)} objects start with it",
            hint="give more digits, or the full digest from `replay show RUN --json`",
        )
    return found[0]


def parse_swap(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        target, sep, source = value.partition("=")
        if not sep or not target or not source:
            raise UsageError(
                f"--swap {value!r} is not STEP=RUN_OR_DIGEST",
                hint="e.g. --swap pd=<run id> or --swap pd=sha256:…",
            )
        out[target] = source
    return out


def parse_tolerances(values: list[str]) -> dict[str, float]:
    """``COL=VALUE`` pairs (``--tolerance``) as a column -> absolute difference map."""
    out = {}
    for value in values:
        column, sep, number = value.partition("=")
        try:
            tolerance = float(number)
        except ValueError:
            tolerance = -1.0
        if not sep or not column or not tolerance >= 0 or tolerance == float("inf"):
            raise UsageError(
                f"--tolerance {value!r} is not COLUMN=NUMBER",
                hint="e.g. --tolerance pd=1e-9 (an absolute difference >= 0)",
            )
        out[column] = tolerance
    return out
