"""Time travel: which run was deciding at a moment, and the pipeline as it was deployed then.

A run's span is its logical clock plus its duration. ``at(T)`` is the run whose span contains
T (the latest such), else the latest run at or before T; with a record key, the latest run at
or before T that decided that record.

Two names, because one of them executes recorded code and names should warn: ``at`` only
finds (a catalog question confirmed in the ledger); ``run_at`` finds and replays what it
found (the ``replay at`` command); ``run_as_of`` runs new rows through the pipeline as it
was deployed then (``replay at --input``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from replay.capture.bind import Binding, BoundStep
from replay.capture.record import RecordResult, prepare_input, record_with
from replay.core.kinds import PRODUCTION, WHATIF
from replay.core.pipeline import Pipeline
from replay.engine.recorded import load_code, load_run, step_kwargs
from replay.engine.replay import ReplayReport, replay
from replay.errors import NotFoundError
from replay.store.store import Store


def at(
    store: Store,
    when: datetime,
    pipeline: str,
    record: str | None = None,
    kind: str | None = PRODUCTION,
) -> dict[str, Any]:
    """The run of ``pipeline`` that was deciding at ``when`` (see module docstring); only
    runs of ``kind`` count (None: any kind), so a what-if run never answers for production."""
    from replay.catalog.truth import answer

    params: dict[str, Any] = {"p": pipeline, "t": when}
    of_kind = ""
    if kind is not None:
        of_kind, params["kind"] = " and r.kind = $kind", kind
    if record is None:
        query = (
            "select r.run_id, r.clock, r.seq, r.pipeline, r.entry_end, null as row, "
            "r.kind from runs r where r.pipeline = $p and r.clock <= $t"
            + of_kind
            + " order by (r.clock + (r.ended - r.started) >= $t) desc, r.clock desc, "
            "r.seq desc limit 1"
        )
    else:
        query = (
            "select r.run_id, r.clock, r.seq, r.pipeline, r.entry_end, k.row, r.kind "
            "from records k join runs r using (run_id) where k.key = $k and "
            "r.pipeline = $p and r.clock <= $t"
            + of_kind
            + " order by r.clock desc, r.seq desc limit 1"
        )
        params["k"] = record

    def ask(con: Any) -> tuple[list[dict[str, Any]], Any]:
        rows = con.execute(query, params).fetchall()
        found = [
            dict(
                zip(
                    ("run_id", "clock", "seq", "pipeline", "entry_end", "row", "kind"),
                    r,
                    strict=True,
                )
            )
            for r in rows
        ]
        first = (
            None
            if found
            else con.execute(
                "select min(r.clock) from runs r where r.pipeline = $p" + of_kind,
                {k: v for k, v in params.items() if k in ("p", "kind")},
            ).fetchall()[0][0]
        )
        return found, first

    # The catalog is only an index: its answer is confirmed in the ledger and blocks.
    rows, first = answer(store, ask, lambda result: result[0], record)
    if rows:
        return {k: rows[0][k] for k in ("run_id", "clock", "seq", "kind")}
    what = f"decided record {record!r}" if record else "ran"
    runs = f"{kind} run" if kind else "run"
    if first is None:
        raise NotFoundError(
            f"no {runs} of pipeline {pipeline!r} is recorded",
            hint='list pipelines with `replay sql "select distinct pipeline '
            'from runs"`' + ("; --kind all counts every kind of run" if kind else ""),
        )
    raise NotFoundError(
        f"no {runs} of {pipeline!r} {what} at or before {when.isoformat()}",
        hint=f"its first {runs} is at {first.isoformat()}",
    )


def run_at(
    store: Store,
    when: datetime,
    pipeline: str,
    record: str | None = None,
    *,
    kind: str | None = PRODUCTION,
    mode: str = "chained",
    tolerances: dict[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], ReplayReport]:
    """Find the run ``at`` names and replay it (its recorded code runs): what ``pipeline``
    did at ``when`` (for ``record``), re-executed. Returns what ``at`` found (``run_id``,
    ``clock``, ``seq``, ``kind``) and the replay's report."""
    found = at(store, when, pipeline, record, kind=kind)
    rep = replay(store, found["run_id"], mode=mode, progress=progress, tolerances=tolerances)
    return found, rep


def as_deployed(store: Store, run_id: str) -> Binding:
    """The pipeline exactly as a recorded run had it: its code, models, data and params."""
    run = load_run(store, store.entry(run_id))
    steps = []
    for spec in run.spec.steps:
        steps.append(BoundStep(load_code(store, spec), spec, step_kwargs(store, spec), ()))
    pipeline = Pipeline(
        run.spec.pipeline,
        [s.step for s in steps],
        personal=run.spec.personal,
        decisions=run.spec.decisions or (),
    )
    return Binding(pipeline, tuple(steps), run.spec, run.manifest.version)


def run_as_of(
    store: Store,
    when: datetime,
    pipeline: str,
    inputs: Any,
    record_key: str | None = None,
    source: str = "",
) -> RecordResult:
    """Run new rows through ``pipeline`` as deployed at ``when``; recorded as a
    counterfactual run tagged with the run it was rebuilt from."""
    then = at(store, when, pipeline)
    binding = as_deployed(store, then["run_id"])
    table = prepare_input(inputs, record_key)
    tags = {
        "counterfactual": "true",
        "as_of": when.isoformat(),
        "deployed_by_run": then["run_id"],
        "source": source,
    }
    return record_with(
        binding,
        table,
        store=store,
        record_key=record_key,
        at=when,
        durable=None,
        tags=tags,
        kind=WHATIF,
    )
