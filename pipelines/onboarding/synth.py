"""Synthetic applications, balance snapshots and default labels, deterministic by seed.

Builder-only (not copied into the workspace). Dates are fixed anchors, never the wall clock:
a seed fixes every byte.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

CUSTOMERS = 500  # customers with accounts; applicants beyond them are new to the bank
NEW_TO_BANK = 0.1  # share of applicants without an account
# Month-end balance snapshots, stamped when the month closed (the first of the next month).
CLOSES = tuple(
    datetime(y, m, 1, tzinfo=UTC)
    for y, m in ((2025, 10), (2025, 11), (2025, 12), (2026, 1), (2026, 2), (2026, 3))
)
# The refresh: March closes, and snapshots of 10 March that arrived late (before the
# recorded decision time, 14 March 09:30, so a naive re-run would read them).
REFRESH_CLOSE = datetime(2026, 4, 1, tzinfo=UTC)
LATE = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
# Purposes by kind: templates, and how much the kind adds to the log-odds of default.
PURPOSES: dict[str, tuple[float, tuple[str, ...]]] = {
    "consolidation": (
        0.7,
        (
            "consolidate my credit card debt",
            "pay off credit cards",
            "debt consolidation loan",
            "combine my loans into one payment",
        ),
    ),
    "car": (-0.3, ("buy a used car", "new car for commuting to work", "replace my old car")),
    "home": (
        -0.5,
        (
            "home renovation new kitchen",
            "fix the roof before winter",
            "bathroom remodel",
            "reno of the flat",
        ),
    ),
    "medical": (0.3, ("medical bills", "dental treatment", "surgery costs not covered")),
    "business": (
        0.5,
        ("start a small business", "equipment for my bakery", "working capital for my shop"),
    ),
    "shortfall": (
        1.4,
        (
            "pay off payday loans",
            "cover rent this month",
            "overdue bills and rent",
            "refi payday debt",
        ),
    ),
    "event": (0.0, ("wedding expenses", "family holiday to spain", "christmas presents")),
    "education": (-0.2, ("university tuition", "training course for my career")),
}
_DECOR = ("", "", "", "!", " asap", " - thanks", ".")
_BALANCE_STREAM, _LABEL_STREAM = 0xBA1, 0x1AB


def vocabulary() -> list[str]:
    """Every word the purpose templates use, sorted (the encoder's known words)."""
    words = {w for _, texts in PURPOSES.values() for t in texts for w in t.split()}
    words -= {"reno", "refi"}  # slang the encoder never saw: read as unknown words
    return sorted(words)


def applications(n: int, seed: int, start: int = 0) -> pa.Table:
    """`n` applications numbered APP-<start>...; customer ids CUST-00000..."""
    rng = np.random.default_rng(seed)
    known = rng.random(n) >= NEW_TO_BANK
    customer = np.where(
        known, rng.integers(0, CUSTOMERS, n), CUSTOMERS + rng.integers(0, 10 * CUSTOMERS, n)
    )
    income = np.round(rng.lognormal(np.log(48_000), 0.45, n), -2)
    amount = np.clip(np.round(income * rng.lognormal(np.log(0.35), 0.6, n), -2), 500, 80_000)
    return pa.table(
        {
            "application_id": np.char.mod("APP-%06d", np.arange(start, start + n)),
            "customer_id": np.char.mod("CUST-%05d", customer),
            "purpose": _purposes(rng, n),
            "income": income,
            "amount": amount,
        }
    )


def balances(seed: int, refreshed: bool = False) -> pa.Table:
    """Snapshots (customer_id, as_of, balance, missed_payments): up to six month-ends per
    customer; `refreshed` adds the March close, late 10 March snapshots for a fifth of the
    customers, and restates a tenth of the February balances after a reconciliation."""
    rng = np.random.default_rng((seed, _BALANCE_STREAM))
    stress = stresses(seed)
    months = rng.integers(1, len(CLOSES) + 1, CUSTOMERS)  # how long each has banked with us
    level = rng.lognormal(np.log(3_000), 1.0, CUSTOMERS)
    closes = list(CLOSES)
    late = rng.random(CUSTOMERS) < 0.2
    restated = rng.random(CUSTOMERS) < 0.1
    if refreshed:
        closes.append(REFRESH_CLOSE)
    rows = []
    for i, close in enumerate(closes):
        held = months >= len(CLOSES) - min(i, len(CLOSES) - 1)
        rows.append(
            _snapshot(
                rng,
                held,
                close,
                level * (1 + 0.1 * i) * (1 - 0.5 * stress),
                stress,
                restated if refreshed and close == CLOSES[-1] else None,
            )
        )
    if refreshed:
        rows.append(_snapshot(rng, late & (months > 0), LATE, level * 0.9, stress, None))
    table = pa.concat_tables(rows)
    return table.sort_by([("customer_id", "ascending"), ("as_of", "ascending")])


def stresses(seed: int) -> np.ndarray:
    """Each customer's hidden financial stress in [0, 1): drives missed payments and defaults."""
    return np.random.default_rng((seed, _BALANCE_STREAM, 0)).beta(1.2, 4.0, CUSTOMERS)


def defaults(apps: pa.Table, seed: int) -> np.ndarray:
    """Whether each application defaulted (the training label), from purpose, stress,
    loan-to-income and the bureau score."""
    rng = np.random.default_rng((seed, _LABEL_STREAM))
    kind_risk = {t: risk for risk, texts in PURPOSES.values() for t in texts}
    purpose = [kind_risk.get(_plain(t), 0.0) for t in apps["purpose"].to_pylist()]
    number = np.char.partition(apps["customer_id"].to_numpy(zero_copy_only=False).astype(str), "-")[
        :, 2
    ].astype(int)
    stress = np.where(
        number < CUSTOMERS, stresses(seed)[np.minimum(number, CUSTOMERS - 1)], 0.35
    )  # a stranger's stress is unknown: about the population's upper half
    ratio = apps["amount"].to_numpy() / apps["income"].to_numpy()
    logit = -2.6 + np.asarray(purpose) + 3.0 * stress + 1.5 * (ratio - 0.35)
    return rng.random(apps.num_rows) < 1 / (1 + np.exp(-logit))


def _snapshot(
    rng: np.random.Generator,
    held: np.ndarray,
    close: datetime,
    level: np.ndarray,
    stress: np.ndarray,
    restated: np.ndarray | None,
) -> pa.Table:
    balance = np.round(level * rng.lognormal(0, 0.15, CUSTOMERS), 2)
    if restated is not None:
        balance = np.where(restated, np.round(balance * 0.8, 2), balance)
    missed = rng.poisson(4 * stress**2).astype(np.int32)
    ids = np.flatnonzero(held)
    return pa.table(
        {
            "customer_id": np.char.mod("CUST-%05d", ids),
            "as_of": pa.array([close] * ids.size, pa.timestamp("us", tz="UTC")),
            "balance": balance[ids],
            "missed_payments": missed[ids],
        }
    )


def _purposes(rng: np.random.Generator, n: int) -> list[str]:
    texts = [t for _, kind in PURPOSES.values() for t in kind]
    picks = rng.integers(0, len(texts), n)
    decor = rng.integers(0, len(_DECOR), n)
    capital = rng.random(n) < 0.5
    out = []
    for pick, d, cap in zip(picks, decor, capital, strict=True):
        text = texts[pick] + _DECOR[d]
        out.append(text[0].upper() + text[1:] if cap else text)
    return out


def _plain(text: str) -> str:
    """A decorated purpose back to its template (lower case, decorations removed)."""
    text = text.lower()
    for decor in sorted(_DECOR, key=len, reverse=True):
        if decor and text.endswith(decor):
            return text[: -len(decor)]
    return text
