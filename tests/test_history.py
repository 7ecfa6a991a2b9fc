"""A store proves its history (signed checkpoints pinned to a key, tree heads kept outside the
store), and reads check it: nothing is unpickled from a ledger entry that was rewritten."""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import forge_history, rows, scale
from typer.testing import CliRunner

import replay
from replay.catalog import queries
from replay.cli.app import app
from replay.core import keys
from replay.core.digest import canonical_json
from replay.errors import CorruptionError
from replay.store import checkpoint
from replay.store.ledger import entry_hash

pytestmark = pytest.mark.usefixtures("no_trust")


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return keys.init_key(tmp_path / "signer" / "signing-key.pem")


def _cli(store: replay.Store, *args: str) -> Any:
    return CliRunner().invoke(app, ["--store", str(store.root), *args])


def _text(result: Any) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _trust(monkeypatch: pytest.MonkeyPatch, key: Path) -> None:
    monkeypatch.setenv("REPLAY_TRUSTED_KEYS", str(keys.public_path(key)))


# 1. `verify --store` pins the checkpoint signer.


def test_zero_checkpoints_fail_when_a_key_is_pinned(store, toy, key) -> None:
    replay.record(toy, rows(2), store=store)
    result = _cli(store, "verify", "--store", "--key", str(keys.public_path(key)))
    assert result.exit_code == 1, result.output
    assert "FAIL" in _text(result) and "no checkpoint" in _text(result)


def test_a_checkpoint_signed_by_a_key_dropped_into_the_store_fails(
    store, toy, key, tmp_path
) -> None:
    replay.record(toy, rows(2), store=store)
    checkpoint.sign(store, keys.load_private(key))
    intruder = keys.init_key(tmp_path / "intruder.pem")
    foreign = checkpoint.sign(store, keys.load_private(intruder))  # its key lands in keys/
    assert (store.root / "keys").is_dir() and len(list((store.root / "keys").iterdir())) == 2
    result = _cli(store, "verify", "--store", "--key", str(keys.public_path(key)))
    assert result.exit_code == 14, result.output  # as a bundle whose signer is not pinned
    assert f"signer not trusted: {foreign.key_id}" in _text(result)


def test_the_trust_store_pins_when_no_key_is_given(store, toy, key, monkeypatch) -> None:
    replay.record(toy, rows(2), store=store)
    checkpoint.sign(store, keys.load_private(key))
    unpinned = _cli(store, "verify", "--store")
    assert unpinned.exit_code == 14, unpinned.output
    assert "signer not trusted" in _text(unpinned)
    _trust(monkeypatch, key)
    pinned = _cli(store, "verify", "--store", "--json")
    assert pinned.exit_code == 0, pinned.output
    assert json.loads(pinned.stdout)["checkpoints"] == 1
    assert _cli(store, "verify", "--store", "--key", str(keys.public_path(key))).exit_code == 0


# 2. A tree head kept outside the store.


def test_a_head_kept_outside_catches_a_rewritten_and_resigned_history(
    store, toy, key, tmp_path
) -> None:
    for i in range(2):
        replay.record(toy, rows(2, i), store=store)
    head = tmp_path / "outside" / "head.json"
    head.parent.mkdir()
    signed = _cli(store, "checkpoint", "--key", str(key), "--out", str(head))
    assert signed.exit_code == 0, signed.output
    assert json.loads(head.read_bytes())["tree_size"] == 2
    pub = str(keys.public_path(key))
    replay.record(toy, rows(2, 5), store=store)  # the ledger grows: still consistent
    assert _cli(store, "verify", "--store", "--key", pub, "--checkpoint", str(head)).exit_code == 0
    # The admin rewrites history and, holding the key, re-signs the store's checkpoints.
    forge_history(store, toy, tmp_path)
    shutil.rmtree(store.root / "checkpoints")
    checkpoint.sign(replay.Store.open(store.root), keys.load_private(key))
    inside_only = _cli(store, "verify", "--store", "--key", pub)
    assert inside_only.exit_code == 0, inside_only.output  # the store alone cannot tell
    outside = _cli(store, "verify", "--store", "--key", pub, "--checkpoint", str(head))
    assert outside.exit_code == 1, outside.output
    assert "rewritten" in _text(outside)


