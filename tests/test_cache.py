"""The store's cache of loaded things: an LRU bounded in bytes, owned by one Store."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from conftest import rows

import replay
from replay.store.cache import Cache

AT = datetime(2026, 3, 14, tzinfo=UTC)


def test_the_least_recently_used_go_first_when_the_bytes_run_out() -> None:
    cache = Cache(budget=100)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # now the most recent
    cache.put("c", "C", 40)
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert cache.nbytes == 80


def test_many_small_things_are_evicted_for_one_big_one() -> None:
    cache = Cache(budget=100)
    for i in range(10):
        cache.put(i, i, 10)
    cache.put("big", "B", 95)
    assert len(cache) == 1 and "big" in cache and cache.nbytes == 95


def test_a_thing_bigger_than_the_budget_is_kept_alone_until_the_next() -> None:
    cache = Cache(budget=10)
    cache.put("small", "s", 5)
    assert cache.load("big", lambda: ("B", 11)) == "B"
    assert ("small" in cache, "big" in cache, cache.nbytes) == (False, True, 11)
    cache.put("next", "n", 5)
    assert ("big" in cache, "next" in cache, cache.nbytes) == (False, True, 5)


def test_a_lower_budget_drops_the_oldest_at_once() -> None:
    cache = Cache(budget=100)
    for key in "abc":
        cache.put(key, key, 30)
    cache.budget = 60
    assert ("a" in cache, "b" in cache, "c" in cache) == (False, True, True)


def test_a_thing_is_loaded_once_while_kept() -> None:
    cache, made = Cache(budget=100), Counter[str]()

    def make() -> tuple[str, int]:
        made["x"] += 1
        return "X", 5

    assert [cache.load("x", make) for _ in range(3)] == ["X"] * 3
    assert made["x"] == 1


def test_what_one_store_loaded_is_not_served_from_another(store, toy) -> None:
    run_id = replay.record(toy, rows(2), store=store, at=AT).run_id
    first = replay.Store.open(store.root)
    replay.replay(first, run_id)
    second = replay.Store.open(store.root)
    assert len(first.cache) > 0 and len(second.cache) == 0
    assert second.cache is not first.cache


def test_replaying_many_runs_of_one_version_reads_each_component_once(store, toy) -> None:
    ids = [replay.record(toy, rows(1, i), store=store, at=AT).run_id for i in range(6)]
    fresh = replay.Store.open(store.root)
    reads = Counter[str]()
    get = fresh.get_object

    def counted(digest: str) -> bytes:
        reads[digest] += 1
        return get(digest)

    fresh.get_object = counted  # type: ignore[method-assign]
    reports = list(replay.replay_many(fresh, ids))
    assert [r.verdict for r in reports] == ["exact"] * 6
    assert reads and max(reads.values()) == 1, reads.most_common(3)
