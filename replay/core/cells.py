"""How one value reads in a table cell: short digests, human durations, DVC data versions.

Two readings: ``cell`` for people (a terminal table: digests shortened to a prefix that
``--swap`` and every other digest argument accept, durations in ms / s / min) and ``plain``
for scripts (a TSV field: the full value, nothing shortened).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

SHORT_HEX = 12  # a digest argument accepts a unique prefix of 8+ hex digits
GIT_REV = 7  # as `git log --oneline` shortens a commit
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def short_digest(digest: str | None) -> str:
    """``sha256:`` and the first 12 hex digits: what the tables print, and a prefix that
    ``replay run --swap STEP=...`` accepts (unique prefixes of 8+ hex digits)."""
    if not digest:
        return "-"
    return digest[: len("sha256:") + SHORT_HEX] if _DIGEST.fullmatch(digest) else digest


def duration(ns: int | float | None) -> str:
    """A duration as people read it: ``850 µs``, ``19 ms``, ``1.4 s``, ``2 min 3 s``."""
    if ns is None:
        return "-"
    if ns < 1e6:
        return f"{ns / 1e3:.0f} µs"
    if ns < 1e9:
        ms = ns / 1e6
        return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"
    s = ns / 1e9
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    minutes, secs = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def data_version(value: dict[str, Any]) -> str | None:
    """A DVC-tracked data version (``sha256``, ``dvc_rev``, ``dvc_md5``), one line each: its
    content digest, the git revision and the DVC md5 that name it; None for another dict."""
    if not {"sha256", "dvc_rev", "dvc_md5"} <= value.keys():
        return None
    rev, md5 = value["dvc_rev"] or "-", value["dvc_md5"] or "-"
    return f"{short_digest(value['sha256'])}\nrev {rev[:GIT_REV]}\nmd5 {md5[:SHORT_HEX]}"


def _when(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds").replace("+00:00", "Z")


def cell(value: Any, column: str = "") -> str:
    """A value for a terminal table: shortened where a prefix is enough to name it."""
    if value is None:
        return "-"
    if column == "duration_ns" and isinstance(value, int | float):
        return duration(value)
    if column == "dvc_rev" and isinstance(value, str):
        return value[:GIT_REV]
    if column == "dvc_md5" and isinstance(value, str):
        return value[:SHORT_HEX]
    if isinstance(value, datetime):
        return _when(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return short_digest(value)
    if isinstance(value, list | tuple):
        return "; ".join(cell(v) for v in value) if value else "[]"
    if isinstance(value, dict):
        return data_version(value) or json.dumps(value, sort_keys=True, default=str)
    return str(value)


def change(before: Any, after: Any) -> str:
    """A value that changed, as ``before → after``."""
    return f"{cell(before)} → {cell(after)}"


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def plain(value: Any) -> str:
    """A value as one TSV field: in full, empty for none; tab, newline and backslash escaped
    as ``\\t``, ``\\n`` and ``\\\\`` (the text format of PostgreSQL's COPY)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return text.translate(_ESCAPES)


def step_detail(step: Any) -> str:
    """What differs in a replayed step (a StepResult), in one line: its error, or its diff."""
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
