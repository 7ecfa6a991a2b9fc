"""``replay demo``: a day of credit decisions, an incident, and the investigation.

1. the bank's credit chain (git + DVC workspace, local remote) decides a day of applications;
2. the incident: the bureau table is refreshed and the PD model retrained and redeployed in
   place — every file the morning's decisions used is overwritten;
3. a complaint names one application decided that morning: find the run, replay it `exact`
   from the snapshot alone, and ask what today's model would have decided;
4. export the incident's evidence as a signed bundle and verify it as a regulator would:
   against the bank's key, pinned in the trust store (`replay trust add`), never the key the
   bundle carries.

The workspace lives beside the store (``<store>-demo/workspace``, its DVC remote in
``<store>-demo/workspace-remote``) or wherever the caller says, never inside the installed
package. Idempotent on a store: what was recorded once (tagged ``source=demo``) is reused, and
the workspace is brought to the point the store's story has reached.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from replay.capture.record import record
from replay.catalog import queries
from replay.cli import render
from replay.engine.replay import ReplayReport, replay
from replay.engine.timetravel import at
from replay.store.store import Store, default_path

DAY = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)
TODAY = DAY + timedelta(days=30, hours=2)
RUNS = 48  # one batch every ~12 minutes over a ten-hour business day
PIPELINE = "credit-decision"


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        render.console.print(text, highlight=False, soft_wrap=True)


@contextmanager
def _stage(
    text: str, total: int | None = None, disable: bool = False
) -> Iterator[Callable[[], None]]:
    """A transient progress line on stderr for a long stage; yields `advance` for counted
    ones. Drawn only on a terminal and never with --json (`disable`)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    shown = not disable and render.console.is_terminal and render.errors.is_terminal
    counted = (BarColumn(), MofNCompleteColumn()) if total is not None else ()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        *counted,
        TimeElapsedColumn(),
        console=render.errors,
        transient=True,
        disable=not shown,
    ) as bar:
        task = bar.add_task(text, total=total)
        yield lambda: bar.advance(task)


