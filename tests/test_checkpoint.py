"""Signed checkpoints and store verification: tamper evidence for a store at rest."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import forge_history, rows
from typer.testing import CliRunner

import replay
from replay.catalog.check import verify_store
from replay.cli.app import app
from replay.core import keys
from replay.errors import CorruptionError, UsageError
from replay.store import checkpoint


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return keys.init_key(tmp_path / "keys" / "signing-key.pem")


def test_a_new_private_key_is_readable_by_its_owner_only(key: Path) -> None:
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert keys.public_path(key).read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_a_key_is_never_created_inside_a_store(store) -> None:
    with pytest.raises(UsageError, match="inside"):
        keys.init_key(store.root / "key.pem", forbidden=(store.root,))


def test_an_existing_key_is_never_overwritten(key: Path) -> None:
    with pytest.raises(UsageError, match="already exists"):
        keys.init_key(key)


def test_yesterdays_and_todays_checkpoints_prove_the_ledger_only_grew(store, toy, key) -> None:
    private = keys.load_private(key)
    for i in range(5):
        replay.record(toy, rows(1, i), store=store)
    yesterday = checkpoint.sign(store, private, now=datetime.now(UTC) - timedelta(days=1))
    for i in range(7):
        replay.record(toy, rows(1, i), store=store)
    today = checkpoint.sign(store, private)
    assert (yesterday.tree_size, today.tree_size) == (5, 12)
    assert yesterday.verify(private.public_key()) and today.verify(private.public_key())
    proof = checkpoint.prove_growth(store, yesterday, today)
    assert checkpoint.grew(yesterday, today, proof)
    assert not checkpoint.grew(yesterday, today, proof[:-1])


def test_a_checkpoint_signed_by_another_key_does_not_verify(store, toy, key, tmp_path) -> None:
    replay.record(toy, rows(1), store=store)
    cp = checkpoint.sign(store, keys.load_private(key))
    other = keys.load_private(keys.init_key(tmp_path / "other.pem"))
    assert not cp.verify(other.public_key())


def test_a_healthy_store_verifies(store, toy, key) -> None:
    for i in range(3):
        replay.record(toy, rows(2, i), store=store)
    checkpoint.sign(store, keys.load_private(key))
    assert verify_store(store) == {
        "objects": len(list(store.objects)),
        "runs": 3,
        "blocks": 3,
        "checkpoints": 1,
        "catalog": "3 runs match the ledger",
        "mode": "full",
        "earlier": None,
    }


def _corrupt_object(store: replay.Store) -> Path:
    path = max((p for _, p in store.objects), key=lambda p: p.stat().st_size)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    return path


def _corrupt_segment(store: replay.Store) -> Path:
    block = [e for _, e in store.ledger.read()][-1]["block"]
    path = store.root / "segments" / block["segment"]
    data = bytearray(path.read_bytes())
    data[block["offset"] + block["length"] - 3] ^= 0xFF  # the block's end, not its frame
    path.write_bytes(bytes(data))
    return path


def _corrupt_ledger(store: replay.Store) -> Path:
    path = store.ledger.path
    data = path.read_bytes()
    at = data.index(b'"manifest_sha256":"sha256:') + 26
    path.write_bytes(data[:at] + (b"0" if data[at : at + 1] != b"0" else b"1") + data[at + 1 :])
    return path


@pytest.mark.parametrize("damage", [_corrupt_object, _corrupt_segment, _corrupt_ledger])
def test_damage_anywhere_is_reported_with_its_path(store, toy, damage) -> None:
    for i in range(2):
        replay.record(toy, rows(2, i), store=store)
    path = damage(store)
    with pytest.raises(CorruptionError) as info:
        verify_store(store)
    assert info.value.path == str(path)


def test_a_checkpoint_over_a_rewritten_history_fails(store, toy, key, tmp_path) -> None:
    for i in range(2):
        replay.record(toy, rows(2, i), store=store)
    checkpoint.sign(store, keys.load_private(key))
    forge_history(store, toy, tmp_path, runs=2)
    with pytest.raises(CorruptionError, match="root does not match the ledger"):
        verify_store(replay.Store.open(store.root))


def test_cli_checkpoint_and_verify_store(store, toy, key) -> None:
    replay.record(toy, rows(2), store=store)
    base = ["--store", str(store.root)]
    signed = CliRunner().invoke(app, [*base, "checkpoint", "--key", str(key), "--json"])
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.stdout)["tree_size"] == 1
    ok = CliRunner().invoke(
        app, [*base, "verify", "--store", "--json", "--key", str(keys.public_path(key))]
    )
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    _corrupt_segment(store)
    bad = CliRunner().invoke(app, [*base, "verify", "--store"])
    assert bad.exit_code == 1 and "FAIL" in bad.stdout and ".seg" in bad.stdout


def test_a_read_picks_the_largest_of_the_first_checkpoints_that_cover_its_run(
    store, toy, key, tmp_path
) -> None:
    signers = sorted(
        (keys.load_private(p) for p in (key, keys.init_key(tmp_path / "other.pem"))),
        key=lambda k: keys.key_id(k.public_key()),
    )
    for i in range(5):
        replay.record(toy, rows(1, i), store=store)
        for signer in signers:
            checkpoint.sign(store, signer)
    pinned = [keys.key_id(signers[1].public_key())]  # its checkpoints' names sort second
    found = checkpoint.largest(store.fs, pinned, covering=2, ahead=4)  # trees 2, 2, 3, 3
    assert found is not None and (found[1].tree_size, found[1].key_id) == (3, pinned[0])
    assert checkpoint.largest(store.fs, pinned, covering=6) is None
    found = checkpoint.largest(store.fs, pinned, covering=2, ahead=1)  # an unpinned one first
    assert found is not None and (found[1].tree_size, found[1].key_id) == (2, pinned[0])
