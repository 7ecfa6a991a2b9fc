"""A store on S3 with many writers (issue 17): each writer PUTs its own log objects, sealers
chain them into one signed ledger by epochs, readers work on a local mirror of it.

Against a real S3 endpoint in its own process (moto in server mode, tests/s3_endpoint.py):
its conditional writes are not atomic, so these tests prove the protocol's logic; atomicity
under real contention is the provider's guarantee."""

from __future__ import annotations

import http.server
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import replay
from replay.catalog import blocks, feed, ingest
from replay.catalog.check import verify_store
from replay.catalog.index import Catalog
from replay.cli.main import app
from replay.core import keys, merkle
from replay.core.digest import canonical_json
from replay.errors import CorruptionError, NotFoundError, StoreError, UsageError
from replay.evidence.verify import verify_bundle
from replay.store import checkpoint, frames, rows, seals, shards
from replay.store.s3 import S3FS

T0 = datetime(2026, 3, 14, 9, tzinfo=UTC)

# A bank's chain, written to a file of its own for the processes that record with it: an
# embedding column beside the scalars, a decision from a rule over both.
CHAIN = """
import pyarrow as pa
import replay


def features(table):
    vectors = [[float(x), float(x) / 2, 0.0] for x in table["x"].to_pylist()]
    return table.append_column("embedding", pa.array(vectors, pa.list_(pa.float32())))


def decide(table):
    score = [v[0] + v[1] for v in table["embedding"].to_pylist()]
    decisions = ["approve" if s < 9 else "refer" for s in score]
    return table.append_column("decision", pa.array(decisions))


CHAIN = replay.Pipeline(
    "credit", [replay.Step("features", features), replay.Step("decide", decide)]
)


def applicant(i):
    return pa.table({"id": [f"A{i}"], "x": [float(i % 10)]})
"""

WRITER = """
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from datetime import UTC, datetime, timedelta
import replay
from chain import CHAIN, applicant

store = replay.Store.open(sys.argv[1])
first, count = int(sys.argv[2]), int(sys.argv[3])
for i in range(first, first + count):
    result = replay.record(CHAIN, applicant(i), store=store, record_key="id",
                           at=datetime(2026, 3, 14, tzinfo=UTC) + timedelta(seconds=i))
    print(result.run_id, flush=True)  # acknowledged: its object's PUT returned
"""


@pytest.fixture
def programs(tmp_path: Path) -> Path:
    folder = tmp_path / "bank"
    folder.mkdir()
    (folder / "chain.py").write_text(CHAIN)
    (folder / "writer.py").write_text(WRITER)
    return folder


def _chain() -> replay.Pipeline:
    namespace: dict[str, object] = {}
    exec(compile(textwrap.dedent(CHAIN), "chain", "exec"), namespace)
    pipeline = namespace["CHAIN"]
    assert isinstance(pipeline, replay.Pipeline)
    return pipeline


def _applicant(i: int) -> pa.Table:
    return pa.table({"id": [f"A{i}"], "x": [float(i % 10)]})


def _ledger_runs(store: replay.Store) -> list[str]:
    store.sync()
    return [entry["run_id"] for _, entry in store.ledger.read()]


def _sealed(url: str, runs: int) -> replay.Store:
    """A store on ``url`` with ``runs`` runs of the chain, sealed."""
    store = replay.Store.open(url)
    for i in range(runs):
        replay.record(_chain(), _applicant(i), store=store, record_key="id", at=T0)
    store.sync()
    return store


def _key(tmp_path: Path) -> Path:
    return keys.init_key(tmp_path / "sealer.pem")


def test_an_object_is_created_once_and_never_rewritten(s3_url: str) -> None:
    fs = S3FS.of(s3_url)
    assert fs.put_if_absent("objects/x", b"first")
    assert not fs.put_if_absent("objects/x", b"second")
    assert fs.read("objects/x") == b"first"


def test_a_listing_of_names_starting_with_a_prefix_holds_no_other_name(s3_url: str) -> None:
    """What a sealer lists for each writer: its own objects, not the next 1,000 of others'."""
    fs = S3FS.of(s3_url)
    for name in ("a-1", "b-1", "b-2", "c-1"):
        fs.put_if_absent(f"segments/{name}", b"x")
    assert list(fs.names("segments", starting="b-")) == ["b-1", "b-2"]
    assert list(fs.names("segments", start_after="b-1", starting="b-")) == ["b-2"]


def test_a_run_recorded_on_s3_is_found_and_replays_exact(s3_url: str) -> None:
    store = replay.Store.open(s3_url)
    result = replay.record(_chain(), _applicant(7), store=store, record_key="id", at=T0)
    assert replay.find(store, "A7")[0]["run_id"] == result.run_id
    assert replay.replay(store, result.run_id).verdict == "exact"
    writer = store.remote.list(shards.WRITERS) if store.remote else []
    assert store.fs.list("segments") == [shards.object_name(writer[0], 1)]


def test_a_run_is_durable_at_its_put_and_in_the_signed_ledger_once_sealed(
    s3_url: str, tmp_path: Path
) -> None:
    writer = replay.Store.open(s3_url)
    result = replay.record(_chain(), _applicant(1), store=writer, at=T0)
    assert result.seq is None  # acknowledged, not yet sealed
    reader = replay.Store.open(s3_url, readonly=True)  # a reader does not seal
    with pytest.raises(NotFoundError):
        reader.entry(result.run_id)
    epoch = replay.seal(writer, _key(tmp_path))
    assert epoch is not None and epoch.size == 1
    assert reader.entry(result.run_id)["seq"] == 1
    signed = keys.key_id(keys.load_private(tmp_path / "sealer.pem").public_key())
    assert epoch.checkpoint is not None and epoch.checkpoint["key_id"] == signed
    assert verify_store(reader, signers=(signed,))["sealing"]["sealed"] == 1


