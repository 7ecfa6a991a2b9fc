"""Synthetic loan applications and credit-bureau records, deterministic by seed.

Everything is vectorised numpy/pyarrow, so generating inputs never dominates a benchmark.
Dates are drawn relative to fixed anchors, never the wall clock: a seed fixes every byte.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from pipelines.credit import features

POPULATION = 50_000  # applicants known to the bank, and to the bureau
CHANNELS = ("branch", "online", "broker")
TERMS = (12, 24, 36, 48, 60)
ACCOUNTS_AS_OF = date(2025, 6, 30)  # latest possible account_opened date
TRAINING_NOW = datetime(2025, 7, 1, tzinfo=UTC)  # logical clock the training set is built at
_EPOCH = date(1970, 1, 1)
# Separate random streams per purpose, so e.g. the bureau of seed 7 is not correlated
# with the applications of seed 7 just because both start from the same generator state.
_BUREAU_STREAM, _LABEL_STREAM = 0xB0, 0x1A


def make_applications(n: int, seed: int, start_id: int = 0) -> pa.Table:
    """`n` loan applications numbered APP-<start_id>..., by applicants of the population."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(41, 12, n), 18, 80).astype(np.int64)
    income = np.round(rng.lognormal(np.log(52_000), 0.5, n), 2)
    loan = np.clip(np.round(income * rng.lognormal(np.log(0.3), 0.6, n), -2), 1_000, 250_000)
    debt = np.round(income * rng.lognormal(np.log(0.25), 0.8, n), 2) * (rng.random(n) < 0.7)
    return pa.table(
        {
            "application_id": _ids("APP-%08d", np.arange(start_id, start_id + n)),
            "applicant_id": _ids("C-%07d", rng.integers(0, POPULATION, n)),
            "age": age,
            "annual_income": income,
            "loan_amount": loan,
            "term_months": rng.choice(np.array(TERMS), n, p=[0.1, 0.2, 0.35, 0.15, 0.2]),
            "employment_years": np.round(np.minimum(rng.exponential(6.0, n), age - 18), 1),
            "account_opened": _account_opened(rng, age),
            "channel": pa.array(CHANNELS).take(rng.choice(3, n, p=[0.35, 0.5, 0.15])),
            "existing_debt": debt,
        }
    )


def make_bureau_table(seed: int, version: int = 1) -> pa.Table:
    """Bureau attributes of every applicant; `version=2` is a refresh of ~30% of them."""
    rng = np.random.default_rng((seed, _BUREAU_STREAM))
    score = np.clip(rng.normal(690, 70, POPULATION), 300, 850)
    risk = (850 - score) / 550  # 0 for a perfect file, 1 for the worst
    delinquencies = rng.poisson(3.0 * risk**2)
    open_trades = rng.poisson(3 + 4 * (1 - risk))
    inquiries = rng.poisson(0.5 + 2.5 * risk)
    if version == 2:
        score, delinquencies = _refresh(seed, score, delinquencies)
    elif version != 1:
        raise ValueError(f"bureau version {version} does not exist; use 1 or 2")
    table = pa.table(
        {
            "applicant_id": _ids("C-%07d", np.arange(POPULATION)),
            "bureau_score": np.rint(score).astype(np.int64),
            "delinquencies_24m": delinquencies,
            "open_trades": open_trades,
            "inquiries_6m": inquiries,
        }
    )
    # Stamped into the parquet file, so a workspace knows which population it can refresh.
    return table.replace_schema_metadata({"bureau_seed": str(seed), "bureau_version": str(version)})


def make_training_set(
    n: int,
    seed: int,
    bureau: pa.Table | None = None,
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Feature table (as the features step builds it) with fraud and default labels."""
    rng = np.random.default_rng((seed, _LABEL_STREAM))
    bureau = make_bureau_table(seed) if bureau is None else bureau
    table = features.join_bureau(make_applications(n, seed), bureau)
    table = features.add_ratios(table, TRAINING_NOW)
    col = {name: table[name].to_numpy() for name in table.column_names}
    # Fraud rings open fresh accounts, apply remotely, borrow a lot and shop around.
    fraud = rng.random(n) < _sigmoid(
        -6.3
        + 3.0 * (col["account_age_days"] < 180)
        + 1.5 * (col["channel"] == "broker")
        + 0.7 * (col["channel"] == "online")
        + 1.5 * (col["loan_to_income"] > 0.6)
        + 0.45 * col["inquiries_6m"]
    )
    # Fraudsters' stated incomes rarely survive verification.
    verified = rng.random(n) < np.where(fraud, 0.3, 0.88)
    default = rng.random(n) < _sigmoid(
        -2.6
        - 0.018 * (col["bureau_score"] - 690)
        + 0.45 * col["delinquencies_24m"]
        + 2.5 * (col["debt_to_income"] - 0.35)
        + 0.7 * (col["employment_years"] < 1)
        + 2.0 * fraud
        + 0.5 * ~verified
    )
    return table.append_column("income_verified", pa.array(verified)), fraud, default


def _refresh(seed: int, score: np.ndarray, delinquencies: np.ndarray) -> tuple[np.ndarray, ...]:
    """Shift ~30% of files: most drift a little, some drop sharply after new delinquencies."""
    rng = np.random.default_rng((seed, _BUREAU_STREAM, 2))
    changed = rng.random(score.size) < 0.3
    dropped = changed & (rng.random(score.size) < 0.4)
    shift = np.where(dropped, -rng.gamma(4.0, 20.0, score.size), rng.normal(5, 15, score.size))
    score = np.where(changed, np.clip(score + shift, 300, 850), score)
    return score, delinquencies + dropped * (1 + rng.poisson(0.8, score.size))


def _account_opened(rng: np.random.Generator, age: np.ndarray) -> pa.Array:
    # A minority are brand-new customers (where fraud concentrates); nobody banks before 18.
    new = rng.random(age.size) < 0.15
    tenure = np.where(new, rng.uniform(0, 365, age.size), 365 + rng.exponential(2_500, age.size))
    tenure = np.minimum(tenure, (age - 18) * 365.25)
    days = (ACCOUNTS_AS_OF - _EPOCH).days - tenure.astype(np.int32)
    return pa.array(days.astype(np.int32)).cast(pa.date32())


def _ids(pattern: str, numbers: np.ndarray) -> pa.Array:
    return pa.array(np.char.mod(pattern, numbers))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-x)))


def main(argv: list[str] | None = None) -> None:
    """``python -m pipelines.credit.generate N OUT.parquet [--seed S] [--start-id I]``:
    applications to put through the pipeline (e.g. a what-if with ``replay at --input``)."""
    import argparse

    import pyarrow.parquet as pq

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.credit.generate", description=main.__doc__
    )
    parser.add_argument("n", type=int, help="how many applications")
    parser.add_argument("out", help="Parquet file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-id", type=int, default=900_000, help="first APP-number")
    args = parser.parse_args(argv)
    pq.write_table(make_applications(args.n, args.seed, args.start_id), args.out)
    print(f"wrote {args.n} applications to {args.out}")


if __name__ == "__main__":
    main()
