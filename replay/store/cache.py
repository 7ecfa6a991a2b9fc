"""What a store's readers loaded, kept for the next reader: an LRU bounded in bytes.

Replaying many runs of one pipeline version reads the same spec, code, params and data again
and again; objects never change once stored, so each is loaded once and kept here, keyed by
what it is and its digest. The bound is the bytes each thing was loaded from (a pickle's or
a table file's stored size: the best cheap estimate of what it holds in memory), and the
least recently used go first. Each ``Store`` owns one (``Store.cache``), so what one store
loaded is never served for another.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

# Enough for the code, specs and reference data of a few pipeline versions, small beside the
# models and tables a replay holds anyway; ``Store.cache.budget`` changes it.
DEFAULT_BUDGET = 512 << 20


class Cache:
    """Loaded values by key, each with its size in bytes; at most ``budget`` bytes kept, or
    the one value last put when it alone is larger (a replay holds it in memory anyway, and
    many runs over one big model or table then load it once, not once per run).

    Safe across threads; two threads asking for one missing key may both load it.
    """

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._budget = budget
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def budget(self) -> int:
        return self._budget

    @budget.setter
    def budget(self, value: int) -> None:
        with self._lock:
            self._budget = value
            self._trim()

    @property
    def nbytes(self) -> int:
        """The bytes kept now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return default
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            self._trim()

    def load(self, key: Hashable, make: Callable[[], tuple[T, int]]) -> T:
        """The value kept under ``key``, else ``make()``'s value (kept with its size)."""
        missing = object()
        found = self.get(key, missing)
        if found is not missing:
            return found  # type: ignore[no-any-return]
        value, size = make()
        self.put(key, value, size)
        return value

    def _trim(self) -> None:
        while self._bytes > self._budget and len(self._items) > 1:
            _, (_, size) = self._items.popitem(last=False)
            self._bytes -= size
