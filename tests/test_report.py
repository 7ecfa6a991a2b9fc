"""The human evidence report: HTML escapes and loads nothing, PDF carries the same facts."""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from replay.evidence.report import render_html, render_pdf, scatter_svg

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<script>alert(1)</script>"
# Debian's chromium fetches time, component updates and accounts in the background whatever
# the flags say; a dead loopback proxy keeps those (and any leak from the page) on this machine.
DEAD_PROXY = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def digest(n: int) -> str:
    return "sha256:" + f"{n:02x}" * 32


def make_context() -> dict[str, Any]:
    run_id = "01j9zq4x7m2k8t3v5w6y7z8a9b"
    return {
        "title": "Evidence for application APP-00000006",
        "generated_at": "2026-11-26T06:30:00+00:00",
        "question": {
            "pipeline": "credit-decision",
            "run_ids": [run_id],
            "time": "2026-03-14T08:19:00+00:00",
            "record": "APP-00000006",
        },
        "ledger": {
            "tree_size": 49,
            "root_hash": digest(1),
            "key_id": digest(2),
            "checkpoint_time": "2026-11-26T06:29:00+00:00",
        },
        "redacted": ["applicant_id", "date_of_birth"],
        "runs": [
            {
                "run_id": run_id,
                "pipeline": "credit-decision",
                "clock": "2026-03-14T08:19:00+00:00",
                "version": digest(3),
                "verdict": "diverged",
                "first_divergence": "pd",
                "environment": {
                    "python": "3.11.7",
                    "platform": "Linux 6.1 x86_64",
                    "cpu": "Intel Xeon",
                    "numpy": "2.4.6",
                    "image": "reg/x@" + digest(4),
                    "packages_lock": digest(5),
                },
                "drift": [{"what": "numpy", "recorded": "2.4.6", "now": "2.5.0"}],
                "chain": [
                    {
                        "step": "features",
                        "inputs": ["input"],
                        "verdict": "exact",
                        "detail": "",
                        "code": digest(6),
                        "source": digest(7),
                        "params": digest(8),
                        "output": digest(9),
                        "models": {},
                        "data": {
                            "bureau": {
                                "sha256": digest(10),
                                "dvc_rev": "858a23d",
                                "dvc_md5": "1535aa",
                                "remote": "/srv/dvc",
                            }
                        },
                    },
                    {
                        "step": "pd",
                        "inputs": ["features"],
                        "verdict": "diverged",
                        "detail": "3 rows changed, max abs diff 0.002",
                        "code": digest(11),
                        "source": digest(12),
                        "params": digest(13),
                        "output": digest(14),
                        "models": {"fraud": digest(15)},
                        "data": {},
                    },
                ],
                "decisions": [
                    {
                        "key": "APP-00000006",
                        "decision": "decline",
                        "reason_codes": ["R01 high probability of default"],
                        "score": 0.3232,
                    },
                    {"key": HOSTILE, "decision": "approve", "reason_codes": [], "score": 0.05},
                ],
                "scores": {
                    "column": "pd",
                    "recorded": [0.3232, 0.05, 0.5],
                    "replayed": [0.3232, 0.05, 0.502],
                },
            }
        ],
        "retention": [
            {
                "field": "decisions + reason codes",
                "regulation": "US Regulation B, 12 CFR 1002.12(b)",
                "why": "adverse-action reasons, 25 months",
            }
        ],
    }


