"""The human report of a window of runs: readable at fifty runs, still complete as evidence.

Each test exports real runs from a real store in tmp_path and reads the report the bundle
carries (after verifying it), or renders a context built from those runs.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import rows

import replay
from replay.core import keys
from replay.evidence import export as evidence
from replay.evidence.report import render_pdf
from replay.evidence.verify import verify_bundle


@pytest.fixture
def store(either_store: replay.Store) -> replay.Store:
    """Every test here runs on a folder store, then on S3 (tests/conftest.py)."""
    return either_store


T0 = datetime(2026, 3, 14, 8, tzinfo=UTC)


def decide(table: pa.Table, *, params: dict[str, float]) -> pa.Table:
    import pyarrow.compute as pc

    score = pc.multiply(table["x"], params["k"])
    return table.append_column("score", score).append_column(
        "decision", pc.if_else(pc.greater(score, 50), "decline", "approve")
    )


def pipeline(k: float) -> replay.Pipeline:
    """Another ``k`` is another pipeline version (its params digest differs)."""
    return replay.Pipeline("lending", [replay.Step("decide", decide, params={"k": k})])


def window(
    tmp: Path,
    starts: list[int],
    versions: list[float] | None = None,
    record: str | None = "R31",
    time: datetime = T0,
) -> tuple[dict[str, bytes], list[str]]:
    """Runs of 3 rows each (ids R<start>..), 12 minutes apart from T0, exported and verified:
    the bundle's files and the run ids."""
    store = replay.Store.open(tmp / "store")
    key = keys.init_key(tmp / "k.pem")
    ids = [
        replay.record(
            pipeline((versions or [2.0] * len(starts))[i]),
            rows(3, start),
            store=store,
            record_key="id",
            at=T0 + timedelta(minutes=12 * i),
        ).run_id
        for i, start in enumerate(starts)
    ]
    out = evidence.export(
        store, ids, tmp / "e.bundle", key=key, question={"record": record, "time": time.isoformat()}
    )
    check = verify_bundle(out.path, keys.public_path(key).read_bytes())
    assert check.ok, check.failure
    return check.files, ids


def section(page: str, name: str) -> str:
    return page.split(f'<section id="{name}"', 1)[1].split("</section>", 1)[0]


def pdf_text(data: bytes) -> str:
    """The text the PDF draws, a line per text operator (render_pdf leaves streams
    uncompressed, so no PDF library is needed to read them)."""
    shown = re.findall(rb"\((.*?)(?<!\\)\) Tj", data)
    return "\n".join(re.sub(rb"\\(.)", rb"\1", s).decode("latin-1") for s in shown)


def test_the_question_names_the_clock_of_the_run_that_decided_the_record(tmp_path) -> None:
    files, ids = window(tmp_path, [0, 10, 20, 30, 40])
    page = files["report.html"].decode()
    decided = (T0 + timedelta(minutes=36)).isoformat()
    assert (
        f"decide for record R31, decided at {decided} (window from {T0.isoformat()}), "
        f"in run {ids[3]} (one of 5 exported runs)"
    ) in html.unescape(page)
    assert f"decided at {decided} (window from {T0.isoformat()})" in pdf_text(
        files["report.pdf"]
    ).replace("\n", " ")


def test_a_record_decided_twice_is_asked_about_at_its_newest_decision(tmp_path) -> None:
    files, ids = window(tmp_path, [30, 31])  # R31 and R32 are in both runs
    question = html.unescape(section(files["report.html"].decode(), "question"))
    assert f"decided at {(T0 + timedelta(minutes=12)).isoformat()} (window from" in question
    assert f"in run {ids[1]}" in question


def test_a_window_that_starts_at_the_decision_names_one_time(tmp_path) -> None:
    files, _ = window(tmp_path, [30], time=T0)
    question = html.unescape(section(files["report.html"].decode(), "question"))
    assert f"decided at {T0.isoformat()}, in run" in question
    assert "window from" not in question


def test_the_asked_record_is_highlighted_in_its_runs_decisions(tmp_path) -> None:
    files, _ = window(tmp_path, [0, 10, 20, 30, 40])
    decisions = section(files["report.html"].decode(), "decisions")
    asked = re.findall(r'<tr class="asked">(.*?)</tr>', decisions, re.S)
    assert len(asked) == 1
    assert '<td class="digest"><strong>R31</strong></td>' in asked[0]
    assert "<strong>decline</strong>" in asked[0]  # 31 * 2 > 50


def test_the_asked_record_is_bold_on_a_fill_in_the_pdf(tmp_path) -> None:
    from replay.catalog.queries import entry
    from replay.engine.recorded import load_run
    from replay.evidence.facts import context  # the PDF marks what the context marks
    from replay.store.checkpoint import sign

    _, ids = window(tmp_path, [30])
    store = replay.Store.open(tmp_path / "store")
    run = load_run(store, entry(store, ids[0]))
    cp = sign(store, keys.load_private(tmp_path / "k.pem"))
    reports = {ids[0]: replay.replay(store, ids[0])}
    asked = context(store, [run], reports, cp, {"record": "R31"})
    plain = context(store, [run], reports, cp, {"record": None})
    plain["generated_at"] = asked["generated_at"]
    fill = b"1 0.9255 0.6275 rg"  # ASKED_FILL as fpdf writes a fill colour
    assert fill in render_pdf(asked)
    assert fill not in render_pdf(plain)


