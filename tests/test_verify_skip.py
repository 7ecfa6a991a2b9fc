"""``verify --store --skip-verified``: only what was added since the last verification is
re-read; the history verified then must still be the ledger's prefix, and a record of it
that does not check out is not trusted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import rows
from typer.testing import CliRunner

import replay
from replay.catalog.check import UntrustedCheckpointError, verify_store
from replay.cli.app import app
from replay.core import keys
from replay.errors import CorruptionError
from replay.store import audited, checkpoint, history

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _record(store: replay.Store, toy: replay.Pipeline, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        replay.record(toy, rows(2, i), store=store, at=T0 + timedelta(hours=i))


@pytest.fixture
def verified(store: replay.Store, toy: replay.Pipeline) -> replay.Store:
    """A store of three runs that passed a full verification, then two runs more."""
    _record(store, toy, 3)
    assert verify_store(store)["mode"] == "full"
    _record(store, toy, 2, start=3)
    return store


def _flip_first_block(store: replay.Store) -> None:
    ref = next(store.ledger.read())[1]["block"]
    path = store.root / "segments" / ref["segment"]
    data = bytearray(path.read_bytes())
    data[ref["offset"] + ref["length"] - 3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_only_the_blocks_of_new_runs_are_re_read(verified: replay.Store) -> None:
    _flip_first_block(verified)  # a block verified before: not read again
    counts = verify_store(verified, skip_verified=True)
    assert counts["mode"] == "skip-verified"
    assert (counts["runs"], counts["blocks"], counts["objects"]) == (5, 2, 0)
    assert counts["earlier"]["runs"] == 3 and counts["earlier"]["blocks"] == 3
    assert counts["catalog"] == "2 runs past entry 3 match the ledger"


def test_the_full_pass_still_finds_what_the_skipping_one_did_not_re_read(
    verified: replay.Store,
) -> None:
    _flip_first_block(verified)
    verify_store(verified, skip_verified=True)
    with pytest.raises(CorruptionError, match="segments"):
        verify_store(verified)


def test_a_ledger_line_rewritten_inside_what_was_verified_is_refused(
    verified: replay.Store,
) -> None:
    path = verified.ledger.path
    data = path.read_bytes()
    at = data.index(b'"run_id":"') + 10
    path.write_bytes(data[:at] + (b"0" if data[at : at + 1] != b"0" else b"1") + data[at + 1 :])
    with pytest.raises(CorruptionError, match="first 3 entries are not the ones verified"):
        verify_store(verified, skip_verified=True)


def test_a_ledger_cut_short_of_what_was_verified_is_refused(verified: replay.Store) -> None:
    lines = verified.ledger.path.read_bytes().splitlines(keepends=True)
    verified.ledger.path.write_bytes(b"".join(lines[:2]))  # 3 of its 5 entries were verified
    with pytest.raises(CorruptionError, match=r"shorter than the .* verified on .* removed"):
        verify_store(verified, skip_verified=True)


def test_a_new_checkpoint_by_an_unpinned_key_is_refused(
    verified: replay.Store, toy: replay.Pipeline, tmp_path: Path
) -> None:
    pinned = keys.load_private(keys.init_key(tmp_path / "pinned.pem"))
    other = keys.load_private(keys.init_key(tmp_path / "other.pem"))
    pins = (keys.key_id(pinned.public_key()),)
    checkpoint.sign(verified, pinned)
    verify_store(verified, signers=pins)
    _record(verified, toy, 1, start=5)
    checkpoint.sign(verified, other)
    with pytest.raises(UntrustedCheckpointError, match="signer not trusted"):
        verify_store(verified, signers=pins, skip_verified=True)


def test_a_damaged_record_is_not_trusted_and_everything_is_re_read(
    verified: replay.Store,
) -> None:
    record = audited.path_of(history.cache_path(verified))
    fields = json.loads(record.read_text())
    record.write_text(json.dumps({**fields, "blocks": fields["blocks"] + 1}))
    assert audited.load(record) is None
    _flip_first_block(verified)
    with pytest.raises(CorruptionError, match="segments"):
        verify_store(verified, skip_verified=True)


def test_without_a_record_the_pass_is_full_and_says_so(
    store: replay.Store, toy: replay.Pipeline
) -> None:
    _record(store, toy, 2)
    counts = verify_store(store, skip_verified=True)
    assert counts["mode"] == "full" and counts["blocks"] == 2
    assert counts["note"].startswith("no sound record of an earlier verification")


def test_the_cli_says_what_it_did_not_re_read(verified: replay.Store) -> None:
    result = CliRunner().invoke(
        app,
        ["--store", str(verified.root), "verify", "--store", "--skip-verified"],
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())  # as wrapped to the terminal
    assert "re-read: the 2 ledger entries after entry 3, their 2 blocks" in said
    assert "not re-read: 3 blocks" in said
