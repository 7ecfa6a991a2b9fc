"""What a batch found, run by run and in all: one row per run (verdict, first diverging step,
records changed, the flips of its decisions), and the counts an incident review starts from.

A row is made from a result as stored (``ReplayReport.as_json``), so the rows of a resumed
job's earlier results and of the runs replayed now are made alike. A flip is a record change
``record_changes`` marked ``flipped``, counted per column of categories: a decision as
``decision: approve → decline`` (a missing value as ``(none)``), a list of reason codes per
code added (+) or removed (-).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from replay.core.cells import step_detail
from replay.engine.batch.jobs import Results
from replay.engine.replay import ReplayReport

VERDICTS = ("exact", "equivalent", "diverged", "failed")
Row = dict[str, Any]


def _category(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, str) for v in value)
    return value is None or isinstance(value, str | bool)


def flip_labels(records: list[dict[str, Any]]) -> list[str]:
    """Each flipped record's category changes, as labels to count."""
    labels = []
    for record in records:
        if not record["flipped"]:
            continue
        for column, (before, after) in record["changes"].items():
            if not (_category(before) and _category(after)):
                continue  # a score or a vector moved: a change, not a flip
            if isinstance(before, list) or isinstance(after, list):
                was, now = set(before or ()), set(after or ())
                labels += [f"{column} + {code}" for code in sorted(now - was)]
                labels += [f"{column} - {code}" for code in sorted(was - now)]
            else:
                labels.append(f"{column}: {_shown(before)} → {_shown(after)}")
    return labels


def _shown(value: str | bool | None) -> str:
    return "(none)" if value is None else str(value)


def _what_differs(result: dict[str, Any], step: str | None) -> str | None:
    """The first diverging step's error or diff in one line, as `replay run` shows it."""
    if step is None:
        return None
    report = ReplayReport.from_json(result)  # only for a diverged run
    return next((step_detail(s) for s in report.steps if s.name == step), None) or None


def row_of(result: dict[str, Any]) -> Row:
    """A run's row from its stored result."""
    first = result["first_divergence"]
    return {
        "run_id": result["run_id"],
        "verdict": result["verdict"],
        "first_divergence": first,
        "error": _what_differs(result, first),
        "records_changed": len(result["records"]),
        "flips": flip_labels(result["records"]),
    }


def failed_row(run_id: str, message: str) -> Row:
    """A run that could not be replayed at all (it has no result: a resume retries it)."""
    return {
        "run_id": run_id,
        "verdict": "failed",
        "first_divergence": None,
        "error": message,
        "records_changed": 0,
        "flips": [],
    }


def rows_of(stored: Results) -> list[Row]:
    """The rows of an attempt's file: its results, and its runs that failed."""
    return [row_of(r) for r in stored.results] + [
        failed_row(run_id, message) for run_id, message in stored.failed.items()
    ]


@dataclass(frozen=True)
class BatchSummary:
    """A batch job's outcome: every run once, in ``rows``; ``replayed`` of them now (the
    rest had results from an earlier, interrupted call of the same job)."""

    job: str
    mode: str
    swap: dict[str, str]
    rows: tuple[Row, ...]
    replayed: int
    seconds: float
    workers: int
    by_verdict: dict[str, int] = field(init=False)
    flips: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        verdicts = Counter(r["verdict"] for r in self.rows)
        flips = Counter(label for r in self.rows for label in r["flips"])
        object.__setattr__(self, "by_verdict", {v: verdicts[v] for v in VERDICTS if verdicts[v]})
        object.__setattr__(self, "flips", dict(sorted(flips.items(), key=lambda f: -f[1])))

    @property
    def diverged(self) -> list[Row]:
        return [r for r in self.rows if r["verdict"] in ("diverged", "failed")]

    @property
    def runs_per_second(self) -> float:
        return self.replayed / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.diverged

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "mode": self.mode,
            "swap": self.swap,
            "runs": len(self.rows),
            "replayed": self.replayed,
            "seconds": round(self.seconds, 3),
            "runs_per_second": round(self.runs_per_second, 1),
            "workers": self.workers,
            "by_verdict": self.by_verdict,
            "flips": self.flips,
            "diverged": self.diverged,
        }