def _runs_tagged(store: Store, source: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = queries.sql(
        store,
        f'select run_id, clock from runs where tags like \'%"source": "{source}"%\' order by clock',
    ).to_pylist()
    return found


def default_workspace(store: Store) -> Path:
    """Where the demo builds its workspace unless told: ``<store>-demo/workspace`` beside
    the store (the workspace's DVC remote goes next to it, ``workspace-remote``)."""
    return store.location.parent / f"{store.location.name}-demo" / "workspace"


def prepare_workspace(store: Store, workspace: Path) -> Path:
    """The credit workspace at the point the store's story has reached: as built while the
    store has no incident, after the incident once the store recorded it."""
    from pipelines.credit import workspace as credit

    root = credit.build_workspace(workspace)
    if credit.after_incident(root) and not _runs_tagged(store, "demo"):
        root = credit.rebuild_workspace(root)  # another store's story: start it afresh
    elif _runs_tagged(store, "demo-today") and not credit.after_incident(root):
        credit.refresh_workspace(root)  # rebuilt after the store recorded the incident
    return root


def record_day(store: Store, workspace: Path, advance: Callable[[], None] = lambda: None) -> None:
    from pipelines.credit.generate import make_applications
    from pipelines.credit.pipeline import make_pipeline

    pipeline = make_pipeline(workspace)
    next_id = 0
    for i in range(RUNS):
        when = DAY + timedelta(minutes=12 * i + (i * 7) % 11)
        batch = make_applications(1 + (i * 5) % 17, seed=1000 + i, start_id=next_id)
        next_id += batch.num_rows
        record(
            pipeline,
            batch,
            store=store,
            record_key="application_id",
            at=when,
            tags={"source": "demo"},
        )
        advance()


def incident(store: Store, workspace: Path) -> str:
    """Refresh the bureau table, retrain PD in place, and record today's first run."""
    from pipelines.credit.generate import make_applications
    from pipelines.credit.pipeline import make_pipeline
    from pipelines.credit.workspace import refresh_workspace

    refresh_workspace(workspace)
    today = record(
        make_pipeline(workspace),
        make_applications(8, seed=7, start_id=900_000),
        store=store,
        record_key="application_id",
        at=TODAY,
        tags={"source": "demo-today"},
    )
    return today.run_id


def complaint(store: Store, today: str) -> tuple[str, str, ReplayReport]:
    """A morning application whose decision today's model would change (declines first)."""
    morning = [r for r in _runs_tagged(store, "demo") if r["clock"].hour < 12]
    best: tuple[str, str, ReplayReport] | None = None
    for run in morning:
        rep = replay(store, run["run_id"], swap={"pd": today})
        for change in rep.records:
            if "decision" not in change.changes:
                continue
            if change.changes["decision"][0] == "decline":
                return change.key, run["run_id"], rep
            best = best or (change.key, run["run_id"], rep)
    if best is None:
        raise RuntimeError("no morning decision changes under today's model")
    return best


def _side_by_side(then: ReplayReport, now: ReplayReport, app_id: str) -> list[dict[str, Any]]:
    rows = []
    for label, rep in (("as decided (replayed exact)", then), ("with today's model", now)):
        assert rep.output is not None
        match = rep.output.filter(pc.equal(rep.output["application_id"], app_id)).to_pylist()
        rows.append({"": label, **match[0]})
    return rows


def pin(public: Path, quiet: bool) -> str:
    """Pin the bank's public key as the regulator does (once: a rerun finds it pinned)."""
    from replay.core import keys, trust

    kid = keys.key_id(trust.public_key(public.read_bytes(), str(public)))
    known = next((k for k in trust.list() if k.key_id == kid), None)
    if known is not None:
        _say(quiet, f"   signer {kid} already trusted as {known.name!r} ({known.source})")
        return known.name
    name = f"demo bank {kid[7:19]}"
    trust.add(public, name)
    _say(
        quiet,
        f"   `replay trust add {shlex.quote(str(public))} --name {shlex.quote(name)}` "
        f"→ trusted {kid}",
    )
    return name


def evidence(
    store: Store, run_id: str, app_id: str, when: str, key: Path | None, out_dir: Path, quiet: bool
) -> dict[str, Any]:
    """Export the complaint's run as a signed bundle, pin the bank's key, then verify the
    bundle against the trust store, as a regulator would."""
    from replay.core import keys
    from replay.evidence.export import export
    from replay.evidence.verify import verify_bundle

    key = key or keys.default_key_path()
    if not key.exists():
        keys.init_key(key, forbidden=(store.root,))
        _say(quiet, f"   created signing key {key} (public: {keys.public_path(key)})")
    out = out_dir / f"evidence-{app_id}.bundle"
    with _stage("exporting the evidence bundle", disable=quiet):
        done = export(store, [run_id], out, key=key, question={"record": app_id, "time": when})
    signer = pin(keys.public_path(key), quiet)
    with _stage("verifying it against the trust store", disable=quiet):
        check = verify_bundle(out)
    for part, ok, detail in check.checks:
        _say(quiet, f"   {'OK  ' if ok else 'FAIL'} {part}  {detail}")
    return {
        "bundle": str(out),
        "bytes": done.size,
        "verified": check.ok,
        "key": str(keys.public_path(key)),
        "private_key": str(key),
        "signer": signer,
    }


def commands(
    store: Store, app_id: str, run_id: str, today: str, bundle: Path, key: Path
) -> list[str]:
    """The commands to do each step yourself, each runnable as printed from this folder:
    ``--store`` unless the store is the default one, ``--key`` unless the key is."""
    from replay.core import keys

    q = shlex.quote
    default = store.location == default_path().resolve()
    replay_ = "replay" if default else f"replay --store {q(str(store.root))}"
    signed = "" if key.resolve() == keys.default_key_path().resolve() else f" --key {q(str(key))}"
    shown = q(str(bundle.relative_to(Path.cwd()) if bundle.is_relative_to(Path.cwd()) else bundle))
    noon = DAY.replace(hour=12).isoformat()
    return [
        f"{replay_} find {q(app_id)}",
        f"{replay_} at {noon} --pipeline {PIPELINE} --record {q(app_id)}",
        f"{replay_} run {run_id} --mode isolated",
        f"{replay_} run {run_id} --swap pd={today}",
        f"{replay_} diff {run_id} {today}",
        f"{replay_} lineage {run_id}",
        f"{replay_} export {run_id} --record {q(app_id)} --out {shown}{signed}",
        "replay trust list",
        f"replay verify {shown}",
        f"{replay_} export {run_id} --redact applicant_id --out redacted.bundle{signed}",
        f"replay run {run_id} --bundle {shown}",
        f"{replay_} sql " + q("select decision, count(*) from credit_decision.decision group by 1"),
    ]


def _record(store: Store, workspace: Path, quiet: bool) -> str:
    """The day's runs and the incident, each once per store; the run of today's model."""
    with _stage("building the credit workspace (git + DVC)", disable=quiet):
        prepare_workspace(store, workspace)
    if not _runs_tagged(store, "demo"):
        with _stage(f"recording {DAY.date()}'s runs", total=RUNS, disable=quiet) as advance:
            record_day(store, workspace, advance)
    _say(quiet, f"   {len(_runs_tagged(store, 'demo'))} runs recorded on {DAY.date()}")
    _say(
        quiet,
        "[bold]2. The incident[/bold] — bureau table refreshed, PD model retrained "
        "and redeployed in place (dvc commit + push)",
    )
    today_runs = _runs_tagged(store, "demo-today")
    if today_runs:
        return str(today_runs[0]["run_id"])
    with _stage("the incident: refresh, retrain, dvc push", disable=quiet):
        return incident(store, workspace)


def run_demo(
    store: Store,
    *,
    workspace: Path | None = None,
    key: Path | None = None,
    out_dir: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Tell the demo's story (see the module docstring) on ``store``, printing each stage on
    the terminal unless ``quiet``; returns a summary (the runs, the replay, the bundle). The
    git + DVC ``workspace`` defaults to ``<store>-demo/workspace``, the signing ``key`` is
    created if missing, the bundle is written to ``out_dir`` (default: the current folder).
    Idempotent on a store."""
    t0 = time.perf_counter()
    workspace = Path(workspace or default_workspace(store)).resolve()
    _say(
        quiet,
        f"[bold]1. A day of credit decisions[/bold] — workspace {workspace}, store {store.root}",
    )
    today = _record(store, workspace, quiet)
    with _stage("finding a morning decision today's model would change", disable=quiet):
        app_id, _, counterfactual = complaint(store, today)
    _say(
        quiet,
        f"[bold]3. A complaint[/bold] about application {app_id}, decided on "
        f"{DAY.date()} in the morning",
    )
    found = at(store, DAY.replace(hour=12), PIPELINE, record=app_id)
    _say(
        quiet,
        f"   `replay at {DAY.replace(hour=12).isoformat()} --pipeline {PIPELINE} "
        f"--record {app_id}` → run {found['run_id']} "
        f"(clock {found['clock'].isoformat()})",
    )
    exact = replay(store, found["run_id"])
    if not quiet:
        render.report(exact)
    _say(quiet, f"[bold]4. What would today's model have decided?[/bold] (PD step of run {today})")
    mine = next(r for r in counterfactual.records if r.key == app_id)
    if not quiet:
        render.table(
            _side_by_side(exact, counterfactual, app_id),
            ("", "pd", "decision", "reason_codes"),
            f"application {app_id}: as decided, and with today's PD model",
        )
    _say(quiet, "[bold]5. The evidence[/bold] — a signed bundle, verified as a regulator would")
    proof = evidence(
        store,
        found["run_id"],
        app_id,
        found["clock"].isoformat(),
        key,
        out_dir or Path.cwd(),
        quiet,
    )
    todo = commands(
        store, app_id, found["run_id"], today, Path(proof["bundle"]), Path(proof["private_key"])
    )
    if not quiet:
        _say(quiet, "\n[bold]Do it yourself:[/bold]")
        for line in todo:
            render.console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        _say(quiet, f"\ndemo finished in {time.perf_counter() - t0:.1f} s")
    return {
        "store": str(store.root),
        "workspace": str(workspace),
        "application": app_id,
        "decided_by": found["run_id"],
        "replay": exact.verdict,
        "today_run": today,
        "counterfactual": {c: list(v) for c, v in mine.changes.items()},
        "evidence": proof,
        "commands": todo,
    }
