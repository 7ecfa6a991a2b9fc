"""A bulk replay's report for an analyst: one Parquet row per run (verdict, first diverging
step, what differs, records changed, flips) and an HTML page of the counts, in the evidence
report's style."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from replay.engine.batch.jobs import Job
from replay.engine.batch.summary import BatchSummary
from replay.errors import UsageError

DIVERGED_SHOWN = 200
SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("verdict", pa.string()),
        ("first_divergence", pa.string()),
        ("error", pa.string()),
        ("records_changed", pa.int64()),
        ("flips", pa.list_(pa.string())),
    ]
)


def write_report(summary: BatchSummary, job: Job, folder: Path) -> tuple[Path, Path]:
    """``batch-<job>.parquet`` and ``batch-<job>.html`` in ``folder`` (made if need be)."""
    from replay.evidence.report import ENV

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot write a report into {folder}: {exc.strerror}",
            hint="give --report a folder you can write",
        ) from None
    parquet, html = folder / f"batch-{job.job}.parquet", folder / f"batch-{job.job}.html"
    pq.write_table(pa.Table.from_pylist(list(summary.rows), SCHEMA), parquet)
    page = ENV.get_template("batch.html.j2").render(
        job=job,
        summary=summary,
        diverged=summary.diverged[:DIVERGED_SHOWN],
        parquet=parquet.name,
    )
    html.write_text(page, encoding="utf-8")
    return parquet, html
