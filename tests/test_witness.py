"""Witnesses (issue 13): independent keys cosign a store's checkpoints, each only a head
proven to extend the last one it signed, so neither the store's admin nor the bank's key
alone can rewrite history unnoticed (Certificate Transparency's witness model)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import forge_history, rows
from typer.testing import CliRunner

import replay
from replay.cli.app import app
from replay.core import keys
from replay.store import checkpoint

pytestmark = pytest.mark.usefixtures("no_trust")


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    return keys.init_key(tmp_path / "bank" / "signing-key.pem")


@pytest.fixture
def witness_key(tmp_path: Path) -> Path:
    return keys.init_key(tmp_path / "witness" / "witness-key.pem")


def _pin(monkeypatch: pytest.MonkeyPatch, *private: Path) -> None:
    monkeypatch.setenv(
        "REPLAY_TRUSTED_KEYS", os.pathsep.join(str(keys.public_path(p)) for p in private)
    )


def _cosign(store: replay.Store, key: Path, state: Path) -> Any:
    return CliRunner().invoke(
        app,
        ["witness", "cosign", str(store.root), "--key", str(key), "--state", str(state), "--json"],
    )


def _verify(store: replay.Store, *args: str) -> Any:
    return CliRunner().invoke(app, ["--store", str(store.root), "verify", "--store", *args])


def _text(result: Any) -> str:
    return " ".join(result.output.split())


def _signed(
    store: replay.Store, toy: replay.Pipeline, bank: Path, runs: int, start: int = 0
) -> checkpoint.Checkpoint:
    for i in range(runs):
        replay.record(toy, rows(1, start + i), store=store)
    return checkpoint.sign(store, keys.load_private(bank))


def test_a_witness_cosigns_a_head_then_a_grown_one(
    store, toy, bank, witness_key, tmp_path, monkeypatch
) -> None:
    from replay.evidence import witness

    _pin(monkeypatch, bank)
    state = tmp_path / "witness-state"
    first = _signed(store, toy, bank, 3)
    done = _cosign(store, witness_key, state)
    assert done.exit_code == 0, done.output
    cosig = witness.Cosignature.from_json(
        json.loads(Path(json.loads(done.stdout)["path"]).read_bytes())
    )
    assert (cosig.tree_size, cosig.root, cosig.checkpoint_key_id) == (
        first.tree_size,
        first.root,
        first.key_id,
    )
    assert cosig.verify(keys.load_private(witness_key).public_key())
    assert not cosig.verify(keys.load_private(bank).public_key())

    grown = _signed(store, toy, bank, 2, start=3)
    again = _cosign(store, witness_key, state)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["tree_size"] == grown.tree_size == 5
    [kept] = state.glob("*.json")
    assert json.loads(kept.read_bytes())["checkpoint"]["tree_size"] == 5
    assert len(list((store.root / "witnesses").glob("*.json"))) == 2


def test_a_witness_refuses_a_head_over_a_rewritten_history(
    store, toy, bank, witness_key, tmp_path, monkeypatch
) -> None:
    from replay.evidence import witness

    _pin(monkeypatch, bank)
    state = tmp_path / "witness-state"
    _signed(store, toy, bank, 3)
    assert _cosign(store, witness_key, state).exit_code == 0
    forge_history(store, toy, tmp_path, runs=4)  # the admin swaps the history...
    forged = checkpoint.sign(replay.Store.open(store.root), keys.load_private(bank))  # ...and
    assert forged.tree_size == 4  # the bank's key signs it: a valid checkpoint
    refused = _cosign(store, witness_key, state)
    assert refused.exit_code == 9, refused.output
    assert "rewritten" in _text(refused)
    assert len(list((store.root / "witnesses").glob("*.json"))) == 1  # nothing cosigned
    with pytest.raises(witness.InconsistentHeadError, match="rewritten"):
        witness.cosign(replay.Store.open(store.root), keys.load_private(witness_key), state)


def test_a_witness_refuses_a_rolled_back_head(
    store, toy, bank, witness_key, tmp_path, monkeypatch
) -> None:
    from replay.evidence import witness

    _pin(monkeypatch, bank)
    state = tmp_path / "witness-state"
    _signed(store, toy, bank, 3)
    assert _cosign(store, witness_key, state).exit_code == 0
    _signed(store, toy, bank, 2, start=3)
    assert _cosign(store, witness_key, state).exit_code == 0
    # Roll back: the last two runs and the checkpoint covering them disappear.
    newest, _ = witness.latest(store)
    Path(newest).unlink()
    ledger = store.root / "ledger" / "ledger.jsonl"
    ledger.write_bytes(b"".join(ledger.read_bytes().splitlines(keepends=True)[:3]))
    refused = _cosign(store, witness_key, state)
    assert refused.exit_code == 9, refused.output
    assert "rolled back" in _text(refused)


def test_a_witness_refuses_a_checkpoint_signed_by_an_unpinned_key(
    store, toy, bank, witness_key, tmp_path, monkeypatch
) -> None:
    _signed(store, toy, bank, 2)  # the store carries the bank's public key: not enough
    state = tmp_path / "witness-state"
    refused = _cosign(store, witness_key, state)
    assert refused.exit_code == 14, refused.output
    assert "not trusted" in _text(refused)
    _pin(monkeypatch, witness_key)  # pinned keys, but not the one that signed
    assert _cosign(store, witness_key, state).exit_code == 14
    assert not (store.root / "witnesses").exists() and not state.exists()
    pinned_once = CliRunner().invoke(
        app,
        [
            "witness",
            "cosign",
            str(store.root),
            "--key",
            str(witness_key),
            "--state",
            str(state),
            "--signer",
            str(keys.public_path(bank)),
        ],
    )
    assert pinned_once.exit_code == 0, pinned_once.output  # --signer pins it for one call


def test_verify_store_requires_n_cosignatures_by_pinned_witnesses(
    store, toy, bank, witness_key, tmp_path, monkeypatch
) -> None:
    _pin(monkeypatch, bank, witness_key)
    _signed(store, toy, bank, 3)
    none = _verify(store, "--witnesses", "1")
    assert none.exit_code == 1, none.output
    assert "FAIL" in _text(none) and "0 valid cosignatures" in _text(none)
    assert _cosign(store, witness_key, tmp_path / "state").exit_code == 0
    one = _verify(store, "--witnesses", "1")
    assert one.exit_code == 0, one.output
    assert "1 witnesses" in _text(one)
    two = _verify(store, "--witnesses", "2")
    assert two.exit_code == 1
    assert "1 valid cosignature by pinned witnesses, 2 required" in _text(two)
    _signed(store, toy, bank, 1, start=3)  # a newer checkpoint nobody has cosigned yet
    assert _verify(store, "--witnesses", "1").exit_code == 1


def test_a_cosignature_by_an_unpinned_witness_does_not_count(
    store, toy, bank, witness_key, tmp_path, monkeypatch
) -> None:
    _pin(monkeypatch, bank)
    _signed(store, toy, bank, 2)
    assert _cosign(store, witness_key, tmp_path / "state").exit_code == 0
    result = _verify(store, "--witnesses", "1")
    assert result.exit_code == 1, result.output
    assert "0 valid cosignatures" in _text(result) and "is not pinned" in _text(result)
    # Nor does the bank's key cosigning its own checkpoint.
    assert _cosign(store, bank, tmp_path / "bank-state").exit_code == 0
    own = _verify(store, "--witnesses", "1")
    assert own.exit_code == 1 and "checkpoint's own key" in _text(own)


def test_a_tampered_cosignature_does_not_count(
    store, toy, bank, witness_key, tmp_path, monkeypatch
) -> None:
    _pin(monkeypatch, bank, witness_key)
    _signed(store, toy, bank, 2)
    done = _cosign(store, witness_key, tmp_path / "state")
    path = Path(json.loads(done.stdout)["path"])
    data = json.loads(path.read_bytes())
    path.write_text(json.dumps({**data, "timestamp": "2020-01-01T00:00:00+00:00"}))
    result = _verify(store, "--witnesses", "1")
    assert result.exit_code == 1 and "signature does not verify" in _text(result)
