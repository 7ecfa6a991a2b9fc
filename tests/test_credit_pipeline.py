"""The credit-decision reference pipeline: generator, steps, and the DVC workspace."""

from __future__ import annotations

import hashlib
import pickle
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.credit import external, generate, workspace
from pipelines.credit import pipeline as credit

NOW = datetime(2025, 11, 26, 12, tzinfo=UTC)


class FakeCtx:
    """Stands in for the run context: a fixed clock and a tape that answers repeats."""

    def __init__(self, now: datetime = NOW) -> None:
        self._now = now
        self.tape: dict[str, Any] = {}
        self.calls = 0

    def now(self) -> datetime:
        return self._now

    def call(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls += 1
        if name not in self.tape:
            self.tape[name] = fn(*args)
        return self.tape[name]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return workspace.build_workspace(tmp_path_factory.mktemp("credit") / "ws")


def run_steps(root: Path, table: pa.Table, ctx: FakeCtx) -> pa.Table:
    bureau = pq.read_table(root / workspace.BUREAU)
    models = {
        name: pickle.loads((root / f"models/{name}.pkl").read_bytes()) for name in ("fraud", "pd")
    }
    out = credit.features(table, data={"bureau": bureau}, ctx=ctx)
    out = credit.pd_step(credit.fraud(out, models=models), models=models)
    return credit.decision(out, params=credit.DEFAULT_PARAMS)


def tiny_bureau() -> pa.Table:
    return pa.table(
        {
            "applicant_id": ["C-0000001"],
            "bureau_score": [720],
            "delinquencies_24m": [0],
            "open_trades": [5],
            "inquiries_6m": [1],
        }
    )


def tiny_applications() -> pa.Table:
    apps = generate.make_applications(2, seed=1)
    return apps.set_column(1, "applicant_id", pa.array(["C-0000001", "C-9999999"]))


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def test_applications_are_deterministic_by_seed() -> None:
    assert generate.make_applications(500, seed=3).equals(generate.make_applications(500, 3))
    assert not generate.make_applications(500, 3).equals(generate.make_applications(500, 4))


def test_application_ids_count_from_start_id() -> None:
    ids = generate.make_applications(3, seed=1, start_id=41)["application_id"].to_pylist()
    assert ids == ["APP-00000041", "APP-00000042", "APP-00000043"]


def test_bureau_is_deterministic_by_seed() -> None:
    assert generate.make_bureau_table(5).equals(generate.make_bureau_table(5))
    assert not generate.make_bureau_table(5).equals(generate.make_bureau_table(6))


def test_every_applicant_joins_the_bureau() -> None:
    applicants = set(generate.make_applications(2_000, seed=2)["applicant_id"].to_pylist())
    assert applicants <= set(generate.make_bureau_table(2)["applicant_id"].to_pylist())


def test_bureau_refresh_shifts_some_applicants() -> None:
    v1, v2 = generate.make_bureau_table(7), generate.make_bureau_table(7, version=2)
    assert v1["applicant_id"].equals(v2["applicant_id"])
    before, after = v1["bureau_score"].to_numpy(), v2["bureau_score"].to_numpy()
    assert 0.2 < np.mean(before != after) < 0.4
    assert np.sum(after < before - 50) > 100  # a real drop for some, not just jitter


def test_features_step_adds_bureau_ratios_and_verification() -> None:
    out = credit.features(tiny_applications(), data={"bureau": tiny_bureau()}, ctx=FakeCtx())
    expected = {
        "application_id",
        "bureau_score",
        "account_age_days",
        "debt_to_income",
        "loan_to_income",
        "income_verified",
    }
    assert expected <= set(out.column_names)
    assert out["application_id"].equals(tiny_applications()["application_id"])


def test_features_step_verifies_income_once_per_batch() -> None:
    ctx = FakeCtx()
    credit.features(
        generate.make_applications(50, seed=1),
        data={"bureau": generate.make_bureau_table(1)},
        ctx=ctx,
    )
    assert ctx.calls == 1


def test_unknown_applicant_gets_conservative_bureau_defaults() -> None:
    out = credit.features(tiny_applications(), data={"bureau": tiny_bureau()}, ctx=FakeCtx())
    assert out["bureau_score"].to_pylist() == [720, 560]
    assert out["delinquencies_24m"].to_pylist() == [0, 1]


def test_account_age_follows_the_logical_clock() -> None:
    def age_at(now: datetime) -> int:
        out = credit.features(tiny_applications(), data={"bureau": tiny_bureau()}, ctx=FakeCtx(now))
        return int(out["account_age_days"][0].as_py())

    later, earlier = datetime(2026, 1, 11, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    assert age_at(later) - age_at(earlier) == 10


def test_income_verification_changes_with_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"C-{i:07d}" for i in range(200)]
    monkeypatch.setattr(external.time, "time", lambda: 20_000 * 86_400.0)
    first = external.verify_income(ids)
    monkeypatch.setattr(external.time, "time", lambda: 20_009 * 86_400.0)
    assert external.verify_income(ids) != first


def test_decisions_carry_reasons_exactly_when_adverse() -> None:
    rng = np.random.default_rng(0)
    n = 2_000
    table = pa.table(
        {
            "application_id": [f"APP-{i:08d}" for i in range(n)],
            "fraud_score": rng.beta(0.5, 4, n),
            "pd": rng.beta(1, 6, n),
            "debt_to_income": rng.uniform(0, 0.7, n),
            "delinquencies_24m": rng.poisson(0.3, n),
            "account_age_days": rng.integers(0, 3_000, n),
            "income_verified": rng.random(n) < 0.85,
        }
    )
    out = credit.decision(table, params=credit.DEFAULT_PARAMS)
    decisions, reasons = out["decision"].to_pylist(), out["reason_codes"].to_pylist()
    assert set(decisions) == {"approve", "refer", "decline"}
    assert all((len(r) == 0) == (d == "approve") for d, r in zip(decisions, reasons, strict=True))


def test_steps_produce_the_decision_columns(built: Path) -> None:
    out = run_steps(built, generate.make_applications(300, seed=9), FakeCtx())
    assert out.column_names == ["application_id", "fraud_score", "pd", "decision", "reason_codes"]
    assert out.schema.field("reason_codes").type == pa.list_(pa.string())
    assert 0 <= pc.min(out["pd"]).as_py() <= pc.max(out["pd"]).as_py() <= 1


def test_steps_accept_an_empty_batch(built: Path) -> None:
    assert run_steps(built, generate.make_applications(0, seed=9), FakeCtx()).num_rows == 0


def test_workspace_commits_a_dvc_pointer_matching_the_bytes(built: Path) -> None:
    pointer = git(built, "show", "HEAD:data/bureau.parquet.dvc")
    md5 = re.search(r"md5: ([0-9a-f]{32})", pointer)
    assert md5 is not None
    assert md5.group(1) == hashlib.md5((built / workspace.BUREAU).read_bytes()).hexdigest()


def test_workspace_pushes_outputs_to_the_local_remote(built: Path) -> None:
    md5 = hashlib.md5((built / workspace.BUREAU).read_bytes()).hexdigest()
    remote = built.parent / f"{built.name}-remote"
    assert (remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()


def test_build_workspace_leaves_a_built_workspace_unchanged(built: Path) -> None:
    head = git(built, "rev-parse", "HEAD")
    assert workspace.build_workspace(built) == built
    assert git(built, "rev-parse", "HEAD") == head


def test_refresh_retrains_pd_and_flips_decisions(tmp_path: Path) -> None:
    root = workspace.build_workspace(tmp_path / "ws")
    apps, ctx = generate.make_applications(3_000, seed=11), FakeCtx()
    model_before = (root / workspace.PD_MODEL).read_bytes()
    before = run_steps(root, apps, ctx)["decision"]
    workspace.refresh_workspace(root)
    assert (root / workspace.PD_MODEL).read_bytes() != model_before
    assert not run_steps(root, apps, ctx)["decision"].equals(before)


def test_pipeline_binds_the_workspace_files() -> None:
    pipe = credit.make_pipeline(Path("/ws"))
    assert [step.name for step in pipe.steps] == ["features", "fraud", "pd", "decision"]
    assert pipe.steps[0].data == {"bureau": Path("/ws/data/bureau.parquet")}
    assert pipe.steps[2].models["pd"].path == Path("/ws/models/pd.pkl")
