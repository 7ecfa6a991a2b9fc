"""Whose store this is: a store folder another user owns opens only when allowed.

A store's files decide what a replay unpickles, so reading one trusts whoever can write it;
and root repairing a store must not act on what another user placed in it. As git's
``safe.directory``: a store owned by another user is refused unless its path is listed in
``$XDG_CONFIG_HOME/pipeline-replay/safe-stores`` (one path per line; ``replay trust
allow-store PATH`` adds one) or in ``REPLAY_SAFE_STORES`` (``:``-separated; ``*`` allows all).
"""

from __future__ import annotations

import os
import pwd
import shlex
from pathlib import Path

from replay.core.userdirs import config_folder
from replay.errors import UnsafeStoreError

ENV = "REPLAY_SAFE_STORES"


def allow_list() -> Path:
    return config_folder() / "safe-stores"


def allowed() -> list[str]:
    """The allowed store paths: REPLAY_SAFE_STORES's, then the allow list's."""
    entries = [e for e in os.environ.get(ENV, "").split(":") if e]
    try:
        lines = allow_list().read_text().splitlines()
    except FileNotFoundError:
        lines = []
    return entries + [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def check(root: Path) -> None:
    """Refuse (exit 8) a store folder owned by another user that nobody allowed."""
    owner, me = os.stat(root).st_uid, os.geteuid()
    if owner == me:
        return
    where = os.path.realpath(root)
    if any(e == "*" or os.path.realpath(e) == where for e in allowed()):
        return
    raise UnsafeStoreError(
        f"store {where} belongs to {_user(owner)}, not to you ({_user(me)}); its files decide "
        "what a replay runs",
        hint="if you trust everyone who can write it, allow it: "
        f"replay trust allow-store {shlex.quote(where)}",
    )


def allow(root: Path) -> Path:
    """Add a store folder to the allow list (kept in the user's config folder)."""
    where = os.path.realpath(root)
    if not os.path.isdir(where):
        from replay.errors import NotFoundError

        raise NotFoundError(f"no folder at {where}", hint="give the store's folder")
    path = allow_list()
    if where not in allowed():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a") as f:
            f.write(where + "\n")
    return path


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
