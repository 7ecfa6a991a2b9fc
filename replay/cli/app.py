"""The ``replay`` command: argument parsing, printing and exit codes over the library.

Every command is one library call of the same name. ReplayError becomes a one-line message,
a hint and its exit code (see replay.errors), printed with markup off; with ``--json``, one
JSON object on stderr (``error``, ``hint``, ``exit_code``). Third-party errors that get this
far are mapped in one table (``translate``); anything else is an internal error (exit 70)
whose traceback only ``--debug`` shows.
"""

# No `from __future__ import annotations` in the command modules: typer would eval() every
# command's annotations from strings on each start (~13 ms of `replay --help` and `find`).

import errno
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import typer.core

from replay.cli import render
from replay.cli.params import shape_params
from replay.core import kinds
from replay.core.kinds import PRODUCTION
from replay.core.lazy import Lazy
from replay.core.timeparse import parse_time
from replay.errors import CatalogError, InputError, ReplayError, StoreError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from replay.store.store import Store

# Imported on first use: `replay --help` must not pay for DuckDB and pyarrow.
if TYPE_CHECKING:
    from replay.catalog import queries
else:
    queries = Lazy("replay.catalog.queries")
INTERNAL_ERROR = 70
F = TypeVar("F", bound=Callable[..., Any])


def hoist_store(args: list[str]) -> list[str]:
    """``--store PATH`` (``-s PATH``, ``--store=PATH``) after the command means what it means
    before it, so it is moved in front; ``verify --store PATH`` keeps its flag too: it
    verifies that store. A ``--store`` followed by an option or nothing is verify's flag."""
    front: list[str] = []
    i, command = 0, None
    while i < len(args) and command is None:  # the global options, then the command
        if args[i] in ("--store", "-s") and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        if not args[i].startswith("-"):
            command = args[i]
        front.append(args[i])
        i += 1
    moved: list[str] = []
    rest = args[i:]
    out: list[str] = []
    j = 0
    while j < len(rest):
        arg = rest[j]
        if arg == "--":
            out += rest[j:]
            break
        value = None
        if arg in ("--store", "-s") and j + 1 < len(rest) and not rest[j + 1].startswith("-"):
            value, j = rest[j + 1], j + 2
        elif arg.startswith("--store="):
            value, j = arg.partition("=")[2], j + 1
        else:
            out.append(arg)
            j += 1
            continue
        moved += ["--store", value]
        if command == "verify":
            out.append("--store")
    return moved + front + out


class _StoreAnywhere(typer.core.TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shape_params(self)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_store(list(args)))


# Help and usage errors in click's plain text, not rich panels: typer's rich help imports
# rich, markdown-it and pygments (~60-70 ms, a third of `replay --help`; issue 16).
PLAIN = None

app = typer.Typer(
    cls=_StoreAnywhere,
    rich_markup_mode=PLAIN,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Snapshot every run of an inference pipeline; replay it exactly.",
)
state: dict[str, Any] = {"store": None, "debug": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="table (default on a terminal), tsv (default when piped: every column, "
        "in full) or json (as --json).",
    ),
]
KindOpt = Annotated[
    str,
    typer.Option(
        "--kind",
        help="production (what the pipeline decided), whatif (questions asked with "
        "`at --input`) or all.",
    ),
]


BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a reader that went away


