"""The filesystem seam: LocalFS keeps the store's durability contract on real files, and no
other module of replay/store touches a file but through it."""

from __future__ import annotations

import ast
import os
import select
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from replay.errors import StoreError
from replay.store.fs import LocalFS
from replay.store.objects import ObjectStore

REPO = Path(__file__).resolve().parent.parent
STORE = REPO / "replay" / "store"

# A child that writes ``data`` through LocalFS and is killed halfway through the bytes.
KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from replay.core import fsutil
from replay.store.fs import LocalFS

def torn(fd, data):
    os.write(fd, bytes(data)[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)

fsutil.write_all = torn
fs = LocalFS(Path(sys.argv[1]))
getattr(fs, sys.argv[2])(sys.argv[3], b"new " * 250_000)
"""


def _killed_mid_write(root: Path, method: str, path: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, str(root), method, path], cwd=REPO, timeout=60
    )
    assert done.returncode == -signal.SIGKILL


# 1. whole files: a reader sees all of them or nothing


def test_an_object_killed_mid_write_is_not_there(tmp_path: Path) -> None:
    name = "objects/sha256/ab/" + "c" * 62
    _killed_mid_write(tmp_path, "put_if_absent", name)

    fs = LocalFS(tmp_path)
    assert not fs.exists(name)
    (leftover,) = fs.list("objects/sha256/ab")  # for `replay doctor` to remove
    assert leftover.startswith(".tmp-")
    assert list(ObjectStore(fs)) == []


def test_a_document_killed_mid_rewrite_keeps_its_old_bytes(tmp_path: Path) -> None:
    fs = LocalFS(tmp_path)
    fs.write_atomic("checkpoints/head.json", b"old")
    _killed_mid_write(tmp_path, "write_atomic", "checkpoints/head.json")

    assert fs.read("checkpoints/head.json") == b"old"


def test_put_if_absent_never_rewrites_an_object(tmp_path: Path) -> None:
    fs = LocalFS(tmp_path)
    assert fs.put_if_absent("objects/a", b"first") is True
    before = (tmp_path / "objects" / "a").stat()

    assert fs.put_if_absent("objects/a", b"first") is False
    assert fs.put_if_absent("objects/a", b"other bytes") is False
    after = (tmp_path / "objects" / "a").stat()
    assert fs.read("objects/a") == b"first"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert fs.list("objects") == ["a"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("umask", "document", "obj"), [(0o022, 0o644, 0o444), (0o077, 0o600, 0o400)]
)
def test_new_files_get_modes_that_follow_the_umask(tmp_path: Path, umask, document, obj) -> None:
    fs = LocalFS(tmp_path)
    old = os.umask(umask)
    try:
        fs.write_atomic("FORMAT", b"{}")
        fs.put_if_absent("objects/a", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "FORMAT").stat().st_mode) == document
    assert stat.S_IMODE((tmp_path / "objects" / "a").stat().st_mode) == obj


# 2. logs: appended at the end, repaired in place on a descriptor of their own


def test_a_log_repaired_in_place_is_written_where_asked(tmp_path: Path) -> None:
    fs = LocalFS(tmp_path)
    with fs.open_log("ledger/ledger.jsonl") as log:
        log.append(b"abc")
        log.sync()
        with fs.open_existing("ledger/ledger.jsonl") as repair:
            repair.write_at(1, b"X")  # pwrite on the appending descriptor would append
        log.append(b"d")
        assert (log.size(), log.read_at(0, 4)) == (4, b"aXcd")
        log.truncate(2)
    assert fs.read("ledger/ledger.jsonl") == b"aX"


def test_a_symlink_in_a_logs_place_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    (tmp_path / "store" / "ledger").mkdir(parents=True)
    (tmp_path / "store" / "ledger" / "ledger.jsonl").symlink_to(outside)
    fs = LocalFS(tmp_path / "store")

    for open_ in (fs.open_log, fs.open_existing):
        with pytest.raises(StoreError, match="is a symbolic link"):
            open_("ledger/ledger.jsonl")
    assert outside.read_bytes() == b"keep"


# 3. the lock excludes other processes

TAKE_LOCK = """
import sys
from pathlib import Path
from replay.store.fs import LocalFS

print("waiting", flush=True)
with LocalFS(Path(sys.argv[1])).locked("ledger/lock"):
    print("held", flush=True)
"""


def test_the_lock_excludes_a_second_process(tmp_path: Path) -> None:
    fs = LocalFS(tmp_path)
    with fs.locked("ledger/lock"):
        child = subprocess.Popen(
            [sys.executable, "-c", TAKE_LOCK, str(tmp_path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "waiting\n"
        ready, _, _ = select.select([child.stdout], [], [], 1.0)
        assert not ready, "the child took a lock this process holds"
    out, _ = child.communicate(timeout=60)
    assert out == "held\n" and child.returncode == 0


# 4. names stay inside the store


@pytest.mark.parametrize(
    "name", ["../outside", "/etc/passwd", "objects/../../outside", "objects//a", "", "./FORMAT"]
)
def test_a_name_escaping_the_store_is_refused(tmp_path: Path, name: str) -> None:
    fs = LocalFS(tmp_path / "store")
    attempts = [
        lambda: fs.read(name),
        lambda: fs.exists(name),
        lambda: fs.put_if_absent(name, b"x"),
        lambda: fs.write_atomic(name, b"x"),
        lambda: fs.open_log(name),
        lambda: fs.locked(name).__enter__(),
    ]
    for attempt in attempts:
        with pytest.raises(StoreError, match="is not a name inside the store"):
            attempt()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# 5. the seam is the only door

FORBIDDEN_CALLS = {
    "os": {"open", "replace", "rename", "fsync", "fdatasync", "write", "pread", "pwrite"},
    "pa": {"memory_map", "OSFile"},
}
FORBIDDEN_METHODS = {"read_bytes", "write_bytes", "read_text", "write_text", "iterdir", "glob"}
FORBIDDEN_IMPORTS = {"fcntl", "mmap", "shutil", "replay.core.fsutil"}


def _doors(module: Path) -> list[str]:
    """Every way ``module`` reads or writes a file without the store's fs."""
    found = []
    for node in ast.walk(ast.parse(module.read_text())):
        where = f"{module.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                found.append(f"{where} open()")
            elif isinstance(func, ast.Attribute):
                owner = func.value.id if isinstance(func.value, ast.Name) else None
                if func.attr in FORBIDDEN_CALLS.get(owner or "", ()):
                    found.append(f"{where} {owner}.{func.attr}()")
                elif func.attr in FORBIDDEN_METHODS:
                    found.append(f"{where} .{func.attr}()")
        elif isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.ImportFrom) and node.module in FORBIDDEN_IMPORTS:
            found.append(f"{where} from {node.module} import")
    return found


def test_no_module_of_the_store_but_fs_touches_a_file_directly() -> None:
    modules = sorted(p for p in STORE.glob("*.py") if p.name != "fs.py")
    assert modules, STORE
    assert [door for m in modules for door in _doors(m)] == []


def test_repair_and_the_store_check_touch_store_files_only_through_the_seam() -> None:
    """doctor (catalog/repair.py) and verify --store (catalog/check.py) work on the store's
    own files: they list, size, read and remove them through ``store.fs`` too."""
    catalog = STORE.parent / "catalog"
    assert [door for m in ("repair.py", "check.py") for door in _doors(catalog / m)] == []


def test_the_door_check_finds_a_direct_write() -> None:
    assert _doors(STORE / "fs.py")  # fs.py itself is where the doors are
