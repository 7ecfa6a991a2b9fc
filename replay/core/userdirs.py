"""The user's own folders (XDG): settings and caches live here, never inside a store."""

from __future__ import annotations

import os
from pathlib import Path

APP = "pipeline-replay"


def config_folder() -> Path:
    """Signing key, trusted signers, safe stores, witness state."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / APP


def cache_folder() -> Path:
    """What a process may forget and rebuild: the history this user has verified."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / APP