def handled(fn: F) -> F:
    """Map errors to one-line messages and exit codes, in one place."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # The reader stopped reading (`| head`): what it wanted is printed; stop quietly,
            # with the shell's code for SIGPIPE, and keep Python's exit flush from failing.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(BROKEN_PIPE) from None
        except Exception as exc:
            if state["debug"]:
                raise
            code = report_error(
                exc, as_json=bool(kwargs.get("as_json")) or kwargs.get("fmt") == "json"
            )
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def report_error(exc: Exception, *, as_json: bool) -> int:
    """Print an error as one line and a hint (one JSON object with --json), on stderr, with
    markup off; return its exit code. Third-party errors go through ``translate`` first."""
    err = exc if isinstance(exc, ReplayError) else translate(exc)
    if err is None:
        message = f"{type(exc).__name__}: {exc}"
        hint, code, label = (
            "rerun with --debug for the traceback and report it",
            INTERNAL_ERROR,
            "internal error",
        )
    else:
        message, hint, code, label = err.message, err.hint, err.exit_code, "error"
    if as_json:
        print(json.dumps({"error": message, "hint": hint, "exit_code": code}), file=sys.stderr)
        return code
    render.errors.print(f"[red]{label}:[/red] {render.escape(message)}", highlight=False)
    if hint:
        render.errors.print(f"  {hint}", highlight=False, markup=False)
    return code


# A path the user gave that cannot be used (a folder for --key, a file without permission).
PATH_ERRNOS = frozenset(
    {
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.ENAMETOOLONG,
        errno.ELOOP,
    }
)


def translate(exc: Exception) -> ReplayError | None:
    """The one table of third-party errors that may reach the CLI, as ours; None for a truly
    unexpected one (a bug: exit 70), e.g. a JSONDecodeError, which every reader translates.

    pyarrow.ArrowException → InputError (5) · duckdb.Error → CatalogError (10) · OSError on a
    path → UsageError (2), other OSError → StoreError (8) · UnicodeDecodeError → InputError (5)
    """
    duckdb = sys.modules.get("duckdb")  # never imported just to be checked
    if duckdb is not None and isinstance(exc, duckdb.Error):
        return CatalogError(
            f"DuckDB: {exc}",
            hint="run `replay reindex` if the catalog is damaged; check the query otherwise",
        )
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(exc, pa.ArrowException) and not isinstance(exc, OSError):
        return InputError(
            f"Arrow refused the data: {exc}", hint="check the input's column types and values"
        )
    if isinstance(exc, OSError):
        where = f"cannot use {exc.filename}" if exc.filename else "I/O failed"
        if exc.errno in PATH_ERRNOS:
            return UsageError(
                f"{where}: {exc.strerror}", hint="check that the path names a file you can read"
            )
        return StoreError(
            f"{where}: {exc.strerror or exc}", hint="check free space and permissions"
        )
    if isinstance(exc, UnicodeDecodeError):
        return InputError(
            f"bytes that are not UTF-8: {exc}",
            hint="names and text must be UTF-8; rewrite the file as UTF-8",
        )
    return None


def open_store(*, create: bool = False) -> "Store":
    from replay.store.store import Store

    return Store.open(state["store"], create=create)


def _print_version() -> None:
    from replay import __version__

    print(f"pipeline-replay {__version__}")
    raise typer.Exit()


@app.callback()
def main_options(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            "-s",
            envvar="REPLAY_STORE",
            help="The store: a folder (default ./snapshots) or s3://BUCKET/PREFIX.",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            is_eager=True,
            callback=lambda shown: _print_version() if shown else None,
        ),
    ] = False,
) -> None:
    state["store"] = store
    state["debug"] = debug


@app.command()
@handled
def init(as_json: JsonOpt = False) -> None:
    """Create the store (default ./snapshots)."""
    store = queries.init(state["store"])
    if as_json:
        render.emit_json({"store": store.url})
    else:
        render.console.print(f"store ready at {store.url}")


@app.command()
@handled
def record(
    target: Annotated[str, typer.Argument(help="MODULE:PIPELINE or path/file.py:PIPELINE")],
    input: Annotated[str, typer.Option("--input", "-i", help="Input rows (Parquet).")],
    record_key: Annotated[
        str | None, typer.Option("--record-key", "-k", help="Column naming the business record.")
    ] = None,
    at: Annotated[str | None, typer.Option(help="Logical time (ISO-8601 with zone).")] = None,
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="Create the store if it does not exist (without it a missing store "
            "is refused, so a mistyped path is never made).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline over input rows and snapshot the run."""
    from replay.capture.loader import load_pipeline
    from replay.capture.record import record as record_run
    from replay.errors import NotFoundError

    clock = parse_time(at) if at else None
    try:
        store = open_store(create=create)
    except NotFoundError as exc:
        raise NotFoundError(
            exc.message,
            hint="check the path; to start a store there, run `replay init` first or add --create",
        ) from None
    rows = read_rows(input)
    pipeline = load_pipeline(target)
    if record_key is None:
        _warn(
            "warning: no --record-key: `replay find` and `replay at --record` will never "
            "return this run's records"
        )
    result = record_run(pipeline, rows, store=store, record_key=record_key, at=clock)
    if as_json:
        render.emit_json(
            {
                "run_id": result.run_id,
                "seq": result.seq,
                "status": result.status,
                "rows": result.output.num_rows,
                "output": render.arrow_json(result.output),
            }
        )
        return
    render.console.print(
        f"recorded run [bold]{result.run_id}[/bold] (ledger #{result.seq}, "
        f"{rows.num_rows} rows, pipeline {render.escape(pipeline.name)})"
    )
    render.arrow(result.output, limit=10)