def test_a_sealer_that_loses_the_race_seals_only_what_the_winner_left(s3_url: str) -> None:
    writer = replay.Store.open(s3_url)
    assert writer.remote is not None
    fs = writer.remote
    for i in range(3):
        replay.record(_chain(), _applicant(i), store=writer, at=T0 + timedelta(seconds=i))
    loser, winner = seals.Sealer(fs), seals.Sealer(fs)
    stale = seals.pending(fs, seals.NONE)  # what the loser saw before the winner sealed
    assert winner.seal() is not None
    assert not fs.put_if_absent(seals.name(1), seals.build(seals.NONE, stale)[1])
    replay.record(_chain(), _applicant(9), store=writer, at=T0 + timedelta(seconds=9))
    epoch = loser.seal()
    assert epoch is not None and epoch.number == 2 and epoch.lines.count(b"\n") == 1
    assert seals.audit(fs).runs == 4


@pytest.mark.slow
def test_eight_writers_and_two_sealers_one_killed_seal_every_acknowledged_run_once(
    s3_url: str, programs: Path, tmp_path: Path
) -> None:
    key = _key(tmp_path)
    replay.Store.open(s3_url)  # the store exists before its writers start
    env = {**os.environ, "REPLAY_SIGNING_KEY": str(key)}
    seal = [sys.executable, "-m", "replay", "--store", s3_url, "seal", "--every", "0.2"]
    sealers = [subprocess.Popen(seal, env=env, stdout=subprocess.DEVNULL) for _ in range(2)]
    writers = [
        subprocess.Popen(
            [sys.executable, str(programs / "writer.py"), s3_url, str(100 * w), "12"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(8)
    ]
    time.sleep(4)
    sealers[0].send_signal(signal.SIGKILL)  # mid-epoch or between: either is safe
    acknowledged = []
    for w in writers:
        out, _ = w.communicate(timeout=300)
        assert w.returncode == 0
        acknowledged += out.split()
    sealers[1].send_signal(signal.SIGKILL)
    for s in sealers:
        s.wait()
    store = replay.Store.open(s3_url)
    replay.seal(store, key)
    sealed = _ledger_runs(store)
    assert Counter(sealed) == Counter(acknowledged)  # each exactly once, nothing else
    assert len(acknowledged) == 96
    signer = keys.key_id(keys.load_private(key).public_key())
    report = verify_store(store, signers=(signer,))
    assert report["sealing"]["writers"] == 8
    assert (report["sealing"]["sealed"], report["sealing"]["unsealed"]) == (96, 0)


@pytest.mark.slow
def test_a_writer_killed_mid_put_loses_only_unacknowledged_runs(
    s3_url: str, programs: Path
) -> None:
    replay.Store.open(s3_url)
    proc = subprocess.Popen(
        [sys.executable, str(programs / "writer.py"), s3_url, "0", "100000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acknowledged = [proc.stdout.readline().strip() for _ in range(20)]
    proc.send_signal(signal.SIGKILL)
    acknowledged += proc.communicate()[0].split()
    store = replay.Store.open(s3_url)
    sealed = _ledger_runs(store)
    assert set(acknowledged) <= set(sealed)
    assert len(sealed) - len(acknowledged) <= 1  # at most the run whose PUT was cut
    assert store.remote is not None and seals.audit(store.remote).runs == len(sealed)
    killed = seals.latest(store.remote).heads  # no exit hook ran: it is not retired
    assert not any(head.retired for head in killed.values())
    latest = replay.record(_chain(), _applicant(5), store=store, at=T0)
    assert replay.replay(store, latest.run_id).verdict == "exact"


def _reader_of_a_rewritten_first_epoch(
    store: replay.Store, url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> replay.Store:
    """Epoch 1 of ``store`` with one digit of a manifest digest flipped (its root left as
    it was), and a new reader of it: another analyst, a cache of its own."""
    assert store.remote is not None
    body = store.remote.read(seals.name(1))
    at = body.index(b'"manifest_sha256":"sha256:') + len(b'"manifest_sha256":"sha256:')
    forged = body[:at] + (b"1" if body[at : at + 1] == b"0" else b"0") + body[at + 1 :]
    store.remote.write_atomic(seals.name(1), forged)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-analyst"))
    return replay.Store.open(url, readonly=True)


def test_a_rewritten_epoch_is_refused_by_a_new_reader(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = replay.Store.open(s3_url)
    for i in range(2):
        replay.record(_chain(), _applicant(i), store=store, at=T0 + timedelta(seconds=i))
    store.sync()
    reader = _reader_of_a_rewritten_first_epoch(store, s3_url, monkeypatch, tmp_path)
    with pytest.raises(CorruptionError, match="does not seal the entries it holds"):
        replay.find(reader, "A1")


def test_an_epoch_resealed_over_a_broken_chain_is_taken_by_a_reader_and_refused_by_verify(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A reader's mirror proves its copy is byte for byte what the epochs seal (their root);
    # as on a folder store, each entry's own hash is checked by verify and before a run is
    # loaded, not by every query.
    store = _sealed(s3_url, 2)
    assert store.remote is not None
    head, _, rest = store.remote.read(seals.name(1)).partition(b"\n")
    header = json.loads(head)
    lines, index = rest[: header["ledger_bytes"]], rest[header["ledger_bytes"] :]
    *before, last = lines.splitlines()
    forged = last.replace(json.loads(last)["hash"].encode(), b"sha256:" + b"0" * 64)
    tree = merkle.Frontier()
    tree.extend([merkle.leaf_hash(line) for line in [*before, forged]])
    header |= {
        "root": "sha256:" + tree.root().hex(),
        "last": "sha256:" + "0" * 64,
        "frontier": [h.hex() for h in tree.hashes],
    }
    body = b"".join(line + b"\n" for line in [*before, forged])
    store.remote.write_atomic(seals.name(1), canonical_json(header) + b"\n" + body + index)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-analyst"))
    reader = replay.Store.open(s3_url, readonly=True)
    (hit,) = replay.find(reader, "A1")
    with pytest.raises(CorruptionError, match=r"entry 2 .* does not match its hash"):
        replay.replay(reader, hit["run_id"])  # the history is checked before anything loads
    with pytest.raises(CorruptionError, match="entry 2 does not continue the chain"):
        seals.audit(store.remote)


def _epoch_of(body: bytes, sealed: list[bytes]) -> seals.Epoch:
    """Epoch 1 holding ledger lines ``body``, sealing the lines ``sealed`` (its root)."""
    tree = merkle.Frontier()
    tree.extend([merkle.leaf_hash(line) for line in sealed])
    last = json.loads(sealed[-1])["hash"]
    frontier = [h.hex() for h in tree.hashes]
    return seals.Epoch(1, "e1", seals.NONE.digest, {}, tree.size, last, frontier, lines=body)


def _entries(middle: list[bytes]) -> list[bytes]:
    """Ledger lines: an entry continuing the empty ledger, ``middle``, a last entry."""
    first = canonical_json({"seq": 1, "prev": seals.NONE.last, "hash": "sha256:1"})
    return [first, *middle, canonical_json({"seq": len(middle) + 2, "hash": "sha256:2"})]


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=12))
def test_a_mirror_takes_lines_whose_root_is_the_epochs_and_grows_its_tree_by_them(
    middle: list[bytes],
) -> None:
    lines = _entries(middle)
    tree = merkle.Frontier()
    seals.copy("epoch 1", seals.NONE, _epoch_of(b"".join(x + b"\n" for x in lines), lines), tree)
    assert tree.root() == merkle.root([merkle.leaf_hash(line) for line in lines])


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=12), st.data())
def test_a_mirror_refuses_lines_whose_breaks_are_not_those_sealed(
    middle: list[bytes], data: st.DataObject
) -> None:
    # The root covers every byte: a line break written otherwise (a carriage return before
    # it, or the last one missing, which would join the next epoch's first line) is refused.
    lines = _entries(middle)
    breaks = [b"\n"] * len(lines)
    at = data.draw(st.integers(0, len(lines) - 1))
    breaks[at] = data.draw(st.sampled_from([b"\r\n", b"\r"] + [b""] * (at == len(lines) - 1)))
    body = b"".join(x + end for x, end in zip(lines, breaks, strict=True))
    with pytest.raises(CorruptionError, match=r"does not seal|does not continue the chain"):
        seals.copy("epoch 1", seals.NONE, _epoch_of(body, lines), merkle.Frontier())


def test_a_refused_epoch_leaves_none_of_its_catalog_lines_in_the_mirror(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = _sealed(s3_url, 2)
    reader = _reader_of_a_rewritten_first_epoch(store, s3_url, monkeypatch, tmp_path)
    with pytest.raises(CorruptionError, match="does not seal the entries it holds"):
        reader.sync()
    assert (reader.root / "index" / "sealed.frames").read_bytes() == b""
    assert (reader.root / "ledger" / "ledger.jsonl").read_bytes() == b""


def test_seal_without_a_signing_key_fails_closed(s3_url: str) -> None:
    replay.Store.open(s3_url)
    result = CliRunner().invoke(app, ["--store", s3_url, "seal"])
    assert result.exit_code == NotFoundError.exit_code
    assert "replay keys init" in result.output
    assert "Traceback" not in result.output


def test_a_folder_store_is_not_sealed(store: replay.Store) -> None:
    with pytest.raises(UsageError, match="checkpoint"):
        store.seal()


def test_a_run_on_s3_is_exported_and_its_bundle_verifies_offline(
    s3_url: str, tmp_path: Path
) -> None:
    store = replay.Store.open(s3_url)
    ids = [
        replay.record(_chain(), _applicant(i), store=store, record_key="id", at=T0).run_id
        for i in range(2)
    ]
    key = _key(tmp_path)
    replay.seal(store, key)
    out = replay.export(store, ids[:1], tmp_path / "incident.bundle", key=key).path
    check = verify_bundle(out, keys.public_path(key).read_bytes())
    assert check.ok, check.failure


@pytest.mark.slow
def test_a_window_on_s3_is_replayed_by_a_batch_whose_results_land_in_the_bucket(
    s3_url: str,
) -> None:
    store = replay.Store.open(s3_url)
    for i in range(4):
        replay.record(_chain(), _applicant(i), store=store, at=T0 + timedelta(minutes=i))
    summary = replay.batch(store, "credit", T0, T0 + timedelta(hours=1), job="march-14", workers=1)
    assert summary.by_verdict == {"exact": 4}
    assert store.remote is not None
    chunks = [n for n in store.remote.list("replays/march-14") if n.startswith("chunk-")]
    stored = [json.loads(store.remote.read(f"replays/march-14/{n}")) for n in chunks]
    assert sorted(r["run_id"] for c in stored for r in c["results"]) == sorted(
        r["run_id"] for r in summary.rows
    )


def _another_analyst(
    url: str, runs: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> replay.Store:
    """A reader with a cache of its own of ``runs`` runs sealed in one epoch, whose ingest
    fails on any run it would index from its block rather than from its catalog line."""
    _sealed(url, runs)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-analyst"))

    def from_its_block(*args: Any) -> None:
        raise AssertionError("a run was indexed from its block")

    monkeypatch.setattr(blocks, "index", from_its_block)
    return replay.Store.open(url)


def _indexed(store: replay.Store) -> int:
    with Catalog(store).connect() as con:
        (count,) = con.execute("select count(*) from runs").fetchone() or (0,)
    return int(count)


def _as_json_lines(lines: list[bytes]) -> bytes:
    """How the version before this one sealed an epoch's catalog lines (and how this one
    seals lines it cannot read whole)."""
    return zstandard.ZstdCompressor(level=3).compress(b"".join(lines))


@pytest.mark.parametrize(
    ("packing", "head", "piece"),
    [
        (rows.packed, frames.ARROW, feed.PIECE_BYTES),
        (_as_json_lines, frames.PACKED, feed.PIECE_BYTES),
        (_as_json_lines, frames.PACKED, 64),  # unpacked about a line at a time
    ],
    ids=["an arrow table", "json lines", "json lines a piece at a time"],
)
def test_a_reader_indexes_runs_from_the_catalog_lines_their_epoch_carries(
    s3_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    packing: Callable[[list[bytes]], bytes],
    head: bytes,
    piece: int,
) -> None:
    monkeypatch.setattr(rows, "packed", packing)
    reader = _another_analyst(s3_url, 3, monkeypatch, tmp_path)
    monkeypatch.setattr(feed, "PIECE_BYTES", piece)
    assert _indexed(reader) == 3
    packed = (reader.root / "index" / "sealed.frames").read_bytes()
    assert packed.startswith(head) and b'"seq":' not in packed  # kept compressed


def test_a_reader_indexes_runs_from_an_older_sealers_epoch_and_a_newer_ones_in_turn(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    packing = rows.packed
    monkeypatch.setattr(rows, "packed", _as_json_lines)
    _sealed(s3_url, 2)
    monkeypatch.setattr(rows, "packed", packing)
    monkeypatch.setattr(feed, "CHUNK_BYTES", 1)  # a ledger line a chunk: each frame read apart
    reader = _another_analyst(s3_url, 2, monkeypatch, tmp_path)
    assert _indexed(reader) == 4
    packed = (reader.root / "index" / "sealed.frames").read_bytes()
    assert packed.startswith(frames.PACKED) and frames.ARROW in packed


def test_an_ingest_stopped_inside_an_epoch_takes_the_rest_of_its_lines_next_time(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reader = _another_analyst(s3_url, 3, monkeypatch, tmp_path)
    reader.sync()
    longest = max(map(len, (reader.root / "ledger/ledger.jsonl").read_bytes().splitlines()))
    monkeypatch.setattr(feed, "CHUNK_BYTES", longest + 1)  # a ledger line a chunk,
    monkeypatch.setattr(ingest, "COMMIT_RUNS", 1)  # committed one by one,
    bulk, calls = ingest._bulk, []

    def stopped_at_the_second(*args: Any) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a process stopped after the first
        bulk(*args)

    monkeypatch.setattr(ingest, "_bulk", stopped_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        _indexed(reader)
    with duckdb.connect(str(reader.root / "catalog.duckdb"), read_only=True) as con:
        meta = dict(con.execute("select key, value from meta").fetchall())
    assert meta["lines:sealed.frames"] == "0"  # inside the epoch's frame: read again
    monkeypatch.setattr(ingest, "_bulk", bulk)
    assert _indexed(reader) == 3


def test_a_mirrored_frame_that_does_not_unpack_leaves_its_runs_to_their_blocks(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _sealed(s3_url, 3)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-analyst"))
    reader = replay.Store.open(s3_url)
    reader.sync()
    path = reader.root / "index" / "sealed.frames"
    data = bytearray(path.read_bytes())
    start = len(frames.PACKED) + 4
    data[start + 8 : start + 24] = bytes(16)  # inside the compressed lines
    path.write_bytes(bytes(data))
    assert _indexed(reader) == 3


def _claiming_a_terabyte(lines: bytes) -> bytes:
    """``lines`` compressed in a frame whose header says it unpacks to 1 TiB."""
    out = io.BytesIO()
    writer = zstandard.ZstdCompressor().stream_writer(out, size=1 << 40, closefd=False)
    writer.write(lines)
    writer.flush(zstandard.FLUSH_BLOCK)
    return out.getvalue()


@given(
    st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=20),
    st.binary(max_size=8).filter(lambda b: b"\n" not in b),
    st.integers(1, 64),
)
def test_packed_lines_unpack_a_piece_of_whole_lines_at_a_time(
    lines: list[bytes], tail: bytes, piece: int
) -> None:
    data = b"".join(line + b"\n" for line in lines)
    pieces = list(frames.unpacked_lines(zstandard.compress(data + tail), 1 << 20, piece))
    assert b"".join(pieces) == data  # what follows the last newline is no line
    assert all(p.endswith(b"\n") for p in pieces)


def test_packed_lines_that_claim_more_than_the_limit_are_refused_unread() -> None:
    payload = _claiming_a_terabyte(b'{"seq":1}\n')
    assert zstandard.frame_content_size(payload) == 1 << 40
    with pytest.raises(ValueError, match="more than"):
        frames.unpack(payload, 1 << 20)
    with pytest.raises(ValueError, match="more than"):
        list(frames.unpacked_lines(payload, 1 << 20, 64))


_TEXT = st.text(max_size=12)
_INT = st.integers(-(2**63), 2**63 - 1)
_STEP = st.fixed_dictionaries(
    {
        "idx": st.integers(0, 2**31 - 1),
        "step": _TEXT,
        "inputs": st.lists(_TEXT, max_size=3),
        "output": _TEXT,
        "rows": _INT,
        "duration_ms": st.floats(allow_nan=False, allow_infinity=False),
        "seeds": _TEXT,
        "calls": st.integers(0, 2**31 - 1),
    }
)
_LINE = st.fixed_dictionaries(
    {
        "seq": st.integers(0, 2**62),
        "manifest_sha256": _TEXT,
        **{name: _INT if kind == pa.int64() else st.none() | _TEXT for name, kind in rows.FIELDS},
        "steps": st.lists(_STEP, max_size=3),
        "keys": st.none() | st.lists(_TEXT, max_size=4),
        "keys_in_block": st.booleans(),
    }
)


@given(st.lists(_LINE, min_size=1, max_size=8))
def test_catalog_lines_sealed_as_an_arrow_table_read_back_as_their_json_reads(
    lines: list[dict[str, Any]],
) -> None:
    data = [json.dumps(line).encode() + b"\n" for line in lines]
    packed = rows.packed(data)
    assert packed.startswith(frames.ARROW)
    table = rows.unpacked(packed[len(frames.ARROW) :])
    assert table is not None
    assert table.equals(rows.read_lines(b"".join(data), rows.LINES, strict=True))


_A_LINE = (
    b'{"seq":1,"manifest_sha256":"sha256:ab","run_id":"%s","rows":1,"steps":[],"keys":["A1"]}\n'
    % (b"r" * 37)
)


def test_lines_a_newer_writer_wrote_are_sealed_as_json_lines_for_its_readers() -> None:
    line = _A_LINE.replace(b"}\n", b',"said_more":true}\n')
    packed = rows.packed([line])
    assert not packed.startswith(frames.ARROW)
    assert frames.unpack(packed, 1 << 20) == line


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return bytes(sink.getvalue())


def test_an_arrow_table_of_a_later_version_gives_the_columns_of_this_one() -> None:
    lines = rows.read_lines(_A_LINE, rows.LINES, strict=True)
    later = lines.append_column("said_more", pa.array([True]))
    table = rows.unpacked(zstandard.compress(_arrow(later)))
    assert table is not None and table.equals(lines)


def test_an_arrow_table_of_other_types_is_not_taken_for_catalog_lines() -> None:
    lines = rows.read_lines(_A_LINE, rows.LINES, strict=True)
    at = lines.column_names.index("rows")
    other = lines.set_column(at, "rows", pa.array(["1"]))
    assert rows.unpacked(zstandard.compress(_arrow(other))) is None


def test_an_arrow_table_whose_text_reaches_past_its_bytes_is_refused() -> None:
    data = _arrow(rows.read_lines(_A_LINE, rows.LINES, strict=True))
    run_id = np.array([0, 37], np.int32).tobytes()  # the run id's offsets, in the body
    at = data.rfind(run_id)
    forged = data[:at] + np.array([0, 1 << 20], np.int32).tobytes() + data[at + 8 :]
    assert pa.ipc.open_stream(forged).read_all().num_rows == 1  # read without a complaint
    assert rows.unpacked(zstandard.compress(forged)) is None
    assert rows.unpacked(zstandard.compress(data[:-20])) is None  # cut short


def _another_run_id(line: dict[str, Any]) -> bytes:
    forged = json.dumps({**line, "run_id": "01a22c2b-0000-7000-8000-000000000000"}) + "\n"
    return zstandard.ZstdCompressor().compress(forged.encode())


def _a_terabyte(line: dict[str, Any]) -> bytes:
    return _claiming_a_terabyte(json.dumps(line).encode() + b"\n")


@pytest.mark.parametrize(
    ("forge", "refused"),
    [
        (_another_run_id, "does not continue its chain"),
        (_a_terabyte, "holds a commit frame that is not JSON"),
    ],
    ids=["a line of another run", "a frame claiming a terabyte"],
)
def test_a_rewritten_log_object_stops_the_sealer_with_a_message(
    s3_url: str, forge: Callable[[dict[str, Any]], bytes], refused: str
) -> None:
    store = replay.Store.open(s3_url)
    replay.record(_chain(), _applicant(1), store=store, at=T0)
    assert store.remote is not None
    obj = store.fs.list("segments")[0]
    (line,) = shards.read_lines(store.remote, obj)
    block = store.remote.read(f"segments/{obj}")[: line["block"]["length"]]
    store.remote.write_atomic(f"segments/{obj}", block + frames.frame(forge(line), frames.PACKED))
    with pytest.raises(CorruptionError, match=refused):
        store.seal()


def _delete(fs: S3FS, path: str) -> None:
    import boto3

    boto3.client("s3").delete_object(Bucket=fs.bucket, Key=fs.prefix + path)


def test_a_writer_whose_process_exited_is_retired_and_no_longer_listed(
    s3_url: str, programs: Path
) -> None:
    replay.Store.open(s3_url)
    done = subprocess.run(
        [sys.executable, str(programs / "writer.py"), s3_url, "0", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    fs = S3FS.of(s3_url)
    (writer,) = [n for n in fs.list(shards.WRITERS) if not n.endswith(shards.DONE)]
    assert fs.exists(f"{shards.WRITERS}/{writer}{shards.DONE}")
    epoch = seals.Sealer(fs).seal()
    assert epoch is not None and epoch.heads[writer].retired
    assert _ledger_runs(replay.Store.open(s3_url)) == done.stdout.split()
    assert not seals.pending(fs, epoch).retiring  # and later seals skip it


def _exited_writers(url: str, programs: Path, count: int) -> list[str]:
    """``count`` writer processes, each recording one run and exiting (retired); their runs."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(programs / "writer.py"), url, str(i), "1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    return [p.communicate(timeout=120)[0].strip() for p in procs]


def _seal_one(store: replay.Store, fs: S3FS, i: int) -> seals.Epoch:
    """Record one run with the live ``store`` and seal it."""
    replay.record(_chain(), _applicant(i), store=store, at=T0 + timedelta(seconds=i))
    epoch = seals.Sealer(fs).seal()
    assert epoch is not None
    return epoch


def test_a_retired_writer_is_forgotten_once_its_names_are_deleted(
    s3_url: str, programs: Path
) -> None:
    """Every epoch header used to carry every writer that ever wrote, and every seal to list
    them all: a bank's daily restarts would grow both for ever."""
    live = replay.Store.open(s3_url)
    exited = _exited_writers(s3_url, programs, 3)
    fs = S3FS.of(s3_url)
    retiring = seals.Sealer(fs).seal()
    assert retiring is not None and sum(h.retired for h in retiring.heads.values()) == 3
    carried = _seal_one(live, fs, 50)  # this seal deletes their names, after its listing
    assert sum(h.retired for h in carried.heads.values()) == 3
    assert fs.list(shards.WRITERS) == [_only_live(carried)]
    dropped = _seal_one(live, fs, 51)
    assert list(dropped.heads) == [_only_live(carried)]
    audit = seals.audit(fs)
    assert (audit.runs, audit.writers, audit.unsealed) == (5, 4, 0)
    assert replay.replay(replay.Store.open(s3_url), exited[0]).verdict == "exact"


def _only_live(epoch: seals.Epoch) -> str:
    (writer,) = [w for w, h in epoch.heads.items() if not h.retired]
    return writer


def test_a_sealer_killed_between_its_two_deletes_seals_every_run_once(
    s3_url: str, programs: Path
) -> None:
    live = replay.Store.open(s3_url)
    fs = S3FS.of(s3_url)
    (run,) = _exited_writers(s3_url, programs, 1)
    assert seals.Sealer(fs).seal() is not None
    (done,) = [n for n in fs.list(shards.WRITERS) if n.endswith(shards.DONE)]
    fs.remove(f"{shards.WRITERS}/{done}")  # the first delete, then the sealer was killed
    for i in range(3):
        epoch = _seal_one(live, fs, 60 + i)
    assert len(epoch.heads) == 1 and fs.list(shards.WRITERS) == list(epoch.heads)
    assert Counter(_ledger_runs(live))[run] == 1
    assert seals.audit(fs).runs == 4


def test_a_bucket_that_refuses_deletes_keeps_retired_heads_and_still_seals(
    s3_url: str, programs: Path
) -> None:
    class WriteOnce(S3FS):
        deletes = 0

        def remove_many(self, paths: list[str]) -> None:
            type(self).deletes += 1
            raise StoreError(f"{self.where(paths[0])}: AccessDenied", hint="")

    live = replay.Store.open(s3_url)
    _exited_writers(s3_url, programs, 2)
    fs = WriteOnce(**S3FS.of(s3_url).__dict__)
    sealer = seals.Sealer(fs)
    assert sealer.seal() is not None
    refused = []
    for i in range(2):
        replay.record(_chain(), _applicant(i), store=live, at=T0)
        epoch = sealer.seal()
        refused.append(WriteOnce.deletes)
    assert epoch is not None and sum(h.retired for h in epoch.heads.values()) == 2
    assert refused == [1, 1]  # refused once: this sealer stops asking


def _expire_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer is dormant after one empty listing, and silent past the lease at once."""
    monkeypatch.setattr(seals, "QUIET_SEALS", 1)
    monkeypatch.setattr(seals, "LEASE", 0)


def test_a_writer_killed_without_retiring_is_said_done_once_silent_past_the_lease(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container's stop (SIGTERM, unhandled) runs no exit hook: the writer never retires,
    and its head would ride in every epoch's header for ever."""
    _expire_at_once(monkeypatch)
    killed, live = replay.Store.open(s3_url), replay.Store.open(s3_url)
    run = replay.record(_chain(), _applicant(1), store=killed, at=T0).run_id  # then silent
    fs = S3FS.of(s3_url)
    sealer = seals.Sealer(fs)
    for i in range(5):  # sealed; said done; retired; its names deleted; its head dropped
        replay.record(_chain(), _applicant(10 + i), store=live, at=T0)
        epoch = sealer.seal()
    assert epoch is not None and list(epoch.heads) == fs.list(shards.WRITERS)
    assert len(epoch.heads) == 1 and Counter(_ledger_runs(live))[run] == 1
    audit = seals.audit(fs)
    assert (audit.runs, audit.writers, audit.unsealed) == (6, 2, 0)


def test_a_writer_silent_past_the_renewal_writes_on_under_a_new_identity(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shards, "RENEW", 0)
    store = replay.Store.open(s3_url)
    for i in range(2):
        replay.record(_chain(), _applicant(i), store=store, at=T0)
    names = S3FS.of(s3_url).list(shards.WRITERS)
    first, second = [n for n in names if not n.endswith(shards.DONE)]
    assert f"{first}{shards.DONE}" in names or f"{second}{shards.DONE}" in names
    assert len(names) == 3


def test_a_writer_said_done_while_silent_loses_no_run_it_records_later(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _expire_at_once(monkeypatch)
    monkeypatch.setattr(shards, "RENEW", 0)  # its silence outlasted the renewal too
    idle, live = replay.Store.open(s3_url), replay.Store.open(s3_url)
    fs = S3FS.of(s3_url)
    sealer = seals.Sealer(fs)
    first = replay.record(_chain(), _applicant(1), store=idle, at=T0).run_id
    assert sealer.seal() is not None
    assert sealer.seal() is None  # silent: said done
    replay.record(_chain(), _applicant(2), store=live, at=T0)
    retired = sealer.seal()
    assert retired is not None and sum(h.retired for h in retired.heads.values()) == 1
    second = replay.record(_chain(), _applicant(3), store=idle, at=T0).run_id
    assert sealer.seal() is not None
    runs = _ledger_runs(live)
    assert len(runs) == 3 and runs.count(first) == runs.count(second) == 1
    assert seals.audit(fs).unsealed == 0


def _forged(
    fs: S3FS, base: seals.Epoch, heads: dict[str, seals.Head], found: seals.Found | None = None
) -> None:
    """The epoch after ``base`` as a sealer that saw ``heads`` instead of base's builds it,
    sealing ``found`` (by default, what is pending past those heads)."""
    forged = replace(base, heads=heads)
    found = seals.pending(fs, forged) if found is None else found
    assert fs.put_if_absent(seals.name(base.number + 1), seals.build(forged, found)[1])


def test_the_audit_refuses_an_epoch_that_drops_a_writer_still_writing(s3_url: str) -> None:
    live = replay.Store.open(s3_url)
    fs = S3FS.of(s3_url)
    epoch = _seal_one(live, fs, 1)
    _forged(fs, epoch, {}, seals.Found([], set(), [], set()))  # the next seal reseals it
    with pytest.raises(CorruptionError, match=f"drops writer {_only_live(epoch)}"):
        seals.audit(fs)


def test_the_audit_refuses_an_epoch_that_names_a_forgotten_writer_again(
    s3_url: str, programs: Path
) -> None:
    live = replay.Store.open(s3_url)
    fs = S3FS.of(s3_url)
    _exited_writers(s3_url, programs, 1)
    retiring = seals.Sealer(fs).seal()
    assert retiring is not None
    (gone,) = [w for w, h in retiring.heads.items() if h.retired]
    _seal_one(live, fs, 1)
    dropped = _seal_one(live, fs, 2)
    again = {**dropped.heads, gone: replace(retiring.heads[gone], retired=False)}
    replay.record(_chain(), _applicant(3), store=live, at=T0)
    _forged(fs, dropped, again)
    with pytest.raises(CorruptionError, match=f"names writer {gone} again"):
        seals.audit(fs)


def test_a_store_in_a_bucket_that_does_not_exist_is_one_line_and_exit_4(s3_url: str) -> None:
    result = CliRunner().invoke(app, ["--store", "s3://no-such-bucket-here/x", "runs"])
    assert result.exit_code == NotFoundError.exit_code
    assert "no bucket 'no-such-bucket-here'" in result.output
    assert "Traceback" not in result.output


def test_a_store_without_credentials_says_which_to_set_and_exits_with_the_store_code(
    s3_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") or k.endswith("_URL")}
    nowhere = str(tmp_path / "none")  # no shared credentials, no instance metadata
    env |= {"AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_CONFIG_FILE": nowhere}
    env |= {"AWS_EC2_METADATA_DISABLED": "true"}
    run = [sys.executable, "-m", "replay", "--store", s3_url, "runs"]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == StoreError.exit_code, done.stderr
    assert "no AWS credentials" in done.stderr
    assert "AWS_ACCESS_KEY_ID" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_reader_sees_what_another_writer_recorded_within_the_sync_period(
    s3_url: str, programs: Path
) -> None:
    from replay.store.store import SYNC_EVERY

    reader = replay.Store.open(s3_url)
    assert replay.find(reader, "A7") == []  # synced now: the next read within SYNC_EVERY may not
    subprocess.run(
        [sys.executable, str(programs / "writer.py"), s3_url, "7", "1"],
        capture_output=True,
        check=True,
    )
    time.sleep(SYNC_EVERY)
    assert [r["record_key"] for r in replay.find(reader, "A7")] == ["id"]


def test_a_sealer_lists_a_long_quiet_writer_only_now_and_then(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed without saying it was done would cost every epoch a LIST forever:
    after QUIET_SEALS empty listings it is listed once in DORMANT_EVERY seals, so a run it
    records after all is sealed late, not lost; a writer's own seal lists everyone."""
    monkeypatch.setattr(seals, "QUIET_SEALS", 2)
    monkeypatch.setattr(seals, "DORMANT_EVERY", 5)
    writer, other = replay.Store.open(s3_url), replay.Store.open(s3_url)
    chain = _chain()
    replay.record(chain, pa.table({"id": ["Q1"], "x": [1.0]}), store=writer, record_key="id")
    sealer = seals.Sealer(S3FS.of(s3_url))
    assert sealer.seal() is not None
    assert [sealer.seal() for _ in range(2)] == [None, None]  # writer quiet: now dormant
    replay.record(chain, pa.table({"id": ["Q2"], "x": [2.0]}), store=writer, record_key="id")
    assert sealer.seal() is None  # seal 4 of the sealer: not listed
    assert sealer.seal() is not None  # seal 5: listed once in DORMANT_EVERY
    replay.record(chain, pa.table({"id": ["Q3"], "x": [3.0]}), store=writer, record_key="id")
    assert sealer.seal(full=True) is not None
    assert replay.find(other, "Q3")


RECORD_THEN_WAIT = """
import sys
import pyarrow as pa
import replay

store = replay.Store.open(sys.argv[1])
pipe = replay.Pipeline("p", [replay.Step("id", lambda t: t)])
print(replay.record(pipe, pa.table({"x": [1]}), store=store).run_id, flush=True)
sys.stdin.readline()  # then exit: the writer retires
"""


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """An endpoint that is down: every request answered 503 (S3's SlowDown), and counted."""

    requests = 0

    def do_PUT(self) -> None:
        type(self).requests += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_writer_exiting_while_its_endpoint_is_down_tries_to_retire_once(s3_url: str) -> None:
    """Retiring only saves sealers work: a process must not wait out retries at its exit
    (with them, each writer held its process's exit ~17 s)."""
    from s3_endpoint import moto_server, new_bucket

    with moto_server() as endpoint:  # an endpoint of its own, to take down
        url = f"s3://{new_bucket(endpoint)}/bank"
        writer = subprocess.Popen(
            [sys.executable, "-c", RECORD_THEN_WAIT, url],
            env={**os.environ, "AWS_ENDPOINT_URL": endpoint},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdout.readline().strip()
    down = http.server.HTTPServer(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])), _Unavailable)
    threading.Thread(target=down.serve_forever, daemon=True).start()
    try:
        writer.communicate("exit\n", timeout=120)
    finally:
        down.shutdown()
        down.server_close()
    assert writer.returncode == 0
    assert _Unavailable.requests == 1


def test_a_mirror_that_lost_lines_it_had_taken_takes_every_epoch_again(s3_url: str) -> None:
    store = replay.Store.open(s3_url)
    for i in range(3):
        replay.record(_chain(), _applicant(i), store=store, record_key="id", at=T0)
    taken = _ledger_runs(store)
    ledger = store.root / "ledger" / "ledger.jsonl"
    whole = ledger.read_bytes()
    ledger.write_bytes(whole[: len(whole) // 2])  # what a machine crash leaves of unsynced pages
    reader = replay.Store.open(s3_url)
    assert _ledger_runs(reader) == taken
    assert ledger.read_bytes() == whole
    assert [r["record_key"] for r in replay.find(reader, "A2")] == ["id"]


def _epochs_of_one_run(s3_url: str, n: int) -> replay.Store:
    store = replay.Store.open(s3_url)
    for i in range(n):
        replay.record(_chain(), _applicant(i), store=store, record_key="id", at=T0)
        store.sync()  # one epoch a run
    assert store.remote is not None and len(store.remote.list("seal")) == n
    return store


def test_a_reader_takes_many_epochs_read_several_at_once_in_order(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    writer = _epochs_of_one_run(s3_url, 9)
    monkeypatch.setattr(seals, "READERS", 2)  # a window of 5 epochs read ahead
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-analyst"))
    reader = replay.Store.open(s3_url, readonly=True)
    assert _ledger_runs(reader) == _ledger_runs(writer)
    assert (reader.root / "ledger" / "ledger.jsonl").read_bytes() == (
        writer.root / "ledger" / "ledger.jsonl"
    ).read_bytes()


# A writer's sealer finds the last epoch: its mirror reads the epochs before it by number.
@pytest.mark.parametrize("readonly", [True, False], ids=["a reader", "a writer"])
def test_no_epoch_past_a_missing_one_is_taken(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, readonly: bool
) -> None:
    writer = _epochs_of_one_run(s3_url, 6)
    assert writer.remote is not None
    _delete(writer.remote, seals.name(3))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-analyst"))
    reader = replay.Store.open(s3_url, readonly=readonly)
    assert _ledger_runs(reader) == _ledger_runs(writer)[:2]


def test_a_sync_with_nothing_new_sealed_still_brings_a_lagging_mirror_up_to_date(
    s3_url: str,
) -> None:
    store = _sealed(s3_url, 2)
    taken = _ledger_runs(store)
    for lost in ("ledger/epoch.json", "ledger/ledger.jsonl", "index/sealed.frames"):
        (store.root / lost).unlink()  # as if the mirror had taken nothing
    store.sync(seal=True)  # its sealer finds no epoch newer than the one it knows
    assert _ledger_runs(store) == taken


def test_a_sync_after_a_seal_lists_no_epoch_to_mirror(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sealer lists the epochs since its cache's last and reads the newest: the mirror
    takes every epoch up to it by number, without a LIST of its own (a request per query)."""
    writer = _epochs_of_one_run(s3_url, 3)
    replay.record(_chain(), _applicant(3), store=writer, record_key="id", at=T0)
    listings: list[str] = []
    names = S3FS.names

    def listing(fs: S3FS, folder: str, *args: Any, **kwargs: Any) -> Iterator[str]:
        listings.append(folder)
        return names(fs, folder, *args, **kwargs)

    monkeypatch.setattr(S3FS, "names", listing)
    reader = replay.Store.open(s3_url)  # a new process of this user: its mirror holds 3
    assert [r["record_key"] for r in replay.find(reader, "A3")] == ["id"]  # sealed 4, took it
    assert listings.count(seals.FOLDER) == 1  # the sealer's
    assert _ledger_runs(reader) == _ledger_runs(writer)


def test_a_sealer_in_a_new_process_remembers_which_writers_are_dormant(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `replay find` on S3 is a new process whose first read seals: without what the
    last sealer of this cache saw, it would LIST every writer ever killed without retiring."""
    monkeypatch.setattr(seals, "QUIET_SEALS", 2)
    monkeypatch.setattr(seals, "DORMANT_EVERY", 100)
    writer = replay.Store.open(s3_url)
    replay.record(_chain(), _applicant(1), store=writer, record_key="id", at=T0)
    listed: list[list[str]] = []
    pending = seals.pending
    monkeypatch.setattr(
        seals, "pending", lambda *a: listed.append((found := pending(*a)).listed) or found
    )
    reader = replay.Store.open(s3_url)  # this user's cache, as a process before this one had
    assert reader.seal() is not None
    assert [reader.seal(), reader.seal()] == [None, None]  # the writer quiet: now dormant
    replay.Store.open(s3_url).seal()  # a new process's sealer
    assert listed[-1] == []
    assert listed[0] != []


def test_a_sealer_in_a_new_process_lists_only_the_epochs_after_those_its_cache_saw(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store sealed every second holds 86,400 more epochs a day: a new process (each
    `replay find`) listing them all would send a LIST per 1,000 before its first answer."""
    store = replay.Store.open(s3_url)
    for i in range(3):
        replay.record(_chain(), _applicant(i), store=store, record_key="id", at=T0)
        assert store.seal() is not None
    replay.record(_chain(), _applicant(3), store=store, record_key="id", at=T0)
    listed: list[str] = []  # the epochs' names listed
    names = S3FS.names

    def listing(fs: S3FS, folder: str, *args: Any, **kwargs: Any) -> Iterator[str]:
        for name in names(fs, folder, *args, **kwargs):
            listed.extend([name] if folder == seals.FOLDER else [])
            yield name

    monkeypatch.setattr(S3FS, "names", listing)
    epoch = replay.Store.open(s3_url).seal()  # a new process's sealer
    assert epoch is not None and epoch.number == 4  # it seals after the latest epoch
    assert listed == [seals.name(3).removeprefix(f"{seals.FOLDER}/")]  # sealed since it looked


def test_a_sealer_whose_cache_saw_epochs_the_store_lacks_lists_them_all(s3_url: str) -> None:
    store = _sealed(s3_url, 1)
    memory = store.root / seals.MEMORY  # as if this cache had seen a bucket made anew since
    memory.write_text(json.dumps({**json.loads(memory.read_text()), "epoch": 99}))
    replay.record(_chain(), _applicant(2), store=store, record_key="id", at=T0)
    epoch = replay.Store.open(s3_url).seal()
    assert epoch is not None and epoch.number == 2


def test_verify_of_an_s3_store_no_checkpoint_covers_names_the_bucket(
    s3_url: str, tmp_path: Path
) -> None:
    from replay.core import trust

    trust.add(keys.public_path(_key(tmp_path)), "sealer")
    store = replay.Store.open(s3_url)
    replay.record(_chain(), _applicant(1), store=store, record_key="id", at=T0)
    result = CliRunner().invoke(app, ["--store", s3_url, "verify", "--store"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    assert f"FAIL {s3_url}/checkpoints: holds no checkpoint" in text


def test_verify_of_an_s3_store_names_a_rewritten_checkpoint_by_a_url_that_pastes_back(
    s3_url: str, tmp_path: Path
) -> None:
    from replay.core import trust

    key = _key(tmp_path)
    trust.add(keys.public_path(key), "sealer")
    store = replay.Store.open(s3_url)
    replay.record(_chain(), _applicant(1), store=store, record_key="id", at=T0)
    signed = replay.checkpoint(store, key)
    name = checkpoint.name_of(signed)
    assert store.remote is not None
    forged = {**signed.as_json(), "timestamp": "2030-01-01T00:00:00+00:00"}
    store.remote.write_atomic(name, json.dumps(forged).encode())  # its signature no longer holds
    result = CliRunner().invoke(
        app, ["--store", s3_url, "verify", "--store"], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 1, result.output
    assert f"FAIL {s3_url}/{name}: signature does not verify" in result.output


def test_a_witness_with_a_new_cache_still_refuses_a_rolled_back_head_on_s3(
    s3_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A witness run by an ephemeral job keeps its state (--state) but not its cache: it must
    # still know the last head it signed for this bucket.
    from replay.evidence import witness

    bank, by = _key(tmp_path), keys.init_key(tmp_path / "witness.pem")
    monkeypatch.setenv("REPLAY_TRUSTED_KEYS", str(keys.public_path(bank)))
    store, state = replay.Store.open(s3_url), tmp_path / "witness-state"
    for i in range(2):
        replay.record(_chain(), _applicant(i), store=store, record_key="id", at=T0)
        replay.seal(store, bank)
        witness.cosign(store, keys.load_private(by), state)
    assert store.remote is not None
    newest = max(store.remote.list("checkpoints"))
    _delete(store.remote, f"checkpoints/{newest}")  # back to the head of one run
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-new-job"))
    with pytest.raises(witness.InconsistentHeadError, match="rolled back"):
        witness.cosign(replay.Store.open(s3_url), keys.load_private(by), state)


def test_a_missing_block_on_s3_is_named_by_a_url_that_pastes_back(s3_url: str) -> None:
    store = _sealed(s3_url, 1)
    assert store.remote is not None
    run_id = _ledger_runs(store)[0]
    for name in store.remote.list("segments"):
        _delete(store.remote, f"segments/{name}")
    with pytest.raises(NotFoundError, match=f"segment {s3_url}/segments/"):
        replay.replay(replay.Store.open(s3_url), run_id)
