"""The evidence report for people: one context dict as a self-contained HTML page and a PDF for
filing, same sections in the same order. Context values are untrusted text: Jinja and the SVG
escape them (record keys and reason codes come from the pipeline's data).

A window of many runs stays readable: ``layout`` gives one chain per pipeline version and one
environment per recorded environment (each listing the runs it covers), a summary row per run,
and per-run detail (step outputs, decisions, score plot) only for the runs that hold the record
asked about, or for every run when there are ``DETAIL_ALL`` or fewer."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from html import escape
from numbers import Real
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from replay import __version__
from replay.evidence.facts import DETAIL_ALL, decisions_caption, layout, outputs

Context = dict[str, Any]
Pair = tuple[float, float]

MAX_POINTS = 2000  # beyond this an SVG gets heavy and the PDF slow; the picture looks the same
VERDICT_RGB = {"exact": (21, 101, 52), "equivalent": (146, 84, 0), "diverged": (176, 32, 32)}
VERDICT_MEANS = {
    "exact": "Every step's output is bitwise equal to the recording.",
    "equivalent": "Only numeric differences, each within its step's tolerance.",
    "diverged": "The replay did not reproduce the recording.",
}
# fpdf's core fonts encode latin-1 only; these are the characters our own and typical text use.
LATIN1 = str.maketrans(
    {
        "\u2192": "->",
        "\u2264": "<=",
        "\u2265": ">=",
        "\u2260": "!=",
        "\u2014": "-",
        "\u2013": "-",
        "\u2026": "...",
        "\u2022": "*",
        "\u201c": '"',
        "\u201d": '"',
        "\u2018": "'",
        "\u2019": "'",
    }
)
VERIFY = (f"pip install pipeline-replay=={__version__}", "replay verify BUNDLE --key KEY.pub")
GENERATOR = f"pipeline-replay {__version__}"
MONO = FontFace(family="Courier", size_pt=6.5)  # PDF digests: fits sha256 + a label on a line
HEAD = FontFace(emphasis="BOLD", fill_color=(230, 230, 230))
ASKED_FILL = (255, 236, 160)  # the asked record's row; it is bold too, for greyscale prints
ASKED = FontFace(emphasis="BOLD", fill_color=ASKED_FILL)
ASKED_MONO = FontFace(family="Courier", size_pt=6.5, emphasis="BOLD", fill_color=ASKED_FILL)
# In the summary the fill alone marks the run: its tight columns have no room for bold.
FILLED = (
    FontFace(fill_color=ASKED_FILL),
    FontFace(family="Courier", size_pt=6.5, fill_color=ASKED_FILL),
)
ENV = Environment(
    loader=PackageLoader("replay.evidence", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
)


def _same_time(a: str, b: str) -> bool:
    try:
        return datetime.fromisoformat(a) == datetime.fromisoformat(b)
    except (TypeError, ValueError):
        return a == b


def question_sentence(context: Context) -> str:
    """The question the report answers, as one sentence a person can read. A record is asked
    about at the clock of the run that decided it, not at the window's start."""
    q = context.get("question") or {}
    ids = [str(i) for i in q.get("run_ids") or []]
    record, decided, start = q.get("record"), q.get("decided_at"), q.get("time")
    many = len(ids) > DETAIL_ALL
    runs = (
        f"{len(ids)} runs, listed in section 2"
        if many
        else f"run{'s' if len(ids) != 1 else ''} {', '.join(ids) or '(none)'}"
    )
    end = ", and does replaying it today reproduce that result exactly?"
    if record and decided:
        window = f" (window from {start})" if start and not _same_time(start, decided) else ""
        of = f" (one of {len(ids)} exported runs)" if len(ids) > 1 else ""
        return (
            f"What did pipeline {q.get('pipeline', '?')} decide for record {record}, "
            f"decided at {decided}{window}, in run {q.get('decided_by')}{of}{end}"
        )
    subject = (
        f"record {record}, which none of the exported runs holds," if record else "its records"
    )
    when = f" at {start}" if start else ""
    return f"What did pipeline {q.get('pipeline', '?')} decide for {subject}{when} ({runs}){end}"


