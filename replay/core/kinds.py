"""What a run is: a decision the pipeline made, or a question someone asked of it.

``production`` runs are the record: what the pipeline decided (``record``). ``whatif`` runs
are counterfactuals (``replay at --input``, ``run_as_of``): new rows through the pipeline as
deployed at some time, recorded for the answer's sake. ``at``, ``find``, ``runs`` and window
exports consider production runs unless asked for another kind, so a question never
becomes part of the record it asked about.
"""

from __future__ import annotations

from collections.abc import Mapping

from replay.errors import UsageError

PRODUCTION = "production"
WHATIF = "whatif"
KINDS = (PRODUCTION, WHATIF)
ANY = "all"  # a --kind value: no filter

LABELS = {
    PRODUCTION: "production decision",
    WHATIF: "what-if run (a question asked of the pipeline, not a decision it made)",
}


def kind_of(kind: object, tags: Mapping[str, str] | None) -> str:
    """A run's kind; manifests written before kinds existed say it by their tags."""
    if isinstance(kind, str):
        return kind
    return WHATIF if (tags or {}).get("counterfactual") == "true" else PRODUCTION


def wanted(kind: str | None) -> str | None:
    """The kind a query keeps (None: every kind), from a --kind value."""
    if kind is None or kind == ANY:
        return None
    if kind not in KINDS:
        raise UsageError(
            f"unknown run kind {kind!r}", hint=f"use one of {', '.join((*KINDS, ANY))}"
        )
    return kind
