"""Pure feature code shared by model training and the pipeline steps.

Training and inference both go through `build_feature_matrix`, so a model can never be fed
columns in a different order (or a different set) than it was fitted on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

Model = Literal["fraud", "pd"]

BUREAU_COLUMNS = ("bureau_score", "delinquencies_24m", "open_trades", "inquiries_6m")
# An applicant the bureau does not know is scored like a subprime borrower with a recent
# delinquency: the bank must not lend more freely to someone it knows nothing about.
BUREAU_DEFAULTS = {"bureau_score": 560, "delinquencies_24m": 1, "open_trades": 0, "inquiries_6m": 3}
_APR = 0.09  # nominal rate that turns the requested loan into a monthly instalment
_REVOLVING_SHARE = 0.03  # share of existing debt serviced each month (typical minimum payment)

_BASE_COLUMNS = (
    "age",
    "annual_income",
    "loan_amount",
    "term_months",
    "employment_years",
    "existing_debt",
    "channel_online",
    "channel_broker",
    *BUREAU_COLUMNS,
    "account_age_days",
    "debt_to_income",
    "loan_to_income",
    "income_verified",
)
_COLUMNS: dict[str, tuple[str, ...]] = {
    "fraud": _BASE_COLUMNS,
    "pd": (*_BASE_COLUMNS, "fraud_score"),  # the PD model conditions on the fraud screen
}


def feature_columns(model: Model) -> list[str]:
    """Model input columns, in the order the model was trained on."""
    return list(_COLUMNS[model])


def join_bureau(table: pa.Table, bureau: pa.Table) -> pa.Table:
    """Left-join bureau attributes on applicant_id, keeping row order; unknowns get defaults."""
    # index_in + take is an order-preserving left join; Table.join does not keep row order.
    rows = pc.index_in(table["applicant_id"], value_set=bureau["applicant_id"].combine_chunks())
    for name in BUREAU_COLUMNS:
        column = pc.fill_null(bureau[name].take(rows), BUREAU_DEFAULTS[name])
        table = table.append_column(name, column)
    return table


def add_ratios(table: pa.Table, now: datetime) -> pa.Table:
    """Add account age as of `now` (the run's logical clock), debt-to-income, loan-to-income."""
    as_of = pa.scalar(now.astimezone(UTC).date(), pa.date32())
    # Replays at a logical time before the account existed see age 0, not a negative age.
    age_days = pc.max_element_wise(pc.days_between(table["account_opened"], as_of), 0)
    income = np.maximum(_numpy(table, "annual_income"), 1.0)  # no division by zero
    loan = _numpy(table, "loan_amount")
    monthly = _instalment(loan, _numpy(table, "term_months")) + _REVOLVING_SHARE * _numpy(
        table, "existing_debt"
    )
    return (
        table.append_column("account_age_days", age_days)
        .append_column("debt_to_income", pa.array(monthly / (income / 12)))
        .append_column("loan_to_income", pa.array(loan / income))
    )


def build_feature_matrix(table: pa.Table, model: Model = "fraud") -> np.ndarray:
    """The float64 matrix `model` takes: one row per table row, `feature_columns(model)`."""
    columns = [_feature(table, name) for name in feature_columns(model)]
    return np.column_stack(columns).astype(np.float64)


def predict_score(estimator: Any, table: pa.Table, model: Model) -> pa.Array:
    """Positive-class probability per row; an empty batch scores to an empty column."""
    features = build_feature_matrix(table, model)
    if features.shape[0] == 0:  # scikit-learn rejects zero-row inputs
        return pa.array([], pa.float64())
    # One OpenMP thread: a batch is a few rows, and waking a thread pool per tree made
    # scoring 5-50x slower on a busy machine (same scores: each row is scored on its own).
    with threadpool_limits(limits=1, user_api="openmp"):
        return pa.array(estimator.predict_proba(features)[:, 1], pa.float64())


def _feature(table: pa.Table, name: str) -> np.ndarray:
    if name.startswith("channel_"):  # one-hot of the application channel
        return np.asarray(pc.equal(table["channel"], name.removeprefix("channel_")).to_numpy())
    return _numpy(table, name)


def _instalment(principal: np.ndarray, months: np.ndarray) -> np.ndarray:
    rate = _APR / 12
    return principal * rate / (1 - (1 + rate) ** -months)


def _numpy(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table[name].to_numpy())
