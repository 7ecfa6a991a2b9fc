"""``replay batch``: bulk replay of an incident window on Dask (see replay.cli.app)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from replay.cli import render
from replay.cli.app import CpusOpt, JsonOpt, MemoryOpt, Mode, PidsOpt, app, handled, open_store
from replay.core.timeparse import parse_time

DIVERGED_SHOWN = 20


@contextmanager
def runs_progress(disable: bool) -> Iterator[Callable[[int, int], None]]:
    """A bar of runs done with runs/s and the time left (stderr; none when not a terminal)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=render.errors,
        transient=True,
        disable=disable or not render.errors.is_terminal,
    ) as bar:
        task = bar.add_task("", total=None, rate="")

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            speed = bar.tasks[0].speed
            bar.update(task, rate=f"{speed:.0f} runs/s" if speed else "")

        yield tick


def show_summary(summary: Any) -> None:
    from rich.text import Text  # here: `replay --help` imports this module, not rich

    verdicts = [
        {"verdict": Text(v, style=render.VERDICT_STYLE.get(v, "red")), "runs": n}
        for v, n in summary.by_verdict.items()
    ]
    render.console.print(
        f"job {summary.job}: {len(summary.rows)} runs, {summary.replayed} replayed now in "
        f"{summary.seconds:.1f} s on {summary.workers} workers ({summary.runs_per_second:.1f} "
        "runs/s, cluster start included)",
        highlight=False,
        markup=False,
    )
    render.table(verdicts, ("verdict", "runs"))
    if summary.diverged:
        shown = [
            {
                "run": r["run_id"],
                "verdict": Text(r["verdict"], style="red"),
                "first diverging step": r["first_divergence"],
                "what differs": r["error"],
            }
            for r in summary.diverged[:DIVERGED_SHOWN]
        ]
        more = len(summary.diverged) > DIVERGED_SHOWN
        render.table(
            shown,
            ("run", "verdict", "first diverging step", "what differs"),
            f"{len(summary.diverged)} runs diverged or failed"
            + (f" (first {DIVERGED_SHOWN}; --json lists all)" if more else ""),
            drop=("what differs",),
        )
    if summary.flips:
        render.table(
            [{"flip": f, "records": n} for f, n in summary.flips.items()],
            ("flip", "records"),
            "decisions flipped, by value and reason code",
        )


@app.command("batch")
@handled
def batch_cmd(
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Only this pipeline.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Window start (logical clock).")] = None,
    until: Annotated[str | None, typer.Option(help="Window end (logical clock).")] = None,
    mode: Mode = "chained",
    swap: Annotated[
        list[str] | None,
        typer.Option(
            "--swap", help="STEP=RUN or STEP[.MODEL]=sha256:…: a counterfactual of every run."
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="tcp://HOST:PORT",
            help="A Dask scheduler (default: 2 worker processes on this machine).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, metavar="N", help="Without --cluster: worker processes to start.")
    ] = 2,
    job: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Name the job (default: the time and a random tag)."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(metavar="JOB", help="Finish this job: replay only runs without a result."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Write the rows (Parquet) and an HTML page here."),
    ] = None,
    in_container: Annotated[
        bool,
        typer.Option(
            "--in-container",
            help="Replay each chunk inside its runs' recorded image, on each worker's Docker "
            "engine (no network, store read-only).",
        ),
    ] = False,
    memory: MemoryOpt = "2g",
    cpus: CpusOpt = 1.0,
    pids: PidsOpt = 256,
    as_json: JsonOpt = False,
) -> None:
    """Replay every run of a window on a Dask cluster; exit 1 if any diverges."""
    from replay.docker.sandbox import Limits
    from replay.engine.replay import parse_swap
    from replay.evidence.batch import batch

    store = open_store()
    with runs_progress(disable=as_json) as tick:
        summary = batch(
            store,
            pipeline=pipeline,
            since=parse_time(since) if since is not None else None,
            until=parse_time(until) if until is not None else None,
            mode=mode,
            swap=parse_swap(swap) if swap else None,
            cluster=cluster,
            job=job,
            resume=resume,
            workers=workers,
            report=report,
            progress=tick,
            in_container=in_container,
            limits=Limits(memory, cpus, pids),
        )
    if as_json:
        render.emit_json(summary.as_json())
    else:
        show_summary(summary)
    if not summary.ok and not summary.swap:
        raise typer.Exit(1)
