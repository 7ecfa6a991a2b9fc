"""The store's files (issue 13): doctor cuts only what is torn, never follows a link out of
the store; objects follow the umask; private keys others can read are refused; a replay
container mounts only real DVC repos and remotes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import rows

import replay
from replay.catalog.repair import doctor
from replay.core import keys
from replay.core.manifest import DataRef, DvcVersion, Spec, StepSpec
from replay.docker.sandbox import data_mounts
from replay.errors import StoreError, UnsafeStoreError, UsageError

DIGEST = "sha256:" + "0" * 64

REPO = Path(__file__).parents[1]
AT = datetime(2026, 11, 29, tzinfo=UTC)


def cli(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replay", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def recorded(tmp_path: Path, toy: replay.Pipeline, n: int = 3) -> replay.Store:
    store = replay.Store.open(tmp_path / "store")
    for i in range(n):
        replay.record(toy, rows(2, start=i), store=store, at=AT)
    return store


# 1. doctor cuts a tail only when it is not a complete chained entry


@pytest.mark.parametrize("newline", [b" ", b""], ids=["changed-to-space", "removed"])
def test_doctor_gives_a_complete_last_entry_its_newline_back(tmp_path, toy, newline) -> None:
    store = recorded(tmp_path, toy)
    path = store.ledger.path
    whole = path.read_bytes()
    path.write_bytes(whole[:-1] + newline)

    report = doctor(replay.Store.open(store.root))

    assert path.read_bytes() == whole
    assert replay.Store.open(store.root).ledger.verify() == 3
    assert any("restored the newline" in r for r in report.repaired)
    assert not any("cut a torn" in r for r in report.repaired)


def test_doctor_keeps_a_complete_entry_and_cuts_the_torn_line_after_it(tmp_path, toy) -> None:
    store = recorded(tmp_path, toy)
    path = store.ledger.path
    whole = path.read_bytes()
    path.write_bytes(whole[:-1] + b' {"seq": 4, "prev": "sha')

    doctor(replay.Store.open(store.root))

    assert path.read_bytes() == whole


@pytest.mark.parametrize("tail", [b'{"seq": 4, "prev": "sha', b"{}", b"garbage"])
def test_doctor_still_cuts_a_torn_or_invalid_last_line(tmp_path, toy, tail) -> None:
    store = recorded(tmp_path, toy)
    path = store.ledger.path
    whole = path.read_bytes()
    path.write_bytes(whole + tail)

    report = doctor(replay.Store.open(store.root))

    assert path.read_bytes() == whole
    assert any("cut a torn last line" in r for r in report.repaired)


def test_doctor_cuts_a_last_entry_whose_hash_or_link_is_wrong(tmp_path, toy) -> None:
    store = recorded(tmp_path, toy)
    path = store.ledger.path
    lines = path.read_bytes().splitlines(keepends=True)
    # The last entry with one digit of its hash changed: not what a writer wrote.
    last = lines[-1].rstrip(b"\n")
    i = last.index(b'"hash":"sha256:') + len(b'"hash":"sha256:')
    forged = last[:i] + (b"0" if last[i : i + 1] != b"0" else b"1") + last[i + 1 :]
    path.write_bytes(b"".join(lines[:-1]) + forged)

    doctor(replay.Store.open(store.root))

    assert path.read_bytes() == b"".join(lines[:-1])
    assert replay.Store.open(store.root).ledger.verify() == 2


@pytest.mark.parametrize("newline", [b" ", b""], ids=["changed-to-space", "removed"])
def test_recording_after_a_lost_newline_keeps_the_complete_entry(tmp_path, toy, newline) -> None:
    store = recorded(tmp_path, toy)
    path = store.ledger.path
    whole = path.read_bytes()
    path.write_bytes(whole[:-1] + newline)

    replay.record(toy, rows(2, start=9), store=replay.Store.open(store.root), at=AT)

    assert path.read_bytes().startswith(whole)
    assert replay.Store.open(store.root).ledger.verify() == 4


def test_recording_after_a_torn_line_cuts_only_the_torn_line(tmp_path, toy) -> None:
    store = recorded(tmp_path, toy)
    path = store.ledger.path
    whole = path.read_bytes()
    path.write_bytes(whole[:-1] + b' {"seq": 4, "prev": "sha')

    replay.record(toy, rows(2, start=9), store=replay.Store.open(store.root), at=AT)

    assert path.read_bytes().startswith(whole)
    assert replay.Store.open(store.root).ledger.verify() == 4


# 2. the store's files are never followed out of it


def test_doctor_refuses_a_ledger_symlinked_out_of_the_store(tmp_path, toy) -> None:
    store = recorded(tmp_path, toy, n=1)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not a ledger, no final newline")
    store.ledger.path.unlink()
    store.ledger.path.symlink_to(outside)

    with pytest.raises(StoreError, match=r"ledger\.jsonl is a symbolic link"):
        doctor(replay.Store.open(store.root))
    done = cli("--store", str(store.root), "doctor")

    assert done.returncode == 8, done.stderr
    assert "ledger.jsonl is a symbolic link" in done.stderr
    assert outside.read_bytes() == b"not a ledger, no final newline"
    assert store.ledger.path.is_symlink()


@pytest.mark.parametrize("name", ["FORMAT", "catalog.lock", "ledger/lock", "segments"])
def test_doctor_refuses_any_store_file_or_folder_that_is_a_symlink(tmp_path, toy, name) -> None:
    store = recorded(tmp_path, toy, n=1)
    target = store.root / name
    outside = tmp_path / "elsewhere"
    if target.is_dir():
        target.rename(outside)
    else:
        outside.write_bytes(target.read_bytes() if target.exists() else b"x")
        target.unlink(missing_ok=True)
    target.symlink_to(outside)

    with pytest.raises(StoreError, match=f"{name} is a symbolic link"):
        doctor(replay.Store.open(store.root))


def test_record_refuses_a_ledger_symlinked_out_of_the_store(tmp_path, toy) -> None:
    store = recorded(tmp_path, toy, n=1)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not a ledger, no final newline")
    store.ledger.path.unlink()
    store.ledger.path.symlink_to(outside)
    try:
        with pytest.raises(StoreError, match="symbolic link"):
            replay.record(toy, rows(2), store=replay.Store.open(store.root), at=AT)
    finally:
        assert outside.read_bytes() == b"not a ledger, no final newline"


# 3. objects follow the umask

PUT = (
    "import sys, replay; s = replay.Store.open(sys.argv[1]); "
    "print(s.objects.path(s.put_object(b'immutable bytes')))"
)


@pytest.mark.parametrize(
    ("umask", "mode"), [(0o022, 0o444), (0o027, 0o440), (0o077, 0o400)], ids=["022", "027", "077"]
)
def test_objects_are_read_only_and_follow_the_umask(tmp_path, umask, mode) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PUT, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        preexec_fn=lambda: os.umask(umask),
    )
    assert done.returncode == 0, done.stderr
    obj = Path(done.stdout.strip())

    assert stat.S_IMODE(obj.stat().st_mode) == mode
    assert not list(obj.parent.glob(".tmp-*"))


# 4. a private key others can read is refused


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o640, 0o604], ids=oct)
def test_a_private_key_others_can_read_is_refused(tmp_path, mode) -> None:
    path = keys.init_key(tmp_path / "keys" / "signing-key.pem")
    path.chmod(mode)

    with pytest.raises(UsageError, match="accessible by others") as info:
        keys.load_private(path)
    assert info.value.hint == f"chmod 600 {path}"


def test_checkpoint_and_export_refuse_a_readable_key_with_the_fix(tmp_path, toy) -> None:
    store = recorded(tmp_path, toy, n=1)
    path = keys.init_key(tmp_path / "keys" / "signing-key.pem")
    path.chmod(0o644)
    run_id = store.ledger.read().__next__()[1]["run_id"]

    for args in (
        ["checkpoint", "--key", str(path)],
        ["export", run_id, "--key", str(path), "--out", str(tmp_path / "e.bundle")],
    ):
        done = cli("--store", str(store.root), *args)
        assert done.returncode == 2, (args, done.stderr)
        assert f"chmod 600 {path}" in done.stderr
    assert not (tmp_path / "e.bundle").exists()

    path.chmod(0o600)
    assert cli("--store", str(store.root), "checkpoint", "--key", str(path)).returncode == 0


# 5. a replay container mounts only real DVC repos and remotes


def spec_reading(*versions: dict[str, Any]) -> Spec:
    """A spec whose one step reads one DVC-versioned file per version given."""
    data = {
        f"d{i}": DataRef(
            "/anywhere",
            DIGEST,
            "bytes",
            DvcVersion(v["repo"], "0" * 40, v["path"], None, v.get("remote"), True),
        )
        for i, v in enumerate(versions)
    }
    step = StepSpec("s", DIGEST, DIGEST, "s", DIGEST, {}, data, ["input"])
    return Spec(1, "p", [], [step])


def test_data_mounts_only_dvc_repos_and_remotes(tmp_path, credit_workspace) -> None:
    plain = tmp_path / "plain"
    (plain / "data").mkdir(parents=True)
    (plain / "data" / "bureau.parquet").write_bytes(b"x")
    not_a_remote = tmp_path / "not-a-remote"
    not_a_remote.mkdir()
    remote = credit_workspace.parent / f"{credit_workspace.name}-remote"
    assert (remote / "files" / "md5").is_dir()
    bureau = "data/bureau.parquet"
    spec = spec_reading(
        {"repo": "/root", "remote": "/root", "path": bureau},
        {"repo": str(plain), "remote": str(not_a_remote), "path": bureau},
        {"repo": "/", "remote": "/etc", "path": "etc/passwd"},
        {"repo": str(credit_workspace), "remote": str(remote), "path": bureau},
        {"repo": str(credit_workspace), "path": "../../../etc/passwd"},
        {"repo": f"{credit_workspace}/../{credit_workspace.name}", "path": bureau},
    )

    assert data_mounts(spec) == sorted([str(credit_workspace), str(remote)])
    # A DVC repo named with a path it does not hold is not the repo the store recorded.
    assert data_mounts(spec_reading({"repo": str(credit_workspace), "path": "no/such"})) == []
    # A bundle carries its data, and its spec is someone else's word.
    assert data_mounts(spec, bundle=True) == []


def test_a_bundle_replayed_from_leaves_no_temporary_store(tmp_path, toy) -> None:
    import subprocess
    import sys

    from replay.core import keys
    from replay.evidence.export import export

    store = replay.Store.open(tmp_path / "store")
    run_id = replay.record(toy, rows(2), store=store, at=AT).run_id
    key = keys.init_key(tmp_path / "k" / "signing.pem")
    path = export(store, [run_id], tmp_path / "e.bundle", key=key).path
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "replay",
            "run",
            run_id,
            "--bundle",
            str(path),
            "--key",
            str(keys.public_path(key)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(scratch.iterdir()) == []


# 5. a store another user owns opens only when allowed (as git's safe.directory)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder away needs root")


def given_away(tmp_path: Path, toy: replay.Pipeline) -> Path:
    root = recorded(tmp_path, toy, n=1).root
    os.chown(root, 54321, 54321)
    return root


@needs_root
def test_a_store_another_user_owns_is_refused_and_left_as_it_was(tmp_path, toy, no_trust) -> None:
    root = given_away(tmp_path, toy)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    done = cli("--store", str(root), "doctor")
    assert done.returncode == 8, done.stderr
    assert f"store {root} belongs to uid 54321, not to you" in done.stderr
    assert "Traceback" not in done.stderr
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


@needs_root
def test_the_printed_allow_store_command_opens_it(tmp_path, toy, no_trust) -> None:
    root = given_away(tmp_path, toy)
    hint = cli("--store", str(root), "runs").stderr.splitlines()[-1].split(": ", 1)[1]
    assert hint == f"replay trust allow-store {root}"
    allowed = subprocess.run(
        [sys.executable, "-m", *hint.split()],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert cli("--store", str(root), "runs").returncode == 0


@needs_root
def test_replay_safe_stores_allows_a_store_for_one_process(
    tmp_path, toy, no_trust, monkeypatch
) -> None:
    root = given_away(tmp_path, toy)
    monkeypatch.setenv("REPLAY_SAFE_STORES", f"/elsewhere:{root}")
    assert replay.Store.open(root).root == root
    monkeypatch.setenv("REPLAY_SAFE_STORES", "/elsewhere")
    with pytest.raises(UnsafeStoreError):
        replay.Store.open(root)
