"""Versions of DVC-tracked data: which git rev and DVC md5 a run read, and those bytes again.

DVC is imported lazily (≈0.3 s) and only when a tracked file is first bound or changes,
never per run.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from replay.errors import DataVersionError


def _repo_root(path: Path) -> Path | None:
    for parent in path.parents:
        if (parent / ".dvc").is_dir():
            return parent
    return None


def md5_of(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _git_rev(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DataVersionError(
            f"{root} is a DVC repo without a git commit ({exc})",
            hint="commit the .dvc files (git add *.dvc && git commit)",
        ) from None
    return out.stdout.strip()


def version(path: Path) -> dict[str, Any] | None:
    """The DVC version of ``path`` (a file, or a folder DVC tracks as one) at the repo's
    HEAD, or None if DVC does not track it. ``committed``: the bytes on disk are those of
    that version, every file of a folder included."""
    path = path.resolve()
    if not path.with_name(path.name + ".dvc").exists():
        return None
    root = _repo_root(path)
    if root is None:
        return None
    rel = path.relative_to(root).as_posix()
    rev = _git_rev(root)
    try:
        from dvc.api import DVCFileSystem
        from dvc.repo import Repo

        fs = DVCFileSystem(str(root), rev=rev)
        committed = fs.info(rel).get("md5")
        same = _same_files(fs, rel, path) if path.is_dir() else committed == md5_of(path)
        with Repo(str(root)) as repo:
            remotes = repo.config.get("remote", {})
            name = repo.config.get("core", {}).get("remote")
            remote = remotes.get(name, {}).get("url") if name else None
    except Exception as exc:  # DVC raises many unrelated types; all mean "cannot version"
        raise DataVersionError(
            f"DVC cannot describe {rel} at {rev[:12]} in {root}: {exc}",
            hint="check `dvc status` in that repo",
        ) from None
    return {
        "repo": str(root),
        "rev": rev,
        "path": rel,
        "md5": committed,
        "remote": remote,
        "committed": same,
    }


def _same_files(fs: Any, rel: str, folder: Path) -> bool:
    """Whether ``folder`` holds exactly the files, by md5, that DVC lists for it at a rev."""
    listed = {
        name.removeprefix("/"): info.get("md5") for name, info in fs.find(rel, detail=True).items()
    }
    on_disk = {
        f"{rel}/{p.relative_to(folder).as_posix()}": md5_of(p)
        for p in folder.rglob("*")
        if p.is_file()
    }
    return listed == on_disk


def _trust_repo_owner() -> None:
    """Let libgit2 read a repo owned by another user, as a replay container's mounts are.

    Its owner check guards git's config-driven commands and hooks; libgit2 runs neither,
    and a fetch only reads objects at a recorded rev (then checks their md5)."""
    try:
        import pygit2
        from pygit2.enums import Option
    except ImportError:
        return
    pygit2.option(Option.SET_OWNER_VALIDATION, False)


def fetch(v: dict[str, Any]) -> bytes:
    """The bytes of a recorded DVC version, from the workspace cache or the remote."""
    try:
        import dvc.api

        _trust_repo_owner()
        # The remote recorded at capture, not whatever the config at that rev says (a
        # remote added after the commit is absent there).
        config = (
            {"core": {"remote": "recorded"}, "remote": {"recorded": {"url": v["remote"]}}}
            if v.get("remote")
            else None
        )
        data = dvc.api.read(v["path"], repo=v["repo"], rev=v["rev"], mode="rb", config=config)
    except Exception as exc:
        raise DataVersionError(
            f"cannot fetch {v['path']} (md5 {v['md5']}) at rev {v['rev'][:12]} "
            f"from DVC remote {v.get('remote')!r}: {type(exc).__name__}: {exc}",
            hint="check that the remote is reachable and holds the data (`dvc push` "
            "after recording)",
        ) from None
    if hashlib.md5(data, usedforsecurity=False).hexdigest() != v["md5"]:
        raise DataVersionError(
            f"DVC returned bytes for {v['path']} whose md5 is not the recorded {v['md5']}",
            hint="the remote is corrupt",
        )
    return bytes(data)
