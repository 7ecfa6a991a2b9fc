"""The credit-bureau client, standing in for the bureau's HTTP API (POST /v2/reports).

The real client sends a batch of customer ids and gets one JSON report per id back. This
stand-in answers the same shape from a hash of the id, so it needs no network; the pipeline
still calls it through the run context, which records the answers, exactly as it must for the
real API, whose answers change as the bureau's files do.
"""

from __future__ import annotations

import zlib

SCORE_RANGE = (300, 850)


def reports(customer_ids: list[str]) -> list[dict[str, str | int]]:
    """One JSON-serialisable report per id, in order: score and recent hard inquiries."""
    low, high = SCORE_RANGE
    answers: list[dict[str, str | int]] = []
    for customer in customer_ids:
        base = _unit(customer)
        answers.append(
            {
                "customer_id": customer,
                "score": int(low + (high - low) * (0.35 + 0.6 * base)),
                "inquiries_6m": int(6 * _unit(f"{customer}:inquiries") * (1.2 - base)),
            }
        )
    return answers


def _unit(key: str) -> float:
    """A stable pseudo-random number in [0, 1) (crc32, unlike hash(), is not salted)."""
    return zlib.crc32(key.encode()) / 2**32
