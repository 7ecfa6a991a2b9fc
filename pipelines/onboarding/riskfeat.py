"""Model input matrices, shared by training (the builder) and the pipeline steps.

Both go through these functions, so a model is never fed columns in another order, set or
type than it was fitted on.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# The risk booster's inputs, by name: XGBoost checks the names against the saved model.
RISK_FEATURES = (
    "income",
    "amount",
    "loan_to_income",
    "balance",
    "missed_payments",
    "bureau_score",
    "bureau_inquiries",
)
# The PD model's inputs after the purpose vector's components, in order.
PD_FEATURES = ("risk_score", "loan_to_income", "missed_payments")


def risk_matrix(table: pa.Table) -> np.ndarray:
    """float32 (rows x RISK_FEATURES); NaN where the bank has no balance history, which
    XGBoost routes down each split's learned default branch."""
    return np.column_stack([_column(table, name) for name in RISK_FEATURES]).astype(np.float32)


def pd_matrix(table: pa.Table) -> np.ndarray:
    """float32 (rows x (purpose dims + PD_FEATURES)); no balance history counts as no missed
    payments, since a logistic model cannot take a missing value."""
    vectors = _vectors(table["purpose_vec"])
    rest = [np.nan_to_num(_column(table, name), nan=0.0) for name in PD_FEATURES]
    return np.column_stack([vectors, *rest]).astype(np.float32)


def _column(table: pa.Table, name: str) -> np.ndarray:
    if name == "loan_to_income":
        # The amount over a year's income; an income of 0 counts as 1 (no division by 0).
        return _column(table, "amount") / np.maximum(_column(table, "income"), 1.0)
    column = table[name].cast(pa.float64())  # nulls become NaN below, in any numeric type
    return np.asarray(column.to_numpy(zero_copy_only=False), np.float64)


def _vectors(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    size = array.type.list_size
    return np.asarray(array.flatten().to_numpy(), np.float32).reshape(-1, size)
