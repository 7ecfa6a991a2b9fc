"""The facts the human report shows, gathered from runs, replays and the checkpoint, and
``layout``: the same facts grouped as both renderers show them (one chain per version, one
environment per recorded environment, a summary row per run, the runs shown in detail)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from replay.core.cells import short_digest, step_detail
from replay.core.kinds import PRODUCTION
from replay.core.manifest import Manifest, step_components
from replay.core.pipeline import INPUT
from replay.engine.recorded import RecordedRun, load_environment
from replay.engine.replay import ReplayReport
from replay.store.checkpoint import Checkpoint
from replay.store.store import Store

RETENTION = [
    {
        "field": "input rows, every step output, decisions and adverse-action reason codes",
        "regulation": "US Regulation B, 12 CFR 1002.12(b)",
        "why": "keep the application, the information used to evaluate it, the action taken and "
        "the specific reasons for adverse action: 25 months (12 for business credit)",
    },
    {
        "field": "every run's manifest, ledger entry and component digests",
        "regulation": "EU AI Act Art. 12, Art. 19 / 26(6)",
        "why": "automatic logging of events over the lifetime of a high-risk system (credit "
        "scoring, Annex III 5(b)); logs kept at least six months",
    },
    {
        "field": "code, models, data versions, environment and image, lineage",
        "regulation": "SR 26-2 / OCC 2026-13 (formerly SR 11-7); EBA/GL/2020/06 §4.3.3",
        "why": "documentation that lets an independent party understand and replicate the model",
    },
]
Context = dict[str, Any]
MAX_DECISIONS = 300
DETAIL_ALL = 3  # up to this many runs, every run is shown in detail
ORDER = {"exact": 0, "equivalent": 1, "diverged": 2}  # worst last, as the engine orders them
SCORE_COLUMNS = ("pd", "score", "probability", "fraud_score")


def _environment(store: Store, run: RecordedRun) -> dict[str, Any]:
    env = load_environment(store, run.manifest.env)
    return {
        "python": env.python.version,
        "platform": env.platform.summary,
        "cpu": env.cpu.model,
        "numpy": env.blas.get("numpy"),
        "image": env.image.digest,
        "packages_lock": env.packages.lock_sha256,
    }


def _chain(run: RecordedRun, rep: ReplayReport) -> list[dict[str, Any]]:
    verdicts = {s.name: s for s in rep.steps}
    outputs = {s.name: s.output for s in run.manifest.steps}
    chain = []
    for step in run.spec.steps:
        result = verdicts.get(step.name)
        parts = list(step_components(step))
        chain.append(
            {
                "step": step.name,
                "inputs": step.inputs,
                "verdict": result.verdict if result else "not replayed",
                "detail": step_detail(result) if result else "",
                "code": step.code,
                "source": step.source,
                "params": step.params,
                "output": outputs.get(step.name),
                "models": {c.name: c.digest for c in parts if c.kind == "model"},
                "data": {
                    c.name: {
                        "sha256": c.digest,
                        "dvc_rev": c.dvc.rev if c.dvc else None,
                        "dvc_md5": c.dvc.md5 if c.dvc else None,
                        "remote": c.dvc.remote if c.dvc else None,
                    }
                    for c in parts
                    if c.kind == "data"
                },
            }
        )
    return chain


def _decisions(
    run: RecordedRun, final: pa.Table | None, asked: frozenset[int] = frozenset()
) -> list[dict[str, Any]]:
    """The first MAX_DECISIONS rows, and the asked record's rows wherever they are; the
    asked ones carry ``asked`` so a renderer can mark them without comparing keys."""
    if final is None:
        return []
    key = run.manifest.record_key
    score = next((c for c in SCORE_COLUMNS if c in final.column_names), None)
    index = [
        *range(min(final.num_rows, MAX_DECISIONS)),
        *sorted(i for i in asked if i >= MAX_DECISIONS),
    ]
    rows = final.take(pa.array(index, pa.int64())).to_pylist()
    return [
        {
            "key": r.get(key) if key else i,
            "decision": r.get("decision"),
            "reason_codes": r.get("reason_codes") or [],
            "asked": i in asked,
            "score": r.get(score) if score else None,
        }
        for i, r in zip(index, rows, strict=True)
    ]


def _asked_rows(run: RecordedRun, final: pa.Table | None, record: str | None) -> frozenset[int]:
    """Where the asked record sits in the run's output, found before any redaction."""
    key = run.manifest.record_key
    if final is None or not record or not key or key not in final.column_names:
        return frozenset()
    return frozenset(
        i for i, v in enumerate(final.column(key).to_pylist()) if v is not None and str(v) == record
    )


