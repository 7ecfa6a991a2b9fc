"""Retail-loan onboarding: embed -> asof -> gbm -> pd -> decision.

A new application (customer, free-text purpose, income, amount) is scored in five steps:

    embed     the purpose text as a unit vector (purpose encoder, models/encoder/)
    asof      the customer's balance snapshot as of the decision time, and a bureau report
    gbm       a risk score from income, amount, balances and bureau (XGBoost, models/risk.ubj)
    pd        probability of default from purpose, risk score and history (ONNX, models/pd.onnx)
    decision  approve / refer / decline by policy bands, with the reason for an adverse one

Steps see time only as `now` (the run's logical time) and the bureau only through `call`, so
a run can be recorded and replayed exactly as it was decided.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xgboost

import replay

# isort: split
# Helper modules beside this file, by plain name: the folder is not a package.
import bureau
import riskfeat
from asof import latest_as_of
from textfeat import encode, load_encoder

HERE = Path(__file__).resolve().parent  # models and data are beside this file, whatever the cwd
PURPOSE_DIM = 32
# Policy, reviewed by credit risk: the PD bands (approve below the first, decline from the
# second), the missed payments at which the bank declines whatever the PD, and the
# amount-to-income ratio above which an underwriter must look first.
POLICY: dict[str, Any] = {"bands": (0.1, 0.3), "max_missed": 3, "max_loan_to_income": 0.8}
# How far a replay on another CPU kernel may move the float32 outputs: the purpose vector's
# matrix product follows the BLAS kernel, and the PD inherits that (measured between
# OpenBLAS's Haswell and Prescott kernels: at most 1.2e-7, two float32 steps, in both);
# decisions must never move.
KERNEL_TOLERANCES = {"purpose_vec": 1e-5, "pd": 1e-6}
REASONS = {
    "missed": "D01 missed payments on existing accounts",
    "pd_high": "D02 probability of default above the decline band",
    "pd_mid": "R01 probability of default in the referral band",
    "amount": "R02 amount high relative to income",
    "no_history": "R03 no account history with the bank",
}


def embed(table: pa.Table, encoder: Any) -> pa.Table:
    """The applicant's stated purpose as `purpose_vec`, fixed_size_list<float32>[32]."""
    texts = [text or "" for text in table["purpose"].to_pylist()]
    vectors = encode(encoder, texts)
    values = pa.array(vectors.ravel(), pa.float32())
    return table.append_column(
        "purpose_vec", pa.FixedSizeListArray.from_arrays(values, PURPOSE_DIM)
    )


def asof_features(
    table: pa.Table, balances: pa.Table, now: datetime, call: Callable[..., Any]
) -> pa.Table:
    """The customer's latest balance snapshot at or before `now` (null: not a customer yet)
    and the bureau's score and recent inquiries."""
    latest = latest_as_of(
        table,
        balances,
        now,
        key="customer_id",
        time="as_of",
        columns=("as_of", "balance", "missed_payments"),
    )
    # One batched bureau call per run: one tape entry, however many applications.
    answers = call("bureau.reports", bureau.reports, table["customer_id"].to_pylist())
    return (
        table.append_column("balance_as_of", latest["as_of"])
        .append_column("balance", latest["balance"])
        .append_column("missed_payments", latest["missed_payments"])
        .append_column("bureau_score", pa.array([a["score"] for a in answers], pa.int64()))
        .append_column(
            "bureau_inquiries", pa.array([a["inquiries_6m"] for a in answers], pa.int64())
        )
    )


def gbm(table: pa.Table, risk: xgboost.Booster) -> pa.Table:
    """`risk_score` (float32, 0-1): the booster's risk from income, amount, balances, bureau."""
    features = xgboost.DMatrix(
        riskfeat.risk_matrix(table), feature_names=list(riskfeat.RISK_FEATURES)
    )
    return table.append_column("risk_score", pa.array(risk.predict(features), pa.float32()))


def pd_step(table: pa.Table, pd: Any) -> pa.Table:
    """`pd` (float32): probability of default from the purpose vector, risk score, history."""
    (scores,) = pd.run(["pd"], {"features": riskfeat.pd_matrix(table)})
    return table.append_column("pd", pa.array(scores.reshape(-1), pa.float32()))


def decide(
    table: pa.Table, bands: Sequence[float], max_missed: int, max_loan_to_income: float
) -> pa.Table:
    """approve / refer / decline with the main reason for a refer or decline (null for an
    approval): declines first, then referrals, each in REASONS order."""
    refer_from, decline_from = bands
    pd = np.asarray(table["pd"].to_numpy(), np.float64)
    missed = np.nan_to_num(_numbers(table, "missed_payments"), nan=0.0)
    ratio = _numbers(table, "amount") / np.maximum(_numbers(table, "income"), 1.0)
    checks = [  # (applies, decision, reason), most severe first
        (missed >= max_missed, "decline", REASONS["missed"]),
        (pd >= decline_from, "decline", REASONS["pd_high"]),
        (pd >= refer_from, "refer", REASONS["pd_mid"]),
        (ratio > max_loan_to_income, "refer", REASONS["amount"]),
        (
            pc.is_null(table["balance_as_of"]).to_numpy(zero_copy_only=False),
            "refer",
            REASONS["no_history"],
        ),
    ]
    decision = np.select([c[0] for c in checks], [c[1] for c in checks], "approve")
    reason = np.select([c[0] for c in checks], [c[2] for c in checks], "")
    return pa.table(
        {
            "application_id": table["application_id"],
            "customer_id": table["customer_id"],
            "risk_score": table["risk_score"],
            "pd": table["pd"],
            "decision": pa.array(decision.tolist(), pa.string()),
            "reason": pa.array([r or None for r in reason.tolist()], pa.string()),
        }
    )


def _numbers(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64, null as NaN."""
    return np.asarray(table[name].cast(pa.float64()).to_numpy(zero_copy_only=False))


def make_pipeline(tolerances: Mapping[str, float] | None = None) -> replay.Pipeline:
    """The pipeline bound to the models and data beside this file. `tolerances` (column ->
    largest absolute difference a replay may show) go to the step that makes the column;
    steps that pass it on unchanged keep it."""

    def within(column: str) -> dict[str, float]:
        return {column: tolerances[column]} if tolerances and column in tolerances else {}

    return replay.Pipeline(
        "loan-onboarding",
        [
            replay.Step(
                "embed",
                embed,
                models={"encoder": replay.Model(HERE / "models/encoder", loader=load_encoder)},
                tolerances=within("purpose_vec"),
            ),
            replay.Step("asof", asof_features, data={"balances": HERE / "data/balances.parquet"}),
            replay.Step("gbm", gbm, models={"risk": HERE / "models/risk.ubj"}),
            replay.Step(
                "pd", pd_step, models={"pd": HERE / "models/pd.onnx"}, tolerances=within("pd")
            ),
            replay.Step("decision", decide, params=POLICY),
            # Personal data, redactable on export: the customer, and the purpose, which applicants
            # write freely (names, illnesses), with the vector derived from it.
        ],
        personal=["customer_id", "purpose", "purpose_vec"],
        decisions=["decision", "reason"],
    )


pipeline = make_pipeline()  # as first deployed: any replayed bit that moves is a divergence
tolerant = make_pipeline(KERNEL_TOLERANCES)  # replays on another CPU kernel as equivalent