def test_a_head_kept_outside_catches_a_truncated_history(store, toy, key, tmp_path) -> None:
    for i in range(3):
        replay.record(toy, rows(2, i), store=store)
    head = tmp_path / "head.json"
    assert _cli(store, "checkpoint", "--key", str(key), "--out", str(head)).exit_code == 0
    ledger = store.ledger.path
    ledger.write_bytes(b"".join(ledger.read_bytes().splitlines(keepends=True)[:2]))
    shutil.rmtree(store.root / "checkpoints")
    checkpoint.sign(replay.Store.open(store.root), keys.load_private(key))
    result = _cli(
        replay.Store.open(store.root),
        "verify",
        "--store",
        "--key",
        str(keys.public_path(key)),
        "--checkpoint",
        str(head),
    )
    assert result.exit_code == 1 and "truncated" in _text(result), result.output


# 3. Verified reads.


class Payload:
    """A step whose unpickling writes a marker file: proof that code from the store ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, table: pa.Table, *, params: dict[str, float]) -> pa.Table:
        return scale(table, params=params)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_armed, (self.marker,))


def _armed(marker: str) -> Payload:
    Path(marker).write_text("the payload ran")
    return Payload(marker)


def _plant(
    store: replay.Store,
    run_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    marker: Path,
    *,
    rechain: bool,
) -> None:
    """An attacker with write access: a code object, spec and block recorded elsewhere under
    the victim's run id, copied in, and the victim's first ledger line rewritten to point at
    them (with its hash recomputed; with ``rechain`` every later line re-chained too)."""
    evil = replay.Pipeline("toy", [replay.Step("scale", Payload(str(marker)), params={"k": 2.0})])
    attacker = replay.Store.open(tmp_path / "attacker")
    with monkeypatch.context() as patch:
        patch.setattr("replay.capture.record.new_run_id", lambda: run_id)
        replay.record(evil, rows(2), store=attacker)
        attacker.flush()
    marker.unlink(missing_ok=True)
    for part in ("objects", "segments"):
        for src in (attacker.root / part).rglob("*"):
            dst = store.root / part / src.relative_to(attacker.root / part)
            if src.is_file() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
    (forged,) = [json.loads(line) for line in attacker.ledger.path.read_bytes().splitlines()]
    lines = [json.loads(line) for line in store.ledger.path.read_bytes().splitlines()]
    lines[0] = forged
    if rechain:
        for prev, entry in itertools.pairwise(lines):
            entry["prev"] = prev["hash"]
            entry["hash"] = entry_hash(entry)
    store.ledger.path.write_bytes(b"".join(canonical_json(e) + b"\n" for e in lines))


def _victim(tmp_path: Path, toy: replay.Pipeline) -> tuple[replay.Store, str]:
    store = replay.Store.open(tmp_path / "victim")
    first = replay.record(toy, rows(2), store=store)
    replay.record(toy, rows(2, 5), store=store)
    store.flush()
    return store, first.run_id


def test_a_rewritten_ledger_line_is_refused_before_anything_is_unpickled(
    tmp_path, toy, monkeypatch
) -> None:
    store, run_id = _victim(tmp_path, toy)
    marker = tmp_path / "marker"
    _plant(store, run_id, tmp_path, monkeypatch, marker, rechain=False)
    fresh = replay.Store.open(store.root)
    assert queries.entry(fresh, run_id)["hash"] != ""  # the forged line is what a read finds
    result = _cli(fresh, "run", run_id)
    assert result.exit_code == 9, result.output
    assert "entry 2" in _text(result) and "breaks the chain" in _text(result)
    assert not marker.exists()


def test_a_rechained_history_is_refused_when_the_store_is_checkpointed(
    tmp_path, toy, key, monkeypatch
) -> None:
    store, run_id = _victim(tmp_path, toy)
    checkpoint.sign(store, keys.load_private(key))
    marker = tmp_path / "marker"
    _plant(store, run_id, tmp_path, monkeypatch, marker, rechain=True)
    _trust(monkeypatch, key)
    result = _cli(replay.Store.open(store.root), "run", run_id)
    assert result.exit_code == 9, result.output
    assert "root does not match the ledger" in _text(result)
    assert not marker.exists()


def test_a_run_no_pinned_checkpoint_covers_is_refused_in_a_checkpointed_store(
    store, toy, key, monkeypatch
) -> None:
    replay.record(toy, rows(2), store=store)
    checkpoint.sign(store, keys.load_private(key))
    fresh = replay.record(toy, rows(2, 3), store=store)
    _trust(monkeypatch, key)
    with pytest.raises(CorruptionError, match="covered by no checkpoint"):
        replay.replay(replay.Store.open(store.root), fresh.run_id)
    checkpoint.sign(store, keys.load_private(key))
    assert replay.replay(replay.Store.open(store.root), fresh.run_id).verdict == "exact"


def _checkpointed_runs(store: replay.Store, toy: replay.Pipeline, key: Path) -> str:
    """Twelve runs, each followed by a checkpoint; the first run's id."""
    for i in range(12):
        replay.record(toy, rows(1, i), store=store)
        checkpoint.sign(store, keys.load_private(key))
    return str(next(e["run_id"] for _, e in store.ledger.read()))