@app.command()
@handled
def runs(
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Only this pipeline.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="ISO-8601 time (logical clock).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO-8601 time (logical clock).")] = None,
    kind: KindOpt = PRODUCTION,
    limit: Annotated[int, typer.Option(min=1, help="Runs per page.")] = 50,
    offset: Annotated[
        int, typer.Option(min=0, help="Skip this many (the next page: --offset LIMIT).")
    ] = 0,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List committed runs, newest first, a page at a time (says how many there are)."""
    store = open_store()
    start = parse_time(since) if since is not None else None
    end = parse_time(until) if until is not None else None
    rows = queries.runs(
        store,
        pipeline=pipeline,
        since=start,
        until=end,
        kind=kinds.wanted(kind),
        limit=limit,
        offset=offset,
    )
    total = queries.count_runs(
        store, pipeline=pipeline, since=start, until=end, kind=kinds.wanted(kind)
    )
    fmt = render.pick_format(fmt, as_json)
    if fmt == "json":
        render.emit_json({"runs": rows, "total": total, "offset": offset, "limit": limit})
        return
    shown = f"{kind} runs {offset + 1 if rows else 0} to {offset + len(rows)} of {total}"
    render.rows_out(
        rows,
        ("run_id", "pipeline", "clock", "rows", "status"),
        shown,
        fmt,
        drop=("rows", "status", "pipeline"),
    )
    if offset + len(rows) < total:  # on stderr: a piped listing stays pure rows
        render.errors.print(
            f"{shown}; {total - offset - len(rows)} more: --offset "
            f"{offset + len(rows)} (or --limit {total})",
            markup=False,
            highlight=False,
        )


@app.command()
@handled
def show(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    source: Annotated[
        bool,
        typer.Option("--source", help="Print the recorded source of every module the steps ran."),
    ] = False,
    step: Annotated[str | None, typer.Option(help="With --source: only this step.")] = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Show one run: manifest, steps and every component digest."""
    if source:
        texts = queries.sources(open_store(), run, step)
        if as_json:
            render.emit_json(texts)
            return
        for t in texts:
            render.console.print(
                f"# step {t['step']} · module {t['module']} · {t['digest']}",
                style="bold",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            render.console.print(t["text"], highlight=False, markup=False, soft_wrap=True)
        return
    info = queries.show(open_store(), run)
    fmt = render.pick_format(fmt, as_json)
    if fmt == "json":
        render.emit_json(info)
        return
    render.show_run(info, fmt)


@app.command()
@handled
def find(
    key: Annotated[str, typer.Argument(help="Record key, e.g. an application id.")],
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="Only this pipeline.")
    ] = None,
    kind: KindOpt = PRODUCTION,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Which runs decided this record."""
    rows = queries.find(open_store(), key, pipeline=pipeline, kind=kinds.wanted(kind))
    fmt = render.pick_format(fmt, as_json)
    if fmt == "json":
        render.emit_json(rows)
        return
    if not rows:
        render.errors.print(f"no run decided record {key!r}")
        raise typer.Exit(4)
    render.rows_out(
        rows,
        ("run_id", "pipeline", "clock", "row", "status"),
        f"record {key}",
        fmt,
        drop=("row", "status", "pipeline"),
    )


@app.command()
@handled
def sql(
    query: Annotated[str, typer.Argument(help="DuckDB SQL.")], as_json: JsonOpt = False
) -> None:
    """Query the catalog and row data with DuckDB SQL.

    Tables: runs, steps, components, environments, records. Row data: one schema per
    pipeline, e.g. credit_decision.input, credit_decision.decision.
    """
    result = queries.sql(open_store(), query)
    if as_json:
        render.emit_json(render.arrow_json(result))
    else:
        render.arrow(result)


@app.command()
@handled
def reindex(as_json: JsonOpt = False) -> None:
    """Rebuild the DuckDB catalog from the store's files."""
    store = open_store()
    with render.steps_progress(disable=as_json, doing="rebuilding the catalog") as tick:
        tick("from the ledger and blocks")
        count = queries.reindex(store)
    if as_json:
        render.emit_json({"runs": count})
    else:
        render.console.print(f"catalog rebuilt: {count} runs")