def _finite(v: Any) -> bool:
    return isinstance(v, Real) and math.isfinite(v)  # score columns can hold None and NaN


def score_caption(scores: Context) -> str:
    """Counts over all pairs, not the plotted sample, so the caption never understates."""
    rec, rep = list(scores.get("recorded") or []), list(scores.get("replayed") or [])
    pairs = list(zip(rec, rep, strict=False))
    diffs = [abs(a - b) for a, b in pairs if _finite(a) and _finite(b)]
    # NaN == NaN is False, yet a NaN replayed as NaN was reproduced; missing scores differ.
    differ = sum(a != b and not (a != a and b != b) for a, b in pairs) + abs(len(rec) - len(rep))
    return (
        f"{len(pairs)} pairs, {differ} differ, largest absolute difference "
        f"{max(diffs, default=0.0):.3g}. Filled dots on the dashed line y = x are reproduced "
        "scores; hollow red rings differ."
    )


def _sample(recorded: Sequence[Any], replayed: Sequence[Any]) -> list[Pair]:
    # Differing pairs are the evidence, so they are always kept; equal pairs are thinned by an
    # even stride, which is deterministic: the same run always draws the same picture.
    pairs = [
        (float(a), float(b))
        for a, b in zip(recorded, replayed, strict=False)
        if _finite(a) and _finite(b)
    ]
    differ = [p for p in pairs if p[0] != p[1]][:MAX_POINTS]
    same = [p for p in pairs if p[0] == p[1]]
    room = MAX_POINTS - len(differ)
    if len(same) > room:
        same = [same[i * len(same) // room] for i in range(room)] if room else []
    return same + differ


def _frame(pairs: list[Pair], size: float) -> tuple[float, float, Callable[[float], float]]:
    """Axis bounds with a margin, and the map from a value to its offset along an axis."""
    values = [v for p in pairs for v in p]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or abs(lo) * 0.1 or 1.0  # all-equal values still get a scale
    lo, hi = lo - pad, hi + pad
    return lo, hi, lambda v: (v - lo) / (hi - lo) * size


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    # Round values (1, 2, 2.5 or 5 times a power of ten) read better than evenly split bounds.
    raw = (hi - lo) / (n - 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def scatter_svg(recorded: list[float], replayed: list[float], label: str) -> str:
    """Recorded vs replayed scores; a point on the dashed y=x line is a reproduced score."""
    pairs = _sample(recorded, replayed)
    (left, top, size), name = (64, 12, 300), escape(label)
    lo, hi, s = _frame(pairs, size)
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 380 370" width="380" '
        'height="370" role="img" font-family="sans-serif" font-size="11">',
        f"<title>recorded vs replayed {name}: {len(pairs)} points</title>",
        f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#444"/>',
    ]
    for t in _ticks(lo, hi):
        x, y = left + s(t), top + size - s(t)
        out += [
            f'<line x1="{x:.1f}" y1="{top + size}" x2="{x:.1f}" y2="{top + size + 5}" '
            f'stroke="#444"/><text x="{x:.1f}" y="{top + size + 18}" text-anchor="middle">'
            f'{t:.3g}</text><line x1="{left - 5}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" '
            f'stroke="#444"/><text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{t:.3g}</text>"
        ]
    out.append(
        f'<line x1="{left}" y1="{top + size}" x2="{left + size}" y2="{top}" '
        'stroke="#777" stroke-dasharray="5 4"/>'
    )
    out += [_svg_point(left + s(a), top + size - s(b), a != b) for a, b in pairs]
    if not pairs:
        out.append(
            f'<text x="{left + size / 2}" y="{top + size / 2}" text-anchor="middle">'
            "no scores to plot</text>"
        )
    out += [
        f'<text x="{left + size / 2}" y="{top + size + 38}" text-anchor="middle">recorded '
        f'{name}</text><text transform="translate(16 {top + size / 2}) rotate(-90)" '
        f'text-anchor="middle">replayed {name}</text></svg>'
    ]
    return "".join(out)


def _svg_point(x: float, y: float, differs: bool) -> str:
    # Differing points are hollow red rings: visible in colour and in a greyscale print.
    if differs:
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="none" stroke="#b02020"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#1f3a5f" fill-opacity="0.6"/>'


def _detail_view(run: Context) -> Context:
    scores = run.get("scores") or {}
    plot = scatter_svg(
        scores.get("recorded") or [],
        scores.get("replayed") or [],
        str(scores.get("column", "score")),
    )
    # The SVG escapes every value it embeds, so it is safe to mark as markup here.
    return {
        **run,
        "outputs": outputs(run),
        "plot": Markup(plot),
        "caption": score_caption(scores),
        "decisions_caption": decisions_caption(run),
    }


def render_html(context: Context) -> str:
    """The report as one HTML page that loads nothing from anywhere (its CSP forbids it)."""
    view = layout(context)
    return ENV.get_template("report.html.j2").render(
        ctx=context,
        question=question_sentence(context),
        verify=VERIFY,
        means=VERDICT_MEANS,
        view=view,
        generator=GENERATOR,
        runs=context.get("runs") or [],
        detail=[_detail_view(r) for r in view["detail"]],
        colours={k: "#" + bytes(rgb).hex() for k, rgb in VERDICT_RGB.items()},
    )


def _t(value: Any) -> str:
    return str(value).translate(LATIN1).encode("latin-1", "replace").decode("latin-1")


def _section(pdf: FPDF, title: str, room: float = 25, size: float = 12) -> None:
    # A heading alone at the foot of a page reads as if its content were missing.
    if pdf.get_y() + room > pdf.page_break_trigger:
        pdf.add_page()
    pdf.ln(size / 4)
    _para(pdf, title, size, "B")


def _para(
    pdf: FPDF, text: str, size: float = 9, style: str = "", font: str = "Helvetica", w: float = 0
) -> None:
    pdf.set_font(font, style, size)
    pdf.multi_cell(w, size * 0.5, _t(text), align="L", new_x="LMARGIN", new_y="NEXT")


def _table(
    pdf: FPDF,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float],
    mono: Sequence[int] = (),
    marked: Collection[int] = (),
    mark: tuple[FontFace, FontFace] = (ASKED, ASKED_MONO),
) -> None:
    """A table; rows whose index is in ``marked`` get ``mark``'s faces (the asked record:
    bold on a fill)."""
    pdf.set_font("Helvetica", "", 8)
    with pdf.table(
        col_widths=tuple(widths),
        text_align="LEFT",
        line_height=3.6,
        padding=1,
        headings_style=HEAD,
        v_align="TOP",
    ) as table:
        table.row([_t(h) for h in header])
        for n, values in enumerate(rows):
            row = table.row()
            for i, v in enumerate(values):
                style = mark[i in mono] if n in marked else (MONO if i in mono else None)
                row.cell(_t("-" if v is None else v), style=style)
    pdf.ln(2)


def _pdf_verdict(pdf: FPDF, context: Context, view: Context) -> None:
    runs, verdict, top = context.get("runs") or [], str(view["verdict"]), pdf.get_y()
    with pdf.local_context(fill_color=VERDICT_RGB.get(verdict, (60, 60, 60)), text_color=255):
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(55, 14, _t(verdict.upper()), fill=True, align="C")
    pdf.set_xy(pdf.l_margin + 59, top + 1)
    _para(pdf, _verdict_note(runs, view), w=pdf.epw - 59)
    pdf.set_y(max(pdf.get_y(), top + 14) + 4)
    for label in view["whatif"]:
        _para(pdf, label, style="B")
    _table(
        pdf,
        ("run", "clock", "kind", "version", "verdict", "rows", "decisions"),
        [
            (
                s["run_id"],
                s["clock"],
                s["kind"],
                s["version"],
                s["verdict"],
                s["rows"],
                s["decisions"],
            )
            for s in view["summary"]
        ],
        (51.6, 37.9, 15.3, 28.2, 15, 9, 33),
        mono=(0, 3),
        marked={i for i, s in enumerate(view["summary"]) if s["asked"]},
        mark=FILLED,
    )


def _verdict_note(runs: list[Context], view: Context) -> str:
    if len(runs) == 1:
        run = runs[0]
        first = run.get("first_divergence")
        note = (
            f"First diverging step: {first}."
            if first
            else VERDICT_MEANS.get(str(run.get("verdict")), "")
        )
        return f"{note}\nPipeline version: {run.get('version') or '-'}"
    clocks = sorted(str(r.get("clock")) for r in runs)
    return (
        f"{len(runs)} runs, recorded {clocks[0]} to {clocks[-1]}: {view['counts']}.\n"
        + VERDICT_MEANS.get(str(view["verdict"]), "Some runs did not replay.")
    )


def _pdf_chain(pdf: FPDF, context: Context, view: Context) -> None:
    for version in view["versions"]:
        _section(pdf, f"Pipeline version {version['version']}", 30, 9)
        _para(pdf, version["covers"], 7)
        steps = [
            (
                s.get("step"),
                ", ".join(map(str, s.get("inputs") or [])),
                "\n".join(str(v) for v in (s.get("verdict"), s.get("detail")) if v),
                "\n".join(f"{k}: {v}" for k, v in s["components"]),
            )
            for s in version["steps"]
        ]
        _table(
            pdf,
            ("step", "reads", "verdict", "digests and data versions"),
            steps,
            (20, 18, 32, 120),
            mono=(3,),
        )


def _pdf_environment(pdf: FPDF, context: Context, view: Context) -> None:
    for env in view["environments"]:
        _section(pdf, "Recorded environment", 30, 9)
        _para(pdf, env["covers"], 7)
        _table(pdf, ("what", "recorded"), sorted(env["environment"].items()), (30, 160), mono=(1,))
        drift = [(d.get("what"), d.get("recorded"), d.get("now")) for d in env["drift"]]
        if drift:
            _para(pdf, "Drift since the recording (reported, not a failure):", style="B")
            _table(pdf, ("what", "recorded", "now"), drift, (30, 80, 80), mono=(1, 2))


def _run_heading(pdf: FPDF, run: Context, room: float) -> None:
    _section(pdf, f"Run {run.get('run_id')}", room, 9)
    whatif = " - a what-if run (section 2)" if run.get("kind_label") else ""
    _para(pdf, f"Recorded at {run.get('clock')}{whatif}; replay verdict {run.get('verdict')}.", 8)


def _pdf_decisions(pdf: FPDF, context: Context, view: Context) -> None:
    _para(pdf, view["detail_note"])
    for run in view["detail"]:
        _run_heading(pdf, run, 30)
        _table(
            pdf,
            ("step", "verdict", "recorded output", "detail"),
            outputs(run),
            (22, 18, 102, 48),
            mono=(2,),
        )
        decisions = run.get("decisions") or []
        _para(pdf, decisions_caption(run), 8)
        rows = [
            (
                d.get("key"),
                d.get("decision"),
                "; ".join(map(str, d.get("reason_codes") or [])),
                d.get("score"),
            )
            for d in decisions
        ]
        _table(
            pdf,
            ("key", "decision", "reason codes", "score"),
            rows,
            (40, 20, 110, 20),
            mono=(0,),
            marked={i for i, d in enumerate(decisions) if d.get("asked")},
        )


def _pdf_plots(pdf: FPDF, context: Context, view: Context) -> None:
    if not view["detail"]:
        _para(pdf, view["detail_note"])
    for run in view["detail"]:
        _run_heading(pdf, run, 100)
        _pdf_plot(pdf, run)


def _pdf_plot(pdf: FPDF, run: Context) -> None:
    scores, size = run.get("scores") or {}, 75.0
    label = str(scores.get("column", "score"))
    pairs = _sample(scores.get("recorded") or [], scores.get("replayed") or [])
    (lo, hi, s), x0, y0 = _frame(pairs, size), pdf.l_margin + 22, pdf.get_y() + 3
    pdf.set_font("Helvetica", "", 7)
    pdf.rect(x0, y0, size, size)
    for t in _ticks(lo, hi):
        x, y, text = x0 + s(t), y0 + size - s(t), f"{t:.3g}"
        pdf.line(x, y0 + size, x, y0 + size + 1.5)
        pdf.line(x0 - 1.5, y, x0, y)
        pdf.text(x - pdf.get_string_width(text) / 2, y0 + size + 4.5, text)
        pdf.text(x0 - 2.5 - pdf.get_string_width(text), y + 1, text)
    with pdf.local_context(dash_pattern={"dash": 1.5, "gap": 1}, draw_color=120):
        pdf.line(x0, y0 + size, x0 + size, y0)
    with pdf.local_context(fill_color=(31, 58, 95), draw_color=(176, 32, 32)):
        for a, b in pairs:  # as in the SVG: reproduced scores filled, differing ones as rings
            pdf.circle(x0 + s(a), y0 + size - s(b), 0.6 if a == b else 1.0, "F" if a == b else "D")
    pdf.text(x0 + size / 2 - 10, y0 + size + 9, _t(f"recorded {label}"))
    with pdf.rotation(90, x0 - 14, y0 + size / 2 + 10):
        pdf.text(x0 - 14, y0 + size / 2 + 10, _t(f"replayed {label}"))
    pdf.set_y(y0 + size + 12)
    _para(pdf, score_caption(scores), 8)


def _pdf_tail(pdf: FPDF, context: Context) -> None:
    ledger = context.get("ledger") or {}
    _section(pdf, "7. Ledger checkpoint")
    _table(
        pdf,
        ("field", "value"),
        [
            (k.replace("_", " "), ledger.get(k))
            for k in ("tree_size", "root_hash", "key_id", "checkpoint_time")
        ],
        (30, 160),
        mono=(1,),
    )
    _section(pdf, "8. Redacted columns")
    _para(
        pdf,
        "Replaced by keyed pseudonyms before storage: "
        + (", ".join(map(str, context.get("redacted") or [])) or "none"),
    )
    _section(pdf, "9. Retention")
    _table(
        pdf,
        ("retained", "regulation", "why"),
        [
            (r.get("field"), r.get("regulation"), r.get("why"))
            for r in context.get("retention") or []
        ],
        (55, 55, 80),
    )
    _section(pdf, "How to verify this yourself", 30)
    pdf.set_font("Courier", "", 9)
    pdf.multi_cell(0, 5, "\n".join(VERIFY), border=1, padding=3, new_x="LMARGIN", new_y="NEXT")


class _Doc(FPDF):
    def footer(self) -> None:
        # Every printed page names the document it belongs to: filed pages get separated.
        self.set_y(-10)
        self.set_font("Helvetica", "", 7)
        self.cell(0, 4, _t(f"{self.title} - {GENERATOR} - page {self.page_no()}/{{nb}}"), align="C")


# Sections 2 to 6, in the HTML's order, with the height each needs to start on a page.
SECTIONS: list[tuple[str, Callable[[FPDF, Context, Context], None], float]] = [
    ("2. Verdict", _pdf_verdict, 40),
    ("3. The chain", _pdf_chain, 40),
    ("4. Environment and image", _pdf_environment, 40),
    ("5. Decisions", _pdf_decisions, 40),
    ("6. Recorded vs replayed scores", _pdf_plots, 110),
]


def render_pdf(context: Context) -> bytes:
    """The same report as a PDF; byte-identical for the same context (dated generated_at)."""
    pdf = _Doc(format="A4")
    pdf.compress = False  # plain text streams: auditors can grep the file without a PDF library
    pdf.set_creation_date(datetime.fromisoformat(str(context["generated_at"])))
    pdf.set_title(_t(context.get("title", "Evidence report")))
    pdf.set_creator("pipeline-replay")
    pdf.add_page()
    _para(pdf, str(context.get("title", "Evidence report")), 16, "B")
    _para(pdf, f"Generated {context.get('generated_at')} by {GENERATOR}", 8)
    _section(pdf, "1. The question")
    _para(pdf, question_sentence(context), 10)
    view = layout(context)
    for title, draw, room in SECTIONS:
        _section(pdf, title, room)
        draw(pdf, context, view)
    _pdf_tail(pdf, context)
    return bytes(pdf.output())