def test_a_replay_reads_only_the_checkpoint_that_covers_its_run(
    store, toy, key, monkeypatch
) -> None:
    # A store signed at every sealing epoch keeps 86,400 checkpoints a day: a new process's
    # replay picks the one it needs by name, as it would from a bucket, one GET each.
    from replay.store.fs import LocalFS

    first = _checkpointed_runs(store, toy, key)
    _trust(monkeypatch, key)
    read: list[str] = []
    real = LocalFS.read
    monkeypatch.setattr(LocalFS, "read", lambda fs, p: read.append(p) or real(fs, p))
    assert replay.replay(replay.Store.open(store.root), first).verdict == "exact"
    assert [p for p in read if p.startswith(f"{checkpoint.FOLDER}/")] == [
        checkpoint.name_of(checkpoint.stored(store)[-1][1])
    ]


def test_a_reader_who_pinned_nothing_lists_no_more_than_one_checkpoint(
    store, toy, key, monkeypatch
) -> None:
    from replay.store.fs import LocalFS

    first = _checkpointed_runs(store, toy, key)
    listed: list[str] = []
    names = LocalFS.names

    def listing(fs: LocalFS, folder: str, start_after: str = "") -> Any:
        for name in names(fs, folder, start_after):
            listed.extend([name] if folder == checkpoint.FOLDER else [])
            yield name

    monkeypatch.setattr(LocalFS, "names", listing)
    assert replay.replay(replay.Store.open(store.root), first).verdict == "exact"
    assert len(listed) == 1  # there are checkpoints, and no pinned key to look for


def test_a_checkpoint_that_is_not_what_its_name_says_is_refused(
    store, toy, key, monkeypatch
) -> None:
    run = replay.record(toy, rows(1), store=store)
    cp = checkpoint.sign(store, keys.load_private(key))
    named = store.root / checkpoint.name_of(cp)
    named.rename(named.with_name(named.name.replace(f"{cp.tree_size:012d}", f"{9:012d}")))
    _trust(monkeypatch, key)
    with pytest.raises(CorruptionError, match="not the checkpoint its name says"):
        replay.replay(replay.Store.open(store.root), run.run_id)


def test_an_untouched_store_replays_exact_and_keeps_what_it_verified_outside_it(
    store, toy, key, monkeypatch
) -> None:
    # The check's cost per run is measured by benchmarks/bench_evidence.py.
    runs = [replay.record(toy, rows(1, i), store=store).run_id for i in range(10)]
    checkpoint.sign(store, keys.load_private(key))
    _trust(monkeypatch, key)
    reopened = replay.Store.open(store.root)
    assert all(replay.replay(reopened, r).verdict == "exact" for r in runs)
    from replay.store.history import cache_path

    assert cache_path(reopened).exists() and not (store.root / "verified.json").exists()