@app.command()
@handled
def compact(as_json: JsonOpt = False) -> None:
    """Compact the record keys of the runs recorded since the last compaction into Parquet
    on the store, where `find` reads them without each reader's catalog holding them."""
    from replay.catalog.compact import compact as compact_store

    done = compact_store(open_store())
    if as_json:
        render.emit_json(vars(done))
    elif done.part is None:
        # start and stop are seqs, half-open; the ledger numbers its entries from 1
        render.console.print(
            f"nothing to compact: the record keys of ledger entries 1 to {done.stop - 1} are "
            "compacted already"
            if done.stop > 1
            else "nothing to compact: the store holds no runs yet",
            highlight=False,
        )
    else:
        render.console.print(
            f"compacted the record keys of ledger entries {max(done.start, 1)} to "
            f"{done.stop - 1} ({done.rows:,} keys) into {done.part}"
            + "".join(f"\ndeleted {path} (superseded)" for path in done.deleted),
            highlight=False,
        )


Mode = Annotated[str, typer.Option("--mode", "-m", help="chained or isolated.")]
# The sandbox's limits (replay.docker.sandbox.Limits), for `run` and `batch`.
MemoryOpt = Annotated[str, typer.Option(help="With --in-container: memory limit.")]
CpusOpt = Annotated[float, typer.Option(help="With --in-container: CPU limit.")]
PidsOpt = Annotated[int, typer.Option(help="With --in-container: process limit.")]
ToleranceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tolerance",
        help="COLUMN=NUMBER: an absolute difference the replay accepts "
        "(adds to the steps' own; repeatable).",
    ),
]


def _warn(line: str) -> None:
    render.errors.print(line, markup=False, highlight=False)


def _exit_for(rep: Any) -> None:
    # A counterfactual that ran is an answer, not a failure.
    if not rep.ok and not rep.swap:
        raise typer.Exit(1)