def _tally(final: pa.Table | None) -> dict[str, int]:
    """Decisions counted by value, values in alphabetical order so that rows of a summary
    read alike (every row of the output, not only those shown)."""
    if final is None or "decision" not in final.column_names:
        return {}
    counts = Counter("-" if v is None else str(v) for v in final.column("decision").to_pylist())
    return dict(sorted(counts.items()))


def _scores(run: RecordedRun, rep: ReplayReport, final: pa.Table | None) -> dict[str, Any]:
    score = next((c for c in SCORE_COLUMNS if final is not None and c in final.column_names), None)
    if score is None or final is None or rep.output is None or score not in rep.output.column_names:
        return {"column": score or "", "recorded": [], "replayed": []}
    return {
        "column": score,
        "recorded": final.column(score).to_pylist(),
        "replayed": rep.output.column(score).to_pylist(),
    }


def _kind_label(manifest: Manifest) -> str:
    """In a regulator's words; empty for a production decision (the record itself)."""
    if manifest.run_kind == PRODUCTION:
        return ""
    tags = manifest.tags
    asked = f" as deployed at {tags['as_of']}" if tags.get("as_of") else ""
    return (
        f"What-if run: new rows put through the pipeline{asked} to answer a question. "
        "It is not a decision the bank made."
    )


def _run_facts(
    store: Store,
    run: RecordedRun,
    rep: ReplayReport,
    record: str | None,
    redact: Callable[[pa.Table], pa.Table] | None,
) -> dict[str, Any]:
    last = run.manifest.steps[-1].name
    final = run.table(last) if last != INPUT and run.has_table(last) else None
    asked = _asked_rows(run, final, record)
    if redact is not None:
        final = redact(final) if final is not None else None
        rep = replace(rep, output=redact(rep.output)) if rep.output is not None else rep
    return {
        "run_id": run.run_id,
        "kind": run.manifest.run_kind,
        "kind_label": _kind_label(run.manifest),
        "pipeline": run.manifest.pipeline,
        "clock": run.manifest.clock,
        "version": run.manifest.version,
        "verdict": rep.verdict,
        "first_divergence": rep.first_divergence,
        "rows": run.manifest.input.rows,
        "tally": _tally(final),
        "holds_record": bool(asked),
        "decided": final.num_rows if final is not None else 0,
        "decisions_first": min(final.num_rows if final is not None else 0, MAX_DECISIONS),
        "environment": _environment(store, run),
        "drift": [
            {
                "what": c.what if c.where != "package" else f"package {c.what}",
                "recorded": str(c.before),
                "now": str(c.after),
            }
            for c in rep.drift
        ],
        "chain": _chain(run, rep),
        "decisions": _decisions(run, final, asked),
        "scores": _scores(run, rep, final),
    }


