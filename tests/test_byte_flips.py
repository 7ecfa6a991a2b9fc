"""Any byte of any store file flipped: no read gives a wrong answer or unpickles it (issue 13).

One checkpointed store (its signer pinned, checkpoints required) is copied per example; one
byte of one of its files (objects, segment blocks, ledger, checkpoints, keys, catalog) is
XORed. Then a replay, ``find`` and ``at`` must each either answer exactly as on the intact
store or refuse with a ReplayError; and every byte string that reaches the unpickler must be
one the intact store held under its digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import rows
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replay
from replay.catalog import queries
from replay.core import keys, unpickle
from replay.errors import CorruptionError, ReplayError
from replay.store import checkpoint, segments

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


class Intact:
    """The store before any flip, its files, and what each read answers on it."""

    def __init__(self, root: Path, toy: replay.Pipeline) -> None:
        self.root = root
        store = replay.Store.open(root)
        for hour in range(3):
            replay.record(
                toy,
                rows(3, start=10 * hour),
                store=store,
                record_key="id",
                at=T0.replace(hour=9 + hour),
            )
        private = Ed25519PrivateKey.generate()
        checkpoint.sign(store, private)
        self.public = root.parent / "signer.pub"
        self.public.write_bytes(keys.public_pem(private.public_key()))
        queries.find(store, "R11")  # builds the catalog, so its file is a target too
        self.files = sorted(
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and p.stat().st_size > 0 and p.name != "LOCK"
        )
        self.digests = {
            "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (root / "objects").rglob("*")
            if p.is_file()
        }
        self.answers = answers(store)


def answers(store: replay.Store) -> tuple[Any, ...]:
    # As a fresh process would: what an earlier read verified and kept must not hide a flip
    # (each store is opened afresh, so its cache, Store.cache, starts empty).
    segments._dictionary.cache_clear()
    run_id = replay.at(store, LATER, "toy", record="R11")["run_id"]
    rep = replay.replay(store, run_id)
    found = [row["run_id"] for row in queries.find(store, "R21")]
    assert rep.output is not None
    return run_id, rep.verdict, rep.output.to_pylist(), found


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intact]:
    from conftest import label, scale

    toy = replay.Pipeline(
        "toy", [replay.Step("scale", scale, params={"k": 2.0}), replay.Step("label", label)]
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield Intact(tmp_path_factory.mktemp("intact") / "store", toy)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_flipped_byte_is_refused_or_changes_no_answer(
    intact: Intact, tmp_path_factory, data: st.DataObject
) -> None:
    target = data.draw(st.sampled_from(intact.files), label="file")
    size = (intact.root / target).stat().st_size
    offset = data.draw(st.integers(0, size - 1), label="offset")
    mask = data.draw(st.integers(1, 255), label="xor")
    root = tmp_path_factory.mktemp("flipped") / "store"
    shutil.copytree(intact.root, root)
    path = root / target
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.chmod(0o644)
    path.write_bytes(bytes(raw))

    door = unpickle._Unpickler

    def only_intact_bytes(f: io.BytesIO) -> Any:
        blob = f.getvalue()
        assert "sha256:" + hashlib.sha256(blob).hexdigest() in intact.digests, (
            f"unpickled bytes the intact store never held (flip in {target})"
        )
        return door(f)

    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_CACHE_HOME", str(root.parent / "cache"))  # this copy's own history
        env.setenv("REPLAY_TRUSTED_KEYS", str(intact.public))
        env.setenv("REPLAY_REQUIRE_CHECKPOINT", "1")
        env.setattr(unpickle, "_Unpickler", only_intact_bytes)
        try:
            got = answers(replay.Store.open(root))
        except ReplayError:
            return  # refused: the flip was noticed
    assert got == intact.answers, f"a flip at byte {offset} of {target} changed an answer"


def test_a_checkpoint_signature_that_is_not_base64_is_refused(
    intact: Intact, tmp_path, monkeypatch
) -> None:
    root = tmp_path / "store"
    shutil.copytree(intact.root, root)
    (path,) = (root / "checkpoints").iterdir()
    data = json.loads(path.read_bytes())
    path.chmod(0o644)
    path.write_text(json.dumps({**data, "signature": data["signature"][:-2] + "A"}))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("REPLAY_TRUSTED_KEYS", str(intact.public))
    with pytest.raises(CorruptionError, match="signature does not verify"):
        answers(replay.Store.open(root))
