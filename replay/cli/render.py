"""How results look in a terminal (rich tables that fit its width), in pipes (TSV) and in
scripts (JSON)."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from replay.core.cells import cell, change, duration, plain, short_digest, step_detail
from replay.errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console
    from rich.text import Text

    console: Console  # stdout, made on first use (see __getattr__)
    errors: Console  # stderr, likewise


# rich is imported on first use (~20 ms): neither `replay --help` (plain, replay.cli.app.PLAIN)
# nor a piped `find` (TSV) needs it. `render.console` and `render.errors` still read as before.
@functools.cache
def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1 here itself; a reader that went away (`| head`) is the one
            # error handler's to end, with the shell's code for SIGPIPE (replay.cli.app.handled).
            raise BrokenPipeError

    return _Console(), _Console(stderr=True, soft_wrap=True)


def __getattr__(name: str) -> Any:
    if name == "console":
        return _consoles()[0]
    if name == "errors":
        return _consoles()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _out() -> Console:
    return _consoles()[0]


def _err() -> Console:
    return _consoles()[1]


def escape(text: str) -> str:
    """``text`` shown as itself in rich markup."""
    from rich.markup import escape as markup_escape

    return markup_escape(text)


def on_terminal() -> bool:
    """Whether stdout is a terminal, as rich decides it (``TTY_COMPATIBLE`` and
    ``FORCE_COLOR`` override isatty). A plain pipe is told without importing rich."""
    try:
        tty = sys.stdout.isatty()
    except ValueError:  # closed
        tty = False
    if not tty and os.environ.get("TTY_COMPATIBLE") != "1" and not os.environ.get("FORCE_COLOR"):
        return False  # what rich would say too
    return _out().is_terminal


FORMATS = ("table", "tsv", "json")
HEADERS = {"duration_ns": "took"}  # a column whose table cells are not what its key says
LONGEST_WORD = 40  # a longer value folds rather than widening its column further


def pick_format(fmt: str | None, as_json: bool = False) -> str:
    """``--format`` as given (``--json`` means json); without one, a table on a terminal and
    TSV when stdout is piped or redirected."""
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not table, tsv or json")
    if as_json:
        if fmt not in (None, "json"):
            raise UsageError(f"--json and --format {fmt} disagree", hint="give one of them")
        return "json"
    return fmt or ("table" if on_terminal() else "tsv")


def _default(value: Any) -> Any:
    if hasattr(value, "__struct_fields__"):  # a manifest or spec, as it is stored
        from replay.core.manifest import plain as stored

        return stored(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=_default)


def emit_json(value: Any) -> None:
    # Plain print: rich would wrap and colour the JSON.
    print(as_json(value))


def tsv(rows: Sequence[dict[str, Any]], columns: Iterable[str]) -> None:
    """Rows as tab-separated values under a header row, every value in full: the columns
    given, then every other key the rows have."""
    cols = list(dict.fromkeys([*columns, *(k for r in rows for k in r)]))
    print("\t".join(cols))
    for row in rows:
        print("\t".join(plain(row.get(c)) for c in cols))


def _cells(rows: Sequence[dict[str, Any]], cols: list[str]) -> list[list[Text]]:
    from rich.text import Text

    return [
        [v if isinstance(v := row.get(c), Text) else Text(cell(v, c)) for c in cols] for row in rows
    ]


def _least(texts: list[Text]) -> int:
    """The narrowest a column gets: its longest word (capped), so words never break."""
    words = (len(w) for t in texts for w in t.plain.split())
    return min(max(words, default=1), LONGEST_WORD)


def _natural(texts: list[Text]) -> int:
    return max((len(line) for t in texts for line in t.plain.splitlines()), default=1)


def _shrink(widths: list[int], floors: list[int], room: int) -> list[int]:
    """Take one character at a time from the column with the most to spare."""
    widths = list(widths)
    while sum(widths) > room:
        spare = [w - f for w, f in zip(widths, floors, strict=True)]
        i = max(range(len(widths)), key=spare.__getitem__)
        if spare[i] <= 0:
            break
        widths[i] -= 1
    return widths


def _layout(
    columns: list[list[Text]], names: list[str], drop: Sequence[str], width: int
) -> tuple[list[str], list[int]]:
    """Which columns fit ``width`` and how wide each is: drop columns in ``drop`` order until
    every kept column fits its longest word; then narrow the ones that wrap at spaces."""
    kept = list(names)
    least = {n: _least(col) for n, col in zip(names, columns, strict=True)}
    for name in drop:
        if sum(least[n] for n in kept) + 3 * len(kept) + 1 <= width:
            break
        if name in kept and len(kept) > 1:
            kept.remove(name)
    natural = [_natural(columns[names.index(n)]) for n in kept]
    room = width - 3 * len(kept) - 1
    widths = _shrink(natural, [least[n] for n in kept], room)
    return kept, _shrink(widths, [min(4, w) for w in widths], room)  # last resort: fold


def table(
    rows: Sequence[dict[str, Any]],
    columns: Iterable[str],
    title: str = "",
    drop: Sequence[str] = (),
) -> None:
    """Rows as a table as wide as the terminal: digests and DVC versions shortened (see
    replay.core.cells), ``drop`` naming the columns to leave out, first first, when the rest
    would not fit; every title, header and cell is data, printed with markup off."""
    from rich.table import Table
    from rich.text import Text

    names = list(columns)
    body = _cells(rows, names)
    heads = [Text(HEADERS.get(n, n)) for n in names]
    by_column = [[heads[i], *(r[i] for r in body)] for i in range(len(names))]
    kept, widths = _layout(by_column, names, drop, _out().width)
    t = Table(title=Text(title) if title else None, header_style="bold")
    for name, w in zip(kept, widths, strict=True):
        t.add_column(heads[names.index(name)], width=w, overflow="fold")
    for r in body:
        t.add_row(*(r[names.index(n)] for n in kept))
    _out().print(t)
    if len(kept) < len(names):
        left = ", ".join(HEADERS.get(n, n) for n in names if n not in kept)
        _out().print(
            Text(f"not shown at this width: {left} (--format tsv shows every column)", style="dim")
        )


def rows_out(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    title: str,
    fmt: str,
    drop: Sequence[str] = (),
) -> None:
    """Rows in the chosen format: a fitted table, TSV (every key, in full) or JSON."""
    if fmt == "json":
        emit_json(list(rows))
    elif fmt == "tsv":
        tsv(rows, columns)
    else:
        table(rows, columns, title, drop)


STEP_COLUMNS = ("name", "rows", "output", "duration_ns", "calls")
COMPONENT_COLUMNS = ("step", "kind", "name", "digest", "dvc_rev", "dvc_md5")


def _run_fields(info: dict[str, Any]) -> dict[str, Any]:
    m = info["manifest"]
    return {
        "run_id": m["run_id"],
        "pipeline": m["pipeline"],
        "status": m["status"],
        "seq": info["seq"],
        "clock": m["clock"],
        "version": m["version"],
        "env": m["env"],
        "image": info["run"]["image"],
        "input_rows": m["input"]["rows"],
        "input_digest": m["input"]["digest"],
        "error": m.get("error"),
    }


def show_run(info: dict[str, Any], fmt: str) -> None:
    """``replay show``: the run, its steps and every component, as a table or as three TSV
    blocks (run, steps, components) separated by an empty line."""
    from rich.text import Text

    run, m = _run_fields(info), info["manifest"]
    if fmt == "tsv":
        for rows, cols in (
            ([run], ()),
            (m["steps"], STEP_COLUMNS),
            (info["components"], COMPONENT_COLUMNS),
        ):
            if cols:
                print()
            tsv(rows, cols)
        return
    for line in (
        f"run {run['run_id']}  pipeline {run['pipeline']}",
        f"status {run['status']}  ledger #{run['seq']}  clock {run['clock']}",
        f"input {run['input_rows']} rows {short_digest(run['input_digest'])}  "
        f"version {short_digest(run['version'])}",
        f"env {short_digest(run['env'])}  image {run['image']}",
    ):
        _out().print(Text(line))
    if run["error"]:
        _out().print(
            Text(f"failed at step {run['error']['step']}: {run['error']['message']}", style="red")
        )
    table(m["steps"], STEP_COLUMNS, "steps", drop=("calls", "rows", "output"))
    table(info["components"], COMPONENT_COLUMNS, "components", drop=("dvc_md5", "dvc_rev", "kind"))


def arrow(tbl: pa.Table, title: str = "", limit: int = 50) -> None:
    """The first ``limit`` rows: a table on a terminal, TSV when piped (the count of rows
    left out then goes to stderr, so the pipe gets rows only)."""
    rows = tbl.slice(0, limit).to_pylist()
    piped = not on_terminal()
    if piped:
        tsv(rows, tbl.column_names)
    else:
        table(rows, tbl.column_names, title)
    if tbl.num_rows > limit:
        (_err() if piped else _out()).print(
            f"[dim]… {tbl.num_rows - limit} more rows (use --json for all)[/dim]"
        )


def arrow_json(tbl: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = tbl.to_pylist()
    return rows


VERDICT_STYLE = {"exact": "green", "equivalent": "yellow", "diverged": "red", "skipped": "red"}


def _outputs(recorded: str | None, replayed: str | None) -> str:
    """The recorded output digest, and under it the replayed one when they differ."""
    if replayed is None or replayed == recorded:
        return short_digest(recorded)
    return f"{short_digest(recorded)}\n→ {short_digest(replayed)}"


def report(rep: Any, limit: int = 20) -> None:
    """A replay report: verdict, steps, record changes, environment drift."""
    from rich.text import Text

    style = VERDICT_STYLE[rep.verdict]
    what = "counterfactual" if rep.swap else f"{rep.mode} replay"
    _out().print(
        f"{what} of run [bold]{rep.run_id}[/bold] ({escape(rep.pipeline)}, clock "
        f"{rep.clock}): [bold {style}]{rep.verdict.upper()}[/bold {style}]",
        highlight=False,
    )
    if rep.first_divergence:
        _out().print(
            f"first diverging step: [bold]{escape(rep.first_divergence)}[/bold]", highlight=False
        )
    if rep.tolerances:
        given = ", ".join(f"{c} ≤ {t:g}" for c, t in sorted(rep.tolerances.items()))
        _out().print(
            f"tolerances given at replay time (not by the pipeline): {given}",
            highlight=False,
            markup=False,
        )
    steps = [
        {
            "step": f"{s.name} (swapped)" if s.swapped else s.name,
            "verdict": Text(s.verdict, style=VERDICT_STYLE[s.verdict]),
            "output": _outputs(s.recorded, s.replayed),
            "took": duration(s.duration_ns),
            "what differs": step_detail(s),
        }
        for s in rep.steps
    ]
    table(steps, ("step", "verdict", "output", "took", "what differs"), drop=("took",))
    if rep.records:
        flips = sum(r.flipped for r in rep.records)
        rows = [
            {"record": r.key, **{c: change(a, b) for c, (a, b) in r.changes.items()}}
            for r in rep.records[:limit]
        ]
        cols = ["record", *dict.fromkeys(c for r in rep.records[:limit] for c in r.changes)]
        table(rows, cols, f"{len(rep.records)} records changed, {flips} decisions flipped")
    drift(rep.drift, rep.recorded_image, rep.current_image)


def drift(changes: Any, recorded_image: str | None, current_image: str | None) -> None:
    if recorded_image is not None:
        _out().print(
            f"image: recorded {recorded_image}; now {current_image}", highlight=False, markup=False
        )
    if not changes:
        _out().print("environment: no drift")
        return
    rows = [
        {
            "field": f"{c.where}: {c.what}" if c.where == "package" else c.what,
            "recorded": c.before,
            "now": c.after,
        }
        for c in changes[:25]
    ]
    table(
        rows,
        ("field", "recorded", "now"),
        f"environment drift ({len(changes)} fields; reported, not a failure)",
    )


@contextmanager
def steps_progress(
    disable: bool = False, doing: str = "replaying"
) -> Iterator[Callable[[str], None]]:
    """A progress line naming what is being done now, with the time spent (on stderr, so
    --json output stays clean; nothing at all when stderr is not a terminal, where rich would
    still end it with an empty line)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn(doing + " {task.description}", markup=False),
        TimeElapsedColumn(),
        console=_err(),
        transient=True,
        disable=disable or not _err().is_terminal,
    ) as bar:
        task = bar.add_task("", total=None)
        yield lambda name: bar.update(task, description=name)