def context(
    store: Store,
    runs: list[RecordedRun],
    reports: dict[str, ReplayReport],
    cp: Checkpoint,
    question: dict[str, Any],
    redact: Callable[[pa.Table], pa.Table] | None = None,
) -> dict[str, Any]:
    """The report's facts; ``redact`` is applied to every table before it is shown.

    When ``question`` names a record, the run that decided it is the newest production run
    holding it (by clock, then ledger order); its clock is the question's ``decided_at``,
    which a window start (``question["time"]``) is not."""
    record = question.get("record")
    record = str(record) if record not in (None, "") else None
    out_runs = [_run_facts(store, run, reports[run.run_id], record, redact) for run in runs]
    # A what-if run holding the record asked a question about it; it decided nothing.
    holders = [
        (r["kind"] == PRODUCTION, datetime.fromisoformat(r["clock"]), i)
        for i, r in enumerate(out_runs)
        if r["holds_record"]
    ]
    decided = out_runs[max(holders)[2]] if holders else None
    title = (
        f"Evidence for record {record}"
        if record
        else f"Evidence for {len(runs)} run{'s' if len(runs) > 1 else ''}"
    )
    return {
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(),
        "question": {
            "pipeline": runs[0].manifest.pipeline,
            "run_ids": [r.run_id for r in runs],
            "time": question.get("time"),
            "record": record,
            "decided_at": decided["clock"] if decided else None,
            "decided_by": decided["run_id"] if decided else None,
        },
        "ledger": {
            "tree_size": cp.tree_size,
            "root_hash": cp.root,
            "key_id": cp.key_id,
            "checkpoint_time": cp.timestamp,
        },
        "redacted": list(question.get("redacted", [])),
        "runs": out_runs,
        "retention": RETENTION,
    }


# What both renderers show, grouped from the facts above (pure: hand-made contexts work too).


def component_rows(step: Context, output: bool = True) -> list[tuple[str, str]]:
    """Every digest that pins a step, as (what, value) rows, data versions last; ``output``
    False leaves out the one digest that belongs to a run rather than to its version."""
    names = ("code", "source", "params", "output") if output else ("code", "source", "params")
    rows = [(k, str(step[k])) for k in names if step.get(k)]
    rows += [(f"model {n}", str(d)) for n, d in sorted((step.get("models") or {}).items())]
    for name, d in sorted((step.get("data") or {}).items()):
        rows.append((f"data {name}", str(d.get("sha256"))))
        rows += [
            (f"data {name} {label}", str(d[k]))
            for k, label in (("dvc_rev", "DVC rev"), ("dvc_md5", "DVC md5"), ("remote", "remote"))
            if d.get(k)
        ]
    return rows


def _worst(verdicts: Iterable[Any]) -> str:
    # A step that was not replayed, or a verdict this report does not know, counts as worst.
    return str(max(verdicts, key=lambda v: ORDER.get(str(v), len(ORDER)), default="?"))


def counted(counts: dict[str, int]) -> str:
    """``approve 12 · decline 3``: values with how often they occur, in the order given."""
    return " · ".join(f"{value} {n}" for value, n in counts.items()) or "-"


def _groups(runs: list[Context], key: Callable[[Context], str]) -> list[list[Context]]:
    found: dict[str, list[Context]] = {}
    for run in runs:
        found.setdefault(key(run), []).append(run)
    return list(found.values())


def _version_steps(runs: list[Context]) -> list[Context]:
    """A version's chain: the components of its first run (runs of one version share every
    component digest), each step's verdict counted over all its runs."""
    steps = []
    for step in runs[0].get("chain") or []:
        name = step.get("step")
        results: list[tuple[Any, Context]] = [
            (r.get("run_id"), next((s for s in r.get("chain") or [] if s.get("step") == name), {}))
            for r in runs
        ]
        counts = Counter(str(s.get("verdict", "not replayed")) for _, s in results)
        details = [
            f"run {rid}: {s['detail']}" if len(runs) > 1 else str(s["detail"])
            for rid, s in results
            if s.get("detail")
        ]
        steps.append(
            {
                **step,
                "verdict": counted(dict(counts.most_common()))
                if len(counts) > 1
                else next(iter(counts)),
                "worst": _worst(counts),
                "detail": "\n".join(details),
                "components": component_rows(step, False),
            }
        )
    return steps