def test_a_window_lists_every_run_but_details_only_the_one_holding_the_record(tmp_path) -> None:
    files, ids = window(tmp_path, [0, 10, 20, 30, 40])
    page = files["report.html"].decode()
    summary = section(page, "verdict")
    assert all(i in summary for i in ids)
    assert summary.count("<tr") == 1 + 5  # the header row and a row per run
    assert "approve 3" in summary and "decline 3" in summary  # x*2 > 50 from R26 on
    for part in ("decisions", "scores"):
        assert [i for i in ids if i in section(page, part)] == [ids[3]]
    text = pdf_text(files["report.pdf"])
    assert all(i in text.replace("\n", "") for i in ids)
    assert text.count(f"Run {ids[3]}") == 2  # its decisions and its plot
    assert sum(text.count(f"Run {i}") for i in ids) == 2


def test_a_window_without_an_asked_record_details_no_run_and_says_why(tmp_path) -> None:
    files, ids = window(tmp_path, [0, 10, 20, 30, 40], record=None)
    decisions = section(files["report.html"].decode(), "decisions")
    assert "No record was asked about, so none of the 5 runs is shown in detail" in decisions
    assert not any(i in decisions for i in ids)


def test_three_runs_or_fewer_are_all_shown_in_detail(tmp_path) -> None:
    files, ids = window(tmp_path, [0, 10, 30])
    scores = section(files["report.html"].decode(), "scores")
    assert [i for i in ids if i in scores] == ids


def test_the_chain_is_shown_once_per_version_with_the_runs_it_covers(tmp_path) -> None:
    files, ids = window(tmp_path, [0, 10, 20, 30, 40], versions=[2.0, 2.0, 3.0, 3.0, 3.0])
    chain = html.unescape(section(files["report.html"].decode(), "chain"))
    assert chain.count("<h3>Pipeline version") == 2
    assert f"Covers 2 runs: {ids[0]}, {ids[1]}</p>" in chain
    assert f"Covers 3 runs: {', '.join(ids[2:])}</p>" in chain
    text = pdf_text(files["report.pdf"])
    assert text.count("Pipeline version sha256:") == 2


def test_the_report_names_the_version_that_wrote_it(tmp_path) -> None:
    files, _ = window(tmp_path, [30])
    page = files["report.html"].decode()
    footer = page.split("<footer>", 1)[1].split("</footer>", 1)[0]
    assert footer.endswith(f"by pipeline-replay {replay.__version__}")
    assert f"pip install pipeline-replay=={replay.__version__}" in section(page, "verify")
    text = pdf_text(files["report.pdf"])
    assert f"pip install pipeline-replay=={replay.__version__}" in text
    assert f"by pipeline-replay {replay.__version__}" in text


def test_export_replays_each_run_once_and_reports_each_one(tmp_path, monkeypatch) -> None:
    replayed: list[str] = []
    real = evidence.replay

    def counting(store: replay.Store, run_id: str) -> replay.ReplayReport:
        replayed.append(run_id)
        return real(store, run_id)

    monkeypatch.setattr(evidence, "replay", counting)
    store = replay.Store.open(tmp_path / "store")
    ids = [
        replay.record(
            pipeline(2.0),
            rows(3, 10 * i),
            store=store,
            record_key="id",
            at=T0 + timedelta(minutes=i),
        ).run_id
        for i in range(4)
    ]
    lines: list[str] = []
    evidence.export(
        store,
        ids + ids[:1],
        tmp_path / "e.bundle",
        key=keys.init_key(tmp_path / "k.pem"),
        progress=lines.append,
    )
    assert sorted(replayed) == sorted(ids)
    assert [ln for ln in lines if ln.startswith("run ")] == [
        f"run {n}/4 {i}" for n, i in enumerate(ids, 1)
    ]


def test_an_asked_record_beyond_the_decisions_shown_is_still_shown(tmp_path) -> None:
    store = replay.Store.open(tmp_path / "store")
    run_id = replay.record(pipeline(2.0), rows(301), store=store, record_key="id", at=T0).run_id
    out = evidence.export(
        store,
        [run_id],
        tmp_path / "e.bundle",
        key=keys.init_key(tmp_path / "k.pem"),
        question={"record": "R300"},
    )
    check = verify_bundle(out.path, keys.public_path(tmp_path / "k.pem").read_bytes())
    decisions = section(check.files["report.html"].decode(), "decisions").split("<caption>")[1]
    assert decisions.startswith(
        "301 decisions, of which the first 300 and the asked record are shown"
    )
    assert decisions.count("<tr><td") == 300  # MAX_DECISIONS rows, R0 to R299 ...
    assert decisions.count('<tr class="asked">') == 1  # ... and R300, the 301st
    assert '<td class="digest"><strong>R300</strong></td>' in decisions


def test_cli_export_of_a_window_keeps_json_output_clean(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from replay.cli.app import app

    store = replay.Store.open(tmp_path / "store")
    for i in range(5):
        replay.record(
            pipeline(2.0),
            rows(3, 10 * i),
            store=store,
            record_key="id",
            at=T0 + timedelta(minutes=12 * i),
        )
    out = tmp_path / "e.bundle"
    done = CliRunner().invoke(
        app,
        [
            "--store",
            store.url,
            "export",
            "--since",
            T0.isoformat(),
            "--until",
            (T0 + timedelta(hours=1)).isoformat(),
            "--record",
            "R31",
            "--out",
            str(out),
            "--key",
            str(keys.init_key(tmp_path / "k.pem")),
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.stdout)["runs"]) == 5
    assert "replaying" not in done.stderr
