"""``replay demo``: a simulated day of credit decisions, recorded and investigated.

The demo is idempotent on a store: the day is recorded once (tagged ``source=demo``); later
demos go straight to the investigation.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from replay import queries, render
from replay.capture import record
from replay.store import Store

DAY = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)
RUNS = 48  # one batch every ~12 minutes over a ten-hour business day


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        render.console.print(text, highlight=False)


def record_day(store: Store, workspace: Path, quiet: bool) -> int:
    from pipelines.credit.generate import make_applications
    from pipelines.credit.pipeline import make_pipeline

    pipeline = make_pipeline(workspace)
    next_id = 0
    for i in range(RUNS):
        at = DAY + timedelta(minutes=12 * i + (i * 7) % 11)
        batch = make_applications(1 + (i * 5) % 17, seed=1000 + i, start_id=next_id)
        next_id += batch.num_rows
        record(pipeline, batch, store=store, record_key="application_id", at=at,
               tags={"source": "demo"})
    return next_id


def run_demo(store: Store, *, workspace: Path | None = None, quiet: bool = False
             ) -> dict[str, Any]:
    from pipelines.credit import pipeline as credit
    from pipelines.credit.workspace import build_workspace

    t0 = time.perf_counter()
    workspace = Path(workspace or credit.WORKSPACE)
    _say(quiet, f"[bold]1. The bank's credit pipeline[/bold] — DVC workspace {workspace}")
    build_workspace(workspace)
    recorded = queries.sql(store, "select count(*) as n from runs "
                                  "where tags like '%\"source\": \"demo\"%'").column(0)[0]
    if recorded.as_py() == 0:
        _say(quiet, f"[bold]2. A day of decisions[/bold] — recording {RUNS} runs on "
                    f"{DAY.date()} into {store.root}")
        record_day(store, workspace, quiet)
    else:
        _say(quiet, f"[bold]2. A day of decisions[/bold] — already recorded in {store.root}")
    day_runs = queries.runs(store, pipeline="credit-decision", since=DAY,
                            until=DAY + timedelta(days=1), limit=1000)
    morning = sorted(day_runs, key=lambda r: r["clock"])[3]
    app_id = _first_application(store, morning["run_id"])
    found = queries.find(store, app_id)
    summary = queries.sql(store, "select decision, count(*) as applications from "
                                 "credit_decision.decision group by 1 order by 2 desc")
    if not quiet:
        render.table(day_runs[:5], ("run_id", "clock", "rows", "status"),
                     f"latest of {len(day_runs)} runs on {DAY.date()}")
        render.table(found, ("run_id", "clock", "row"), f"who decided {app_id}?")
        render.arrow(summary, "decisions that day")
        _say(quiet, "\n[bold]Do it yourself:[/bold]\n"
                    "  replay runs --pipeline credit-decision\n"
                    f"  replay find {app_id}\n"
                    f"  replay show {found[0]['run_id']}\n"
                    "  replay sql \"select decision, count(*) from credit_decision.decision "
                    "group by 1\"")
        _say(quiet, f"\ndemo finished in {time.perf_counter() - t0:.1f} s")
    return {"store": str(store.root), "workspace": str(workspace), "runs": len(day_runs),
            "application": app_id, "decided_by": found[0]["run_id"],
            "decisions": summary.to_pylist()}


def _first_application(store: Store, run_id: str) -> str:
    rows = queries.sql(store, f"select key from records where run_id = '{run_id}' "
                              "order by row limit 1")
    return str(rows.column(0)[0].as_py())