@app.command("run")
@handled
def run_cmd(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    mode: Mode = "chained",
    swap: Annotated[
        list[str] | None,
        typer.Option(
            "--swap", help="STEP=RUN (the step as another run had it) or STEP[.MODEL]=sha256:…"
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="Replay from an evidence bundle (verified first, against a trusted signer)."
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            help="With --bundle: pin exactly this public key (the trust store is not read)."
        ),
    ] = None,
    insecure_replay_unverified: Annotated[
        bool,
        typer.Option(
            "--insecure-replay-unverified",
            help="With --bundle: replay even if verification fails or no pinned key signed it "
            "(runs its code!).",
        ),
    ] = False,
    trust: Annotated[bool, typer.Option("--trust", hidden=True)] = False,
    in_container: Annotated[
        bool,
        typer.Option(
            "--in-container",
            help="Replay inside the recorded image (Docker; no network, "
            "store read-only). A bundle replays there by default whenever "
            "a Docker engine answers.",
        ),
    ] = False,
    no_sandbox: Annotated[
        bool,
        typer.Option(
            "--no-sandbox",
            help="With --bundle: replay on this machine even though a Docker engine "
            "answers (the bundle's code runs with your network and files).",
        ),
    ] = False,
    image: Annotated[
        str | None,
        typer.Option(help="With --in-container: replay in this image instead of the recorded one."),
    ] = None,
    memory: MemoryOpt = "2g",
    cpus: CpusOpt = 1.0,
    pids: PidsOpt = 256,
    tolerance: ToleranceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a run from its snapshot alone; exit 1 if it diverges."""
    from replay.docker.sandbox import Limits
    from replay.engine.replay import parse_swap, parse_tolerances
    from replay.evidence.run import run as replay_run

    swaps, tolerances = parse_swap(swap or []), parse_tolerances(tolerance or [])
    if trust:
        _renamed_trust()
    if no_sandbox and bundle is None:
        raise UsageError("--no-sandbox applies to --bundle only")
    source = bundle if bundle is not None else open_store()
    with render.steps_progress(disable=as_json) as tick:
        rep = replay_run(
            source,
            run,
            mode=mode,
            swap=swaps,
            tolerances=tolerances,
            key=_read_key(key),
            insecure_replay_unverified=insecure_replay_unverified,
            in_container=in_container,
            no_sandbox=no_sandbox,
            image=image,
            limits=Limits(memory, cpus, pids),
            progress=tick,
            note=_warn,
        )
    if as_json:
        render.emit_json(rep.as_json())
    else:
        render.report(rep)
    _exit_for(rep)


@app.command()
@handled
def at(
    time: Annotated[str, typer.Argument(help="ISO-8601 time with zone.")],
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Pipeline name.")],
    record: Annotated[
        str | None,
        typer.Option("--record", "-r", help="Record key: the run that decided this record."),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option("--input", "-i", help="New rows to run through the pipeline as it was then."),
    ] = None,
    record_key: Annotated[
        str | None,
        typer.Option("--record-key", "-k", help="With --input: the column naming each record."),
    ] = None,
    kind: KindOpt = PRODUCTION,
    mode: Mode = "chained",
    tolerance: ToleranceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What ran at TIME: find that run and replay it (or run new rows as of then)."""
    from replay.engine.replay import parse_tolerances
    from replay.engine.timetravel import run_as_of, run_at

    when, store = parse_time(time), open_store()
    if input is not None:
        rows = read_rows(input)
        with render.steps_progress(disable=as_json, doing="running") as tick:
            tick(f"{rows.num_rows} rows through {pipeline} as deployed at {when.isoformat()}")
            result = run_as_of(store, when, pipeline, rows, record_key, source=input)
        if as_json:
            render.emit_json(
                {
                    "run_id": result.run_id,
                    "kind": result.manifest.kind,
                    "tags": result.manifest.tags,
                    "output": render.arrow_json(result.output),
                }
            )
        else:
            # On stderr: piped, stdout holds only the rows.
            render.errors.print(
                f"what-if run [bold]{result.run_id}[/bold] (kept apart from "
                "production runs: `--kind whatif` lists it): "
                f"{render.escape(pipeline)} "
                f"as deployed at {when.isoformat()} (by run "
                f"{result.manifest.tags['deployed_by_run']})"
            )
            render.arrow(result.output, limit=20)
        return
    with render.steps_progress(disable=as_json) as tick:
        found, rep = run_at(
            store,
            when,
            pipeline,
            record,
            kind=kinds.wanted(kind),
            mode=mode,
            tolerances=parse_tolerances(tolerance or []),
            progress=tick,
        )
    if as_json:
        render.emit_json({"found": found, "replay": rep.as_json()})
    else:
        render.console.print(
            f"at {when.isoformat()} {pipeline} was run {found['run_id']} "
            f"(clock {found['clock'].isoformat()})",
            highlight=False,
            markup=False,
        )
        render.report(rep)
    _exit_for(rep)


@app.command()
@handled
def diff(
    run_a: Annotated[str, typer.Argument(help="First run.")],
    run_b: Annotated[str, typer.Argument(help="Second run.")],
    as_json: JsonOpt = False,
) -> None:
    """Which components differ between two runs, and how their shared records differ."""
    from replay.core.cells import change
    from replay.engine.diff import diff as diff_runs

    d = diff_runs(open_store(), run_a, run_b)
    if as_json:
        render.emit_json(d.as_json())
        return
    rows = [
        {"step": c.where, "component": c.what, "A": c.before, "B": c.after} for c in d.components
    ]
    render.table(
        rows,
        ("step", "component", "A", "B"),
        f"{len(rows)} components differ" if rows else "same components",
    )
    if d.records:
        changed = [
            {"record": r.key, **{c: change(a, b) for c, (a, b) in r.changes.items()}}
            for r in d.records[:20]
        ]
        cols = ["record", *dict.fromkeys(c for r in d.records[:20] for c in r.changes)]
        render.table(
            changed,
            cols,
            f"{len(d.records)} of {d.shared_records} shared records "
            f"differ, {sum(r.flipped for r in d.records)} decisions flipped",
        )
    else:
        render.console.print(f"{d.shared_records} shared records, none differs")
    render.drift(d.environment, None, None)


@app.command()
@handled
def lineage(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    format: Annotated[str, typer.Option(help="text or mermaid.")] = "text",
    as_json: JsonOpt = False,
) -> None:
    """The chain of a run with every component's digest."""
    from replay.engine.lineage import lineage as chain_of

    if format not in ("text", "mermaid"):
        raise UsageError(f"--format {format!r} is not text or mermaid")
    chain = chain_of(open_store(), run)
    if as_json:
        render.emit_json(chain.as_json())
    else:
        print(chain.as_mermaid() if format == "mermaid" else chain.as_text())


@app.command()
@handled
def doctor(as_json: JsonOpt = False) -> None:
    """Find what crashes left behind and repair what is safe; never touches committed runs."""
    from replay.catalog.repair import doctor as checkup

    report = checkup(open_store())
    if as_json:
        render.emit_json({"repaired": report.repaired, "noted": report.noted})
        return
    for line in report.repaired:
        render.console.print(f"[green]repaired[/green] {render.escape(line)}", highlight=False)
    for line in report.noted:
        render.console.print(f"[yellow]noted[/yellow]    {render.escape(line)}", highlight=False)


@app.command()
@handled
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the demo's git + DVC workspace and its DVC remote (default: "
            "<store>-demo beside the store)."
        ),
    ] = None,
    workspace: Annotated[
        Path | None,
        typer.Option(hidden=True, help="The workspace folder itself (its remote beside it)."),
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="Signing key for the evidence (created if missing).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Where to write the evidence bundle (default: the current folder)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The end-to-end story: a day of decisions, an incident, replay, evidence."""
    from replay.cli.demo import run_demo

    if workdir is not None and workspace is not None:
        raise UsageError(
            "give --workdir or --workspace, not both",
            hint="--workdir DIR builds the workspace in DIR/workspace",
        )
    summary = run_demo(
        open_store(create=True),
        workspace=workdir / "workspace" if workdir is not None else workspace,
        key=key,
        out_dir=out_dir,
        quiet=as_json,
    )
    if as_json:
        render.emit_json(summary)


def read_rows(path: str) -> "pa.Table":
    """Input rows, refusing column names that are not UTF-8 (pyarrow reads them, then
    raises UnicodeDecodeError on the first look at the schema)."""
    from replay.core.tables import read_input

    rows = read_input(path)
    try:
        rows.schema.names  # noqa: B018 - decodes every name
    except UnicodeDecodeError:
        raise InputError(
            f"{path}: a column name is not UTF-8",
            hint="rename the column to UTF-8 text and write the file again "
            "(e.g. table.rename_columns in pyarrow)",
        ) from None
    return rows


def _renamed_trust() -> None:
    # Refused, not aliased: beside `replay trust`, "--trust" reads as "check the signer"
    # while it skipped every check; a script that used it must now say what it means.
    raise UsageError(
        "--trust is now --insecure-replay-unverified: it replays a bundle that "
        "failed verification or whose signer nobody pinned, running its code",
        hint="to accept a signer, pin its public key: `replay trust add BANK.pem "
        "--name NAME` (or --key BANK.pem)",
    )


def _read_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read key {path}: {exc.strerror}") from None
