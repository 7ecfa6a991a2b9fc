"""How results look in a terminal (rich) and in scripts (--json)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.table import Table

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
    t = Table(title=title or None, show_lines=False, header_style="bold")
    cols = list(columns)
    for c in cols:
        # Ids and digests are copied by hand: never break them across lines.
        t.add_column(c, overflow="fold", no_wrap=c in ("run_id", "digest", "clock"))
    for row in rows:
        t.add_row(*(_cell(row.get(c)) for c in cols))
    console.print(t)


def arrow(tbl: pa.Table, title: str = "", limit: int = 50) -> None:
    rows = tbl.slice(0, limit).to_pylist()
    table(rows, tbl.column_names, title)
    if tbl.num_rows > limit:
        console.print(f"[dim]… {tbl.num_rows - limit} more rows (use --json for all)[/dim]")


def arrow_json(tbl: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = tbl.to_pylist()
    return rows
