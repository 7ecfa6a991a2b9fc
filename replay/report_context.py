"""The facts the human report shows, gathered from runs, replays and the checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from replay.checkpoint import Checkpoint
from replay.engine import ReplayReport
from replay.pipeline import INPUT
from replay.rebuild import RecordedRun
from replay.render import step_detail
from replay.store import Store

RETENTION = [
    {"field": "input rows, every step output, decisions and adverse-action reason codes",
     "regulation": "US Regulation B, 12 CFR 1002.12(b)",
     "why": "keep the application, the information used to evaluate it, the action taken and "
            "the specific reasons for adverse action: 25 months (12 for business credit)"},
    {"field": "every run's manifest, ledger entry and component digests",
     "regulation": "EU AI Act Art. 12, Art. 19 / 26(6)",
     "why": "automatic logging of events over the lifetime of a high-risk system (credit "
            "scoring, Annex III 5(b)); logs kept at least six months"},
    {"field": "code, models, data versions, environment and image, lineage",
     "regulation": "SR 26-2 / OCC 2026-13 (formerly SR 11-7); EBA/GL/2020/06 §4.3.3",
     "why": "documentation that lets an independent party understand and replicate the model"},
]
MAX_DECISIONS = 300
SCORE_COLUMNS = ("pd", "score", "probability", "fraud_score")


def _environment(store: Store, run: RecordedRun) -> dict[str, Any]:
    env = json.loads(store.get_object(run.manifest["env"]))
    return {"python": env["python"]["version"],
            "platform": " ".join(str(env["platform"][k]) for k in ("system", "release",
                                                                  "machine")),
            "cpu": env["cpu"]["model"], "numpy": env["blas"].get("numpy"),
            "image": env["image"]["digest"], "packages_lock": env["packages"]["lock_sha256"]}


def _chain(run: RecordedRun, rep: ReplayReport) -> list[dict[str, Any]]:
    verdicts = {s.name: s for s in rep.steps}
    outputs = {s["name"]: s["output"] for s in run.manifest["steps"]}
    chain = []
    for step in run.spec["steps"]:
        result = verdicts.get(step["name"])
        chain.append({
            "step": step["name"], "inputs": step["inputs"],
            "verdict": result.verdict if result else "not replayed",
            "detail": step_detail(result) if result else "",
            "code": step["code"], "source": step["source"], "params": step["params"],
            "output": outputs.get(step["name"]),
            "models": {n: m["digest"] for n, m in step["models"].items()},
            "data": {n: {"sha256": d["sha256"], "dvc_rev": (d.get("dvc") or {}).get("rev"),
                         "dvc_md5": (d.get("dvc") or {}).get("md5"),
                         "remote": (d.get("dvc") or {}).get("remote")}
                     for n, d in step["data"].items()}})
    return chain


def _decisions(run: RecordedRun, final: pa.Table | None) -> list[dict[str, Any]]:
    if final is None:
        return []
    key = run.manifest.get("record_key")
    score = next((c for c in SCORE_COLUMNS if c in final.column_names), None)
    rows = final.slice(0, MAX_DECISIONS).to_pylist()
    return [{"key": r.get(key) if key else i, "decision": r.get("decision"),
             "reason_codes": r.get("reason_codes") or [], "score": r.get(score) if score else None}
            for i, r in enumerate(rows)]


def _scores(run: RecordedRun, rep: ReplayReport, final: pa.Table | None) -> dict[str, Any]:
    score = next((c for c in SCORE_COLUMNS if final is not None and c in final.column_names),
                 None)
    if score is None or final is None or rep.output is None \
            or score not in rep.output.column_names:
        return {"column": score or "", "recorded": [], "replayed": []}
    return {"column": score, "recorded": final.column(score).to_pylist(),
            "replayed": rep.output.column(score).to_pylist()}


def context(store: Store, runs: list[RecordedRun], reports: dict[str, ReplayReport],
            cp: Checkpoint, question: dict[str, Any],
            redact: Callable[[pa.Table], pa.Table] | None = None) -> dict[str, Any]:
    """The report's facts; ``redact`` is applied to every table before it is shown."""
    out_runs = []
    for run in runs:
        rep = reports[run.run_id]
        if redact is not None and rep.output is not None:
            rep = replace(rep, output=redact(rep.output))
        last = run.manifest["steps"][-1]["name"]
        final = run.table(last) if last != INPUT and run.has_table(last) else None
        final = redact(final) if redact is not None and final is not None else final
        out_runs.append({
            "run_id": run.run_id, "pipeline": run.manifest["pipeline"],
            "clock": run.manifest["clock"], "version": run.manifest["version"],
            "verdict": rep.verdict, "first_divergence": rep.first_divergence,
            "environment": _environment(store, run),
            "drift": [{"what": c.what if c.where != "package" else f"package {c.what}",
                       "recorded": str(c.before), "now": str(c.after)} for c in rep.drift],
            "chain": _chain(run, rep), "decisions": _decisions(run, final),
            "scores": _scores(run, rep, final)})
    record = question.get("record")
    title = f"Evidence for record {record}" if record else \
        f"Evidence for {len(runs)} run{'s' if len(runs) > 1 else ''}"
    return {"title": title, "generated_at": datetime.now(UTC).isoformat(),
            "question": {"pipeline": runs[0].manifest["pipeline"],
                         "run_ids": [r.run_id for r in runs], "time": question.get("time"),
                         "record": record},
            "ledger": {"tree_size": cp.tree_size, "root_hash": cp.root, "key_id": cp.key_id,
                       "checkpoint_time": cp.timestamp},
            "redacted": list(question.get("redacted", [])), "runs": out_runs,
            "retention": RETENTION}
