"""The README's SQL investigations run as printed, against a store of the credit chain."""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import replay
from replay.cli.app import app

README = Path(__file__).parents[1] / "README.md"


def readme_sql() -> list[str]:
    """Every `replay sql "…"` example, joined across its indented continuation lines."""
    text = README.read_text()
    found = re.findall(r'^    (replay sql "[^"]*")$', text, flags=re.M | re.S)
    return [" ".join(shlex.split(f)[2:]) for f in found]


@pytest.fixture(scope="module")
def store(credit_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.credit.generate import make_applications
    from pipelines.credit.pipeline import make_pipeline

    store = replay.Store.open(tmp_path_factory.mktemp("sql") / "store")
    pipe = make_pipeline(credit_workspace)
    t0 = datetime(2026, 3, 14, 8, tzinfo=UTC)
    for i in range(3):
        replay.record(
            pipe,
            make_applications(20, seed=i, start_id=100 * i),
            store=store,
            record_key="application_id",
            at=t0 + timedelta(minutes=40 * i),
        )
    return store.root


def test_the_readme_has_its_investigations() -> None:
    assert len(readme_sql()) >= 2


@pytest.mark.parametrize("query", readme_sql())
def test_each_readme_query_answers(store: Path, query: str) -> None:
    result = CliRunner().invoke(app, ["--store", str(store), "sql", query, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)  # rows, not an empty answer
