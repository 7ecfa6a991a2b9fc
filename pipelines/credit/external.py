"""A simulated income-verification provider (think: a payroll-data API).

Real providers answer differently from one day to the next as employers upload payroll
files. This one does too: its answers depend on the wall-clock day, so a past run can only
be reproduced from the answers the framework recorded on its tape, never by calling again.
"""

from __future__ import annotations

import math
import time
import zlib

VERIFIED_RATIO = 0.75  # confirmed share of stated income at which income counts as verified


def verify_income(applicant_ids: list[str]) -> list[dict[str, str | bool | float]]:
    """One JSON-serialisable answer per id, in order; deterministic given (ids, UTC day)."""
    day = int(time.time() // 86_400)
    # Coverage wanders over a roughly monthly payroll cycle, shared by every applicant.
    drift = 0.05 * math.sin(2 * math.pi * day / 29.5)
    answers: list[dict[str, str | bool | float]] = []
    for applicant in applicant_ids:
        # Stable per applicant, plus a little day-to-day jitter as payroll data arrives.
        base = _unit(applicant)
        jitter = _unit(f"{applicant}:{day}") - 0.5
        ratio = round(0.7 + 0.35 * base + drift + 0.06 * jitter, 4)
        answers.append(
            {
                "applicant_id": applicant,
                "verified": ratio >= VERIFIED_RATIO,
                "verified_income_ratio": ratio,
            }
        )
    return answers


def _unit(key: str) -> float:
    """A stable pseudo-random number in [0, 1) (crc32, unlike hash(), is not salted)."""
    return zlib.crc32(key.encode()) / 2**32
