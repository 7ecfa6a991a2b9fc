"""A module imported on first use: commands that never touch it never pay its import."""

from __future__ import annotations

import importlib
from typing import Any


class Lazy:
    """``queries = Lazy("replay.catalog.queries")``, then ``queries.find(...)`` imports it then."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)