def _pinned_by(run: Context) -> str:
    # The version and, should they ever disagree with it, the components themselves: a
    # chain is shown for what the runs actually recorded, never assumed from the digest.
    return json.dumps(
        [run.get("version"), [component_rows(s, False) for s in run.get("chain") or []]],
        default=str,
    )


def covers(group: list[Context], runs: list[Context]) -> str:
    """Which runs a chain or environment covers: every run, or the ids of those it does."""
    if len(group) == len(runs) > 1:
        return f"Covers all {len(runs)} runs of this report (listed in section 2)."
    return f"Covers {len(group)} run{'s' * (len(group) != 1)}: " + ", ".join(
        str(r.get("run_id")) for r in group
    )


def _detail_note(runs: list[Context], detail: list[Context], record: Any) -> str:
    if len(runs) <= DETAIL_ALL:
        return f"Every run is shown in detail{'; the asked record is highlighted' * bool(record)}."
    if record and detail:
        return (
            f"Shown in detail: the run{'s' * (len(detail) > 1)} holding record {record}, "
            "highlighted. Every run is counted in section 2."
        )
    if record:
        return (
            f"None of the {len(runs)} runs holds record {record}, so none is shown in "
            "detail. Every run is counted in section 2."
        )
    return (
        f"No record was asked about, so none of the {len(runs)} runs is shown in detail "
        "(export with --record to detail the run that decided it). Every run is counted "
        "in section 2."
    )


def layout(context: Context) -> Context:
    """What both renderers show, grouped: the overall verdict, a summary row per run, one
    chain per version, one environment per recorded environment, and the runs in detail."""
    runs = list(context.get("runs") or [])
    record = (context.get("question") or {}).get("record")
    detail = runs if len(runs) <= DETAIL_ALL else [r for r in runs if r.get("holds_record")]
    verdicts = Counter(str(r.get("verdict")) for r in runs)
    return {
        "verdict": _worst(verdicts),
        "counts": counted(dict(verdicts.most_common())),
        "summary": [
            {
                "run_id": r.get("run_id"),
                "clock": r.get("clock"),
                "kind": r.get("kind"),
                "version": short_digest(r.get("version")),
                "verdict": r.get("verdict"),
                "rows": r.get("rows"),
                "decisions": counted(r.get("tally") or {}),
                "asked": bool(r.get("holds_record")),
            }
            for r in runs
        ],
        "whatif": sorted({str(r["kind_label"]) for r in runs if r.get("kind_label")}),
        "versions": [
            {
                "version": g[0].get("version"),
                "run_ids": [r.get("run_id") for r in g],
                "covers": covers(g, runs),
                "steps": _version_steps(g),
            }
            for g in _groups(runs, _pinned_by)
        ],
        "environments": [
            {
                "run_ids": [r.get("run_id") for r in g],
                "covers": covers(g, runs),
                "environment": g[0].get("environment") or {},
                "drift": g[0].get("drift") or [],
            }
            for g in _groups(
                runs,
                lambda r: json.dumps(
                    [r.get("environment"), r.get("drift")], sort_keys=True, default=str
                ),
            )
        ],
        "detail": detail,
        "detail_note": _detail_note(runs, detail, record),
    }


def outputs(run: Context) -> list[tuple[Any, ...]]:
    """A run's own replay result per step: its verdict, recorded output digest and detail."""
    return [
        (s.get("step"), s.get("verdict"), s.get("output"), s.get("detail") or "")
        for s in run.get("chain") or []
    ]


def decisions_caption(run: Context) -> str:
    """How many decisions the run made, and which of them its table shows."""
    shown = run.get("decisions") or []
    total = int(run.get("decided", len(shown)))
    first = int(run.get("decisions_first", len(shown)))
    head = f"{total} decision{'s' * (total != 1)}"
    if total <= first:
        return head
    asked = " and the asked record" if any(d.get("asked") for d in shown[first:]) else ""
    return f"{head}, of which the first {first}{asked} are shown"
