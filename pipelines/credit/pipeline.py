"""The credit-decision reference pipeline: features -> fraud -> pd -> decision.

Steps read time only through `ctx.now()` and the outside world only through `ctx.call`,
so the framework can record both and replay a run exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

import replay
from pipelines.credit import external
from pipelines.credit import features as feature_code

DEFAULT_PARAMS: dict[str, float] = {
    "pd_decline": 0.25,  # probability of default at which credit is declined
    "pd_refer": 0.12,  # ...and at which an underwriter must look first
    "fraud_refer": 0.6,  # fraud score sent to the fraud team
    "dti_max": 0.45,  # policy ceiling on monthly debt service / monthly income
    "min_account_days": 365,  # shorter relationships are cited as thin history
}
# Regulation B adverse-action reasons, in the order they are reported.
REASONS: dict[str, str] = {
    "R01": "R01 high probability of default",
    "R02": "R02 delinquency history",
    "R03": "R03 high debt-to-income",
    "R04": "R04 insufficient account history",
    "R05": "R05 income not verified",
    "F01": "F01 fraud screening referral",
}
DECISIONS = ("approve", "refer", "decline")  # indexed by outcome code 0, 1, 2


class Context(Protocol):
    """The part of the framework's run context these steps use."""

    def now(self) -> datetime: ...

    def call(self, name: str, fn: Callable[..., Any], *args: Any) -> Any: ...


def features(table: pa.Table, *, data: Mapping[str, pa.Table], ctx: Context) -> pa.Table:
    """Bureau attributes, account age at the run's logical time, ratios, income check."""
    enriched = feature_code.add_ratios(feature_code.join_bureau(table, data["bureau"]), ctx.now())
    # One batched call per run: one tape entry, however many applications.
    answers = ctx.call("income.verify", external.verify_income, table["applicant_id"].to_pylist())
    verified = pa.array([answer["verified"] for answer in answers], pa.bool_())
    return enriched.append_column("income_verified", verified)


def fraud(table: pa.Table, *, models: Mapping[str, Any]) -> pa.Table:
    """Fraud score: probability the application is fraudulent."""
    return table.append_column(
        "fraud_score", feature_code.predict_score(models["fraud"], table, "fraud")
    )


def pd_step(table: pa.Table, *, models: Mapping[str, Any]) -> pa.Table:
    """Probability of default, conditioned on the fraud score."""
    return table.append_column("pd", feature_code.predict_score(models["pd"], table, "pd"))


def decision(table: pa.Table, *, params: Mapping[str, float]) -> pa.Table:
    """approve / refer / decline with adverse-action reasons (none for approvals)."""
    flags = _reason_flags(table, params)
    pd = table["pd"].to_numpy()
    declined = (pd >= params["pd_decline"]) | flags["R03"]
    referred = flags["R01"] | flags["R05"] | flags["F01"]
    outcome = np.where(declined, 2, np.where(referred, 1, 0))
    # Reasons are only given for adverse actions; an approval carries none.
    reasons = np.column_stack(list(flags.values())) & (outcome > 0)[:, None]
    return pa.table(
        {
            "application_id": table["application_id"],
            "fraud_score": table["fraud_score"],
            "pd": table["pd"],
            "decision": pa.array(DECISIONS).take(outcome),
            "reason_codes": _reason_lists(reasons),
        }
    )


def make_pipeline(workspace: Path) -> replay.Pipeline:
    """The pipeline bound to the bureau table and models of a DVC workspace."""
    workspace = Path(workspace)
    return replay.Pipeline(
        "credit-decision",
        [
            replay.Step("features", features, data={"bureau": workspace / "data/bureau.parquet"}),
            replay.Step("fraud", fraud, models={"fraud": workspace / "models/fraud.pkl"}),
            replay.Step(
                "pd", pd_step, models={"pd": workspace / "models/pd.pkl"}, tolerances={"pd": 1e-9}
            ),
            replay.Step("decision", decision, params=DEFAULT_PARAMS),
        ],
        personal=["applicant_id"],
    )  # links a row to a natural person: redactable on export


def _reason_flags(table: pa.Table, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Per-row truth of every reason, keyed like REASONS (same order)."""

    def column(name: str) -> np.ndarray:
        return np.asarray(table[name].to_numpy())

    # Any PD that leads to a refer or a decline is reported as R01, whichever is lower.
    pd_floor = min(params["pd_refer"], params["pd_decline"])
    return {
        "R01": column("pd") >= pd_floor,
        "R02": column("delinquencies_24m") > 0,
        "R03": column("debt_to_income") > params["dti_max"],
        "R04": column("account_age_days") < params["min_account_days"],
        "R05": ~column("income_verified"),
        "F01": column("fraud_score") >= params["fraud_refer"],
    }


def _reason_lists(reasons: np.ndarray) -> pa.ListArray:
    """A list<string> column from a rows x REASONS boolean matrix, without a row loop."""
    counts = reasons.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    texts = pa.array(list(REASONS.values())).take(np.nonzero(reasons)[1])
    return pa.ListArray.from_arrays(pa.array(offsets), texts)


WORKSPACE = Path(os.environ.get("CREDIT_WORKSPACE", Path(__file__).parent / "workspace"))
pipeline = make_pipeline(WORKSPACE)