def test_the_memory_of_entries_already_hashed_is_bounded(store, toy, monkeypatch) -> None:
    """A long incident review reads many entries; the process remembers only the most recent
    ones it hashed (a forgotten one is hashed again, never trusted unhashed)."""
    from replay.store import history

    monkeypatch.setattr(history, "HASHED_KEPT", 2)
    at = datetime(2026, 3, 14, 12, tzinfo=UTC)
    ids = [replay.record(toy, rows(1, i), store=store, at=at).run_id for i in range(4)]
    for run_id in ids:
        assert replay.replay(store, run_id).verdict == "exact"
    assert len(history._prefixes[store.root].hashed) == 2


# 4. What was verified is kept between processes (in the user's cache, not the store).


@pytest.fixture
def kept_store(store, toy, monkeypatch) -> tuple[replay.Store, list[str]]:
    """A store big enough for its verified history to be kept (the threshold lowered to 2),
    verified by one process; ``history._prefixes`` forgotten, as in a new process."""
    from replay.store import history

    monkeypatch.setattr(history, "VERIFIED_KEPT_FROM", 2)
    at = datetime(2026, 3, 14, 12, tzinfo=UTC)
    ids = [replay.record(toy, rows(1, i), store=store, at=at).run_id for i in range(5)]
    assert history.verified_tree(store).size == 5
    monkeypatch.setattr(history, "_prefixes", {})
    return store, ids


def _reads_from(store: replay.Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    offsets: list[int] = []
    read = store.ledger.read

    def counting(offset: int = 0, copy: Any = None) -> Any:
        offsets.append(offset)
        return read(offset, copy)

    monkeypatch.setattr(store.ledger, "read", counting)
    return offsets


def test_a_new_process_hashes_only_the_entries_past_what_was_verified(
    kept_store, toy, monkeypatch
) -> None:
    from replay.store import history

    store, _ = kept_store
    replay.record(toy, rows(1, 9), store=store, at=datetime(2026, 3, 14, 13, tzinfo=UTC))
    size = store.ledger.size()
    end = history.verified.read_head(history.cache_path(store)).end  # type: ignore[union-attr]
    whole = checkpoint.ledger_tree(store).root()
    offsets = _reads_from(store, monkeypatch)
    tree = history.verified_tree(store)
    assert offsets == [end] and 0 < end < size
    assert tree.root() == whole and tree.size == 6


def test_a_line_rewritten_inside_what_was_verified_is_refused_when_read(
    kept_store, tmp_path, monkeypatch
) -> None:
    store, ids = kept_store
    marker = tmp_path / "marker"
    _plant(store, ids[0], tmp_path, monkeypatch, marker, rechain=False)
    fresh = replay.Store.open(store.root)
    with pytest.raises(CorruptionError, match="entry"):
        replay.replay(fresh, ids[0])
    assert not marker.exists()


def test_a_history_truncated_under_what_was_verified_is_refused(kept_store) -> None:
    from replay.store import history

    store, _ = kept_store
    lines = store.ledger.path.read_bytes().splitlines(keepends=True)
    store.ledger.path.write_bytes(b"".join(lines[:3]))
    with pytest.raises(CorruptionError, match="truncated"):
        history.verified_tree(replay.Store.open(store.root))


def test_kept_data_shorter_than_its_head_says_is_not_trusted(kept_store, monkeypatch) -> None:
    from replay.store import history

    store, _ = kept_store
    level = history.cache_path(store).with_suffix("") / "level-0"
    level.write_bytes(level.read_bytes()[:-1])
    whole = checkpoint.ledger_tree(store).root()
    offsets = _reads_from(store, monkeypatch)
    assert history.verified_tree(store).root() == whole
    assert offsets == [0]  # hashed from the start again, and compared with the head