def all_digests(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [d for v in value.values() for d in all_digests(v)]
    if isinstance(value, list):
        return [d for v in value for d in all_digests(v)]
    return re.findall(r"sha256:[0-9a-f]{64}", value) if isinstance(value, str) else []


def pdf_text(data: bytes) -> str:
    try:
        from pypdf import PdfReader
    except ImportError:  # render_pdf writes uncompressed streams: the raw bytes hold the text
        return data.decode("latin-1")
    import io

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_html_escapes_hostile_values() -> None:
    html = render_html(make_context())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()


def test_html_loads_nothing_external_and_has_csp() -> None:
    html = render_html(make_context())
    assert not re.search(
        r"""(src|href|srcset|action|poster)\s*=\s*["']?\s*(https?:|//)""", html, re.I
    )
    assert not re.search(r"""url\(|@import""", html, re.I)
    # The only URL-looking text allowed is the SVG namespace, which is a name, not a request.
    assert not re.search(r"https?:", html.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    assert (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
    ) in html


def test_html_shows_every_digest_redaction_and_verdict() -> None:
    ctx = make_context()
    html = render_html(ctx)
    digests = all_digests(ctx)
    assert len(digests) == 15
    assert all(d in html for d in digests)
    assert all(c in html for c in ctx["redacted"])
    assert all(f'<div class="badge">{r["verdict"]}</div>' in html for r in ctx["runs"])


def test_pdf_is_a_pdf_with_verdict_and_run_id() -> None:
    data = render_pdf(make_context())
    assert data.startswith(b"%PDF")
    text = pdf_text(data)
    assert "DIVERGED" in text
    assert "01j9zq4x7m2k8t3v5w6y7z8a9b" in text


def test_question_without_record_or_time_is_still_a_sentence() -> None:
    ctx = make_context()
    ctx["question"].update(record=None, time=None)
    html = render_html(ctx)
    assert "decide for its records (run 01j9zq4x7m2k8t3v5w6y7z8a9b)" in html
    assert "None" not in html


def test_pdf_is_deterministic() -> None:
    assert render_pdf(make_context()) == render_pdf(make_context())


@pytest.mark.parametrize(("recorded", "replayed"), [([], []), ([0.4] * 5, [0.4] * 5)])
def test_scatter_svg_degenerate_inputs_are_valid_svg(
    recorded: list[float], replayed: list[float]
) -> None:
    root = ET.fromstring(scatter_svg(recorded, replayed, "pd <&>"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "nan" not in ET.tostring(root, encoding="unicode").lower()


def test_null_and_nan_scores_are_left_off_the_plot_but_counted() -> None:
    ctx = make_context()
    ctx["runs"][0]["scores"] = {
        "column": "pd",
        "recorded": [0.1, None, float("nan"), 0.4],
        "replayed": [0.1, 0.2, float("nan"), 0.4],
    }
    html = render_html(ctx)
    assert "4 pairs, 1 differ" in html
    assert html.count("<circle") == 2
    assert render_pdf(ctx).startswith(b"%PDF")


def test_scatter_svg_caps_points_deterministically() -> None:
    recorded = [i / 10_000 for i in range(10_000)]
    svg = scatter_svg(recorded, recorded, "pd")
    assert svg.count("<circle") == 2000
    assert svg == scatter_svg(recorded, list(recorded), "pd")


def page_requests(net_log: Path) -> set[str]:
    """URLs the page asked for. Chromium's own background fetches (time, component updates,
    accounts) carry the initiator "not an origin"; anything a file:// page loads has "null"."""
    log = json.loads(net_log.read_text())
    assert log["events"], "chromium wrote an empty net log: nothing would be caught"
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    begins = [e.get("params", {}) for e in log["events"] if e["type"] == start]
    return {p["url"] for p in begins if "url" in p and p.get("initiator") != "not an origin"}


def run_chromium(page: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    shot, net = tmp_path / "shot.png", tmp_path / "net.json"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        f"--log-net-log={net}",
        *DEAD_PROXY,
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc, net


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
)


@needs_chromium
def test_real_browser_renders_without_errors_or_requests(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(make_context()), encoding="utf-8")
    proc, net = run_chromium(page, tmp_path)
    assert (tmp_path / "shot.png").stat().st_size > 20_000
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == []
    assert not re.search(r"https?://", proc.stderr)
    assert page_requests(net) - {page.as_uri()} == set()


@needs_chromium
def test_net_log_check_catches_a_page_that_loads_something(tmp_path: Path) -> None:
    # The control for the test above: without a CSP, an external image is requested and seen.
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><p>x</p><img src="http://127.0.0.1:9/leak.png">')
    _, net = run_chromium(page, tmp_path)
    assert page_requests(net) == {"http://127.0.0.1:9/leak.png"}
