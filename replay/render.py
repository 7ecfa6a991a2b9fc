"""How results look in a terminal (rich) and in scripts (--json)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def _default(value: Any) -> Any:
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


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Iterable[str], title: str = "") -> None:
    """Rows as a table; every title, header and cell is data, printed with markup off."""
    t = Table(title=Text(title) if title else None, show_lines=False, header_style="bold")
    cols = list(columns)
    for c in cols:
        # Ids and digests are copied by hand: never break them across lines.
        t.add_column(Text(c), overflow="fold", no_wrap=c in ("run_id", "digest"))
    for row in rows:
        t.add_row(*(Text(_cell(row.get(c))) for c in cols))
    console.print(t)


def arrow(tbl: pa.Table, title: str = "", limit: int = 50) -> None:
    rows = tbl.slice(0, limit).to_pylist()
    table(rows, tbl.column_names, title)
    if tbl.num_rows > limit:
        console.print(f"[dim]… {tbl.num_rows - limit} more rows (use --json for all)[/dim]")


def arrow_json(tbl: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = tbl.to_pylist()
    return rows


VERDICT_STYLE = {"exact": "green", "equivalent": "yellow", "diverged": "red", "skipped": "red"}


def step_detail(step: Any) -> str:
    if step.error:
        return str(step.error)
    if step.diff is None:
        return ""
    parts = []
    d = step.diff
    if d.rows[0] != d.rows[1]:
        parts.append(f"rows {d.rows[0]} → {d.rows[1]}")
    parts += [f"+{c}" for c in d.added] + [f"-{c}" for c in d.removed]
    parts += list(d.schema_changes())
    for c in d.columns:
        if c.max_abs is not None:
            parts.append(f"{c.column}: {c.rows_changed} rows, max |Δ| {c.max_abs:.3g}")
        else:
            moves = ", ".join(f"{a}→{b} x{n}" for a, b, n in c.changes[:3])
            parts.append(f"{c.column}: {c.rows_changed} rows ({moves})")
    return "; ".join(parts)


def _short(digest: str | None) -> str:
    # 12 hex digits (the table is narrow); --swap STEP=sha256:<these> accepts them.
    return digest[7:19] if digest else "-"


def report(rep: Any, limit: int = 20) -> None:
    """A replay report: verdict, steps, record changes, environment drift."""
    style = VERDICT_STYLE[rep.verdict]
    what = "counterfactual" if rep.swap else f"{rep.mode} replay"
    console.print(f"{what} of run [bold]{rep.run_id}[/bold] ({escape(rep.pipeline)}, clock "
                  f"{rep.clock}): [bold {style}]{rep.verdict.upper()}[/bold {style}]",
                  highlight=False)
    if rep.first_divergence:
        console.print(f"first diverging step: [bold]{escape(rep.first_divergence)}[/bold]",
                      highlight=False)
    if rep.tolerances:
        given = ", ".join(f"{c} ≤ {t:g}" for c, t in sorted(rep.tolerances.items()))
        console.print(f"tolerances given at replay time (not by the pipeline): {given}",
                      highlight=False, markup=False)
    t = Table(header_style="bold")
    for c in ("step", "verdict", "recorded", "replayed", "ms", "what differs"):
        t.add_column(c, overflow="fold")
    for s in rep.steps:
        name = f"{s.name} (swapped)" if s.swapped else s.name
        t.add_row(Text(name), Text(s.verdict, style=VERDICT_STYLE[s.verdict]),
                  _short(s.recorded), _short(s.replayed), f"{s.duration_ns / 1e6:.1f}",
                  Text(step_detail(s)))
    console.print(t)
    if rep.records:
        flips = sum(r.flipped for r in rep.records)
        rows = [{"record": r.key, **{c: f"{_cell(a)} → {_cell(b)}" for c, (a, b)
                                     in r.changes.items()}} for r in rep.records[:limit]]
        cols = ["record", *dict.fromkeys(c for r in rep.records[:limit] for c in r.changes)]
        table(rows, cols, f"{len(rep.records)} records changed, {flips} decisions flipped")
    drift(rep.drift, rep.recorded_image, rep.current_image)


def drift(changes: Any, recorded_image: str | None, current_image: str | None) -> None:
    if recorded_image is not None:
        console.print(f"image: recorded {recorded_image}; now {current_image}",
                      highlight=False, markup=False)
    if not changes:
        console.print("environment: no drift")
        return
    rows = [{"field": f"{c.where}: {c.what}" if c.where == "package" else c.what,
             "recorded": c.before, "now": c.after} for c in changes[:25]]
    table(rows, ("field", "recorded", "now"),
          f"environment drift ({len(changes)} fields; reported, not a failure)")


@contextmanager
def steps_progress(disable: bool = False) -> Iterator[Callable[[str], None]]:
    """A progress line per replayed step (on stderr, so --json output stays clean)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("replaying {task.description}", markup=False),
                  TimeElapsedColumn(), console=errors, transient=True,
                  disable=disable) as bar:
        task = bar.add_task("", total=None)
        yield lambda name: bar.update(task, description=name)
