"""Replay finds a run in the ledger, not the catalog (issue 15 item 5): by its full id, by a
unique prefix, many at once in one pass, or in one seek where an index says the line ends."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from conftest import rows

import replay
from replay.errors import NotFoundError, UsageError
from replay.store import lookup

AT = datetime(2026, 3, 14, tzinfo=UTC)


@pytest.fixture
def recorded(store, toy) -> list[str]:
    return [replay.record(toy, rows(1, i), store=store, at=AT).run_id for i in range(6)]


def test_a_run_replays_by_its_full_id_with_the_catalog_unreadable(store, recorded) -> None:
    (store.root / "catalog.duckdb").mkdir()  # whatever opened it would fail
    report = replay.replay(replay.Store.open(store.root), recorded[2])
    assert report.verdict == "exact" and report.run_id == recorded[2]


def test_many_runs_replay_in_a_process_that_cannot_import_duckdb(store, recorded) -> None:
    probe = (
        "import sys; sys.modules['duckdb'] = None\n"  # any `import duckdb` raises ImportError
        "import replay\n"
        f"store = replay.Store.open({str(store.root)!r})\n"
        f"for r in replay.replay_many(store, {recorded[::-1]!r}): print(r.run_id, r.verdict)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == [w for r in recorded[::-1] for w in (r, "exact")]


def test_the_engine_imports_neither_the_catalog_nor_duckdb() -> None:
    engine = [
        "replay.engine.replay",
        "replay.engine.diff",
        "replay.engine.lineage",
        "replay.engine.recorded",
        "replay.docker.sandbox",
    ]
    probe = (
        f"import sys; import {', '.join(engine)}; "
        "print(sorted(m for m in sys.modules if m == 'duckdb' or m.startswith('replay.catalog')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("count", [2, 6], ids=["a few: one search each", "many: one match each"])
def test_many_runs_are_found_in_order_in_one_pass(store, recorded, count) -> None:
    wanted = recorded[:count][::-1]
    found = replay.Store.open(store.root).find_entries(wanted)
    assert [e["run_id"] for e in found] == wanted
    assert [e["manifest"]["run_id"] for e in found] == wanted


def test_a_unique_prefix_names_its_run(store, recorded) -> None:
    assert replay.Store.open(store.root).entry(recorded[3][:30].upper())["run_id"] == recorded[3]


def test_a_prefix_several_runs_share_is_refused_naming_them(store, recorded) -> None:
    with pytest.raises(NotFoundError, match="ambiguous") as caught:
        replay.Store.open(store.root).entry(recorded[0][:8])
    assert recorded[0] in caught.value.message


def test_a_run_the_ledger_does_not_hold_is_not_found(store, recorded) -> None:
    missing = "00000000-0000-7000-8000-000000000000"
    with pytest.raises(NotFoundError, match=f"no run {missing}"):
        replay.Store.open(store.root).entry(missing)


def test_what_cannot_be_a_run_id_is_a_usage_error(store, recorded) -> None:
    with pytest.raises(UsageError, match="is not a run id"):
        replay.Store.open(store.root).entry("0199")


def test_a_torn_last_line_is_never_found(store, recorded) -> None:
    torn = '{"block":{},"run_id":"01a00000-0000-7000-8000-000000000000","seq":7'
    with open(store.ledger.path, "ab") as f:
        f.write(torn.encode())
    with pytest.raises(NotFoundError):
        replay.Store.open(store.root).entry("01a00000-0000-7000-8000-000000000000")


def test_where_an_index_says_a_line_ends_it_is_read_in_one_seek(store, recorded) -> None:
    ends = {e["run_id"]: pos for pos, e in store.entries()}
    fresh = replay.Store.open(store.root)
    assert lookup.start_of(fresh.fs, ends[recorded[4]]) == ends[recorded[3]]
    found = fresh.find_entries([recorded[4]], {recorded[4]: ends[recorded[4]]})
    assert found[0]["run_id"] == recorded[4]


def test_a_stale_hint_falls_back_to_the_ledger(store, recorded) -> None:
    ends = {e["run_id"]: pos for pos, e in store.entries()}
    fresh = replay.Store.open(store.root)
    found = fresh.find_entries([recorded[1]], {recorded[1]: ends[recorded[5]]})
    assert found[0]["run_id"] == recorded[1]


def test_a_run_found_twice_is_one_object(store, recorded) -> None:
    # history.check_entry hashes each entry object once: the store keeps one per run.
    fresh = replay.Store.open(store.root)
    assert fresh.entry(recorded[0]) is fresh.find_entries([recorded[0]])[0]


def test_an_empty_ledger_holds_no_run(tmp_path) -> None:
    store = replay.Store.open(tmp_path / "empty")
    store.ledger.path.parent.mkdir(parents=True, exist_ok=True)
    store.ledger.path.write_bytes(b"")
    with pytest.raises(NotFoundError):
        store.entry("0123456789abcdef")


@pytest.fixture
def many(store, toy, monkeypatch) -> list[str]:
    """40 runs, and a window of a few lines either side of where a run's time falls."""
    monkeypatch.setattr(lookup, "NEAR", 1000)
    return [replay.record(toy, rows(1, i), store=store, at=AT).run_id for i in range(40)]


def _searched(monkeypatch) -> list[tuple[int, int]]:
    """The (start, end) of every stretch of the ledger searched from now on."""
    spans: list[tuple[int, int]] = []
    matches = lookup._matches

    def spy(data, start, end, wanted):
        spans.append((start, end))
        return matches(data, start, end, wanted)

    monkeypatch.setattr(lookup, "_matches", spy)
    return spans


def test_a_full_id_is_sought_near_where_its_time_falls(store, many, monkeypatch) -> None:
    spans = _searched(monkeypatch)
    assert replay.Store.open(store.root).entry(many[17])["run_id"] == many[17]
    assert sum(stop - start for start, stop in spans) < store.ledger.size() / 4


def test_a_run_whose_id_is_older_than_its_place_is_found_in_the_whole_ledger(
    store, toy, many, monkeypatch
) -> None:
    # Made long before it committed (or by a clock that was behind): its time says "early".
    early = "00000000-0001-7000-8000-" + many[0][-12:]
    monkeypatch.setattr("replay.capture.record.new_run_id", lambda: early)
    replay.record(toy, rows(1, 99), store=store, at=AT)
    spans = _searched(monkeypatch)
    assert replay.Store.open(store.root).entry(early)["run_id"] == early
    assert (0, store.ledger.size()) in spans


def test_a_prefix_is_sought_in_the_whole_ledger(store, many, monkeypatch) -> None:
    spans = _searched(monkeypatch)
    assert replay.Store.open(store.root).entry(many[17][:30])["run_id"] == many[17]
    assert spans == [(0, store.ledger.size())]
