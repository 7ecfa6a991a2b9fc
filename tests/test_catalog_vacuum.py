"""A small ingest's checkpoint does not merge row groups (issue 16): closing the catalog after
10,000 new runs no longer rewrites what earlier small ingests left, while every few
checkpoints still merge it, and a process killed around an ingest leaves a catalog that
answers as a rebuilt one."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from conftest import rows
from test_catalog_ingest import content

import replay
from replay.catalog import index, queries
from replay.catalog.index import Catalog

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _record_runs(store: replay.Store, toy: replay.Pipeline, start: int, n: int = 3) -> None:
    for i in range(start, start + n):
        at = T0 + timedelta(seconds=i)
        replay.record(toy, rows(1, i), store=store, record_key="id", at=at, durable=False)
    store.flush()


def _ingest_runs(store: replay.Store, toy: replay.Pipeline, start: int) -> None:
    """Record three runs, then a query ingests them."""
    _record_runs(store, toy, start)
    queries.runs(store)


def _row_groups(store: replay.Store) -> int:
    """Row groups of the runs table, as its checkpoints left them."""
    with duckdb.connect(str(Catalog(store).path), read_only=True) as con:
        query = "select count(distinct row_group_id) from pragma_storage_info('runs')"
        return int(con.execute(query).fetchall()[0][0])


def _text_compressions(store: replay.Store) -> list[set[str]]:
    """How each row group of the runs table holds its text columns."""
    with duckdb.connect(str(Catalog(store).path), read_only=True) as con:
        query = (
            "select list(distinct compression) from pragma_storage_info('runs') "
            "where segment_type = 'VARCHAR' group by row_group_id order by row_group_id"
        )
        return [set(c) for (c,) in con.execute(query).fetchall()]


def _answers_as_rebuilt(store: replay.Store, runs: int) -> None:
    """The catalog lists ``runs`` runs and holds the rows a rebuild gives."""
    indexed = content(store)
    assert len(indexed["runs"]) == runs
    queries.reindex(store)
    assert content(store) == indexed


def _killed(store: replay.Store, code: str) -> None:
    """Run ``code`` in a process that SIGKILLs itself where ``die()`` is called."""
    prelude = (
        "import os, signal, sys, replay\n"
        "from replay.catalog import ingest\n"
        "from replay.catalog.index import Catalog\n"
        "store = replay.Store.open(sys.argv[1])\n"
        "def die(): os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", prelude + code, str(store.root)])
    assert done.returncode == -signal.SIGKILL, "the child was meant to die mid-ingest"


def test_each_small_ingest_adds_row_groups_without_merging_the_earlier_ones(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    for start in (0, 10, 20):
        _ingest_runs(store, toy, start)
    assert _row_groups(store) == 3


def _three_of_three_between_merges(
    store: replay.Store, toy: replay.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three small ingests, when one checkpoint in three merges: the next one merges."""
    monkeypatch.setattr(index, "VACUUM_EVERY", 3)
    for start in (0, 10, 20):
        _ingest_runs(store, toy, start)


def test_every_few_checkpoints_one_merges_what_small_ingests_left(
    store: replay.Store, toy: replay.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    _three_of_three_between_merges(store, toy, monkeypatch)
    assert _row_groups(store) == 3
    _ingest_runs(store, toy, 30)
    assert _row_groups(store) == 1


def test_a_row_groups_worth_of_new_runs_merges(
    store: replay.Store, toy: replay.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index, "ROW_GROUP", 5)
    _ingest_runs(store, toy, 0)
    _ingest_runs(store, toy, 10)
    assert _row_groups(store) == 2
    _ingest_runs(store, toy, 20)
    assert _row_groups(store) == 1


def test_a_small_ingest_leaves_its_text_uncompressed_until_a_merge_compresses_it(
    store: replay.Store, toy: replay.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    _three_of_three_between_merges(store, toy, monkeypatch)
    first, *later = _text_compressions(store)
    assert "DICT_FSST" in first  # a new catalog's first checkpoint merges
    assert later == [{"Uncompressed"}, {"Uncompressed"}]
    _ingest_runs(store, toy, 30)
    assert _text_compressions(store) == [{"DICT_FSST"}]


def test_a_reindex_after_small_ingests_merges_and_keeps_every_row(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    for start in (0, 10, 20):
        _ingest_runs(store, toy, start)
    _answers_as_rebuilt(store, 9)
    assert _row_groups(store) == 1


# Where the ingesting process dies: with its connection open after the ingest committed (no
# checkpoint ran), or after inserting the new runs' rows, before their transaction commits.
KILLS = {
    "after-commit": "with Catalog(store).connect():\n    die()\n",
    "before-commit": (
        "bulk = ingest._bulk\n"
        "def dying(*args):\n    bulk(*args)\n    die()\n"
        "ingest._bulk = dying\n"
        "with Catalog(store).connect():\n    pass\n"
    ),
}


@pytest.mark.parametrize("code", KILLS.values(), ids=KILLS.keys())
def test_a_process_killed_around_a_small_ingest_leaves_a_catalog_equal_to_a_rebuilt_one(
    store: replay.Store, toy: replay.Pipeline, code: str
) -> None:
    _ingest_runs(store, toy, 0)
    _ingest_runs(store, toy, 10)
    _record_runs(store, toy, 20)
    _killed(store, code)
    _answers_as_rebuilt(store, 9)
