"""Blocks of the segment log: what goes in comes back, columns passed through are stored once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replay
from replay.catalog.check import verify_store
from replay.core.digest import sha256, table_digest
from replay.errors import CorruptionError
from replay.store import segments
from replay.store.fs import LocalFS
from replay.store.segments import Block, BlockRef, RunData, SegmentWriter, Sharing, StoredTable


@pytest.fixture(autouse=True)
def share_small_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables of a few rows, so that hypothesis runs fast, shared like big ones."""
    monkeypatch.setattr(segments, "SHARE_ROWS", 0)


def chain(ops: list[tuple[str, int]], rows: int) -> dict[str, pa.Table]:
    """An input and one table per op, each made from the one before as pipeline steps do."""
    table = pa.table(
        {
            "id": pa.array([f"A{i}" for i in range(rows)]),
            "x": pa.array([float(i) for i in range(rows)]),
            "tags": pa.array([[i] for i in range(rows)], pa.list_(pa.int64())),
        }
    )
    tables = {"input": table}
    for i, (op, arg) in enumerate(ops):
        name = table.column_names[arg % table.num_columns]
        if op == "append":
            table = table.append_column(f"c{i}", pa.array([arg + r for r in range(rows)]))
        elif op == "drop" and table.num_columns > 1:
            table = table.drop_columns([name])
        elif op == "rename":
            table = table.rename_columns([f"r{i}" if n == name else n for n in table.column_names])
        elif op == "reverse":
            table = table.select(list(reversed(range(table.num_columns))))
        elif op == "not-null":  # the same array under a stricter field
            pos = table.column_names.index(name)
            field = table.schema.field(pos).with_nullable(False).with_metadata({"unit": "x"})
            table = table.set_column(pos, field, table.column(pos))
        elif op == "duplicate":
            table = table.append_column(f"d{i}", table.column(name))
        elif op == "new-table":  # a fresh table of copies: nothing shared
            table = pa.table(
                {
                    n: pa.array(c.to_pylist(), c.type)
                    for n, c in zip(table.column_names, table.columns, strict=True)
                }
            )
        tables[f"step{i}"] = table
    return tables


PERSONAL = ("id", "x")


def stored(tables: dict[str, pa.Table], personal: tuple[str, ...] = ()) -> dict[str, StoredTable]:
    """As capture stores a run's tables: in order, sharing columns with earlier ones and
    digesting a personal column they pass along once."""
    sharing, memo = Sharing(), dict[tuple[object, ...], str]()
    return {k: StoredTable.of(t, personal, memo, sharing.split(k, t)) for k, t in tables.items()}


def append_runs(
    tmp_path: Path, blocks: list[dict[str, dict[str, pa.Table]]], personal: tuple[str, ...] = ()
) -> list[BlockRef]:
    """One block per item of ``blocks``, each holding its runs (with a tape), in one log."""
    writer = SegmentWriter(LocalFS(tmp_path))
    refs = [
        writer.write(
            [
                RunData(run_id, stored(tables, personal), {"tape": b"[]"})
                for run_id, tables in runs.items()
            ]
        )
        for runs in blocks
    ]
    writer.close()
    return refs


def write_and_read(
    tmp_path: Path, runs: dict[str, dict[str, pa.Table]], personal: tuple[str, ...] = ()
) -> Block:
    (ref,) = append_runs(tmp_path, [runs], personal)
    return Block(LocalFS(tmp_path), ref)


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["append", "drop", "rename", "reverse", "not-null", "duplicate", "new-table"]
        ),
        st.integers(0, 9),
    ),
    max_size=8,
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=OPS,
    rows=st.integers(0, 4),
    runs=st.integers(1, 3),
    personal=st.sampled_from([(), PERSONAL]),
    share_rows=st.sampled_from([0, 256]),
)
def test_every_table_reads_back_with_its_schema_values_and_digest(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ops: list[tuple[str, int]],
    rows: int,
    runs: int,
    personal: tuple[str, ...],
    share_rows: int,
) -> None:
    """With and without personal columns, sharing columns (big tables) or not (small)."""
    monkeypatch.setattr(segments, "SHARE_ROWS", share_rows)
    written = {f"run{r}": chain(ops, rows) for r in range(runs)}
    block = write_and_read(tmp_path / f"{len(personal)}-{share_rows}", written, personal)
    for run_id, tables in written.items():
        for kind, table in tables.items():
            back = block.table(run_id, kind)
            assert back.schema.equals(table.schema, check_metadata=True)
            assert back.equals(table)
            assert table_digest(back, personal) == table_digest(table, personal)


def test_a_column_a_step_passes_through_is_stored_once(tmp_path: Path) -> None:
    wide = pa.table({f"f{i}": pa.array(range(i, i + 50_000), pa.int64()) for i in range(8)})
    steps = {"input": wide, "score": wide.append_column("score", pa.array([0.5] * 50_000))}
    block = write_and_read(tmp_path, {"run": steps})
    stored = sum(len(block.part(i)) for i in range(block.part_count))
    assert stored < 1.2 * wide.nbytes  # not the 2x of storing the input's columns twice
    assert block.table("run", "score").equals(steps["score"])


def test_equal_values_in_another_array_are_stored_again(tmp_path: Path) -> None:
    """Sharing is decided by identity, never by comparing values that could differ."""
    table = pa.table({"x": pa.array(range(50_000), pa.int64())})
    copy = pa.table({"x": pa.array(range(50_000), pa.int64())})
    block = write_and_read(tmp_path, {"run": {"input": table, "copy": copy}})
    stored = sum(len(block.part(i)) for i in range(block.part_count))
    assert stored > 2 * table.nbytes - 1
    assert block.table("run", "copy").equals(copy)


def test_a_store_written_before_the_current_block_format_still_reads_and_replays(
    tmp_path: Path,
) -> None:
    """tests/assets/store-538e4b6: three toy runs recorded by commit 538e4b6, whose small
    blocks kept their index and a digest per part outside the compressed bytes."""
    shutil.copytree(Path(__file__).parent / "assets" / "store-538e4b6", tmp_path / "store")
    store = replay.Store.open(tmp_path / "store")
    assert verify_store(store)["runs"] == 3
    for _, entry in store.entries():
        run_id, manifest = entry["run_id"], entry["manifest"]
        block = store.block(entry["block"])
        for step in manifest["steps"]:
            assert table_digest(block.table(run_id, step["name"])) == step["output"]
        assert replay.replay(store, run_id).verdict == "exact"


def test_small_blocks_after_the_first_of_a_log_are_compressed_with_its_bytes(
    tmp_path: Path,
) -> None:
    blocks = [{f"run{i}": chain([("append", i), ("rename", 0)], 1)} for i in range(3)]
    first, second, third = append_runs(tmp_path, blocks)
    assert third.length < 0.6 * first.length
    read = [Block(LocalFS(tmp_path), ref) for ref in (first, second, third)]
    assert [b.dictionary for b in read] == [False, True, True]
    for block, runs in zip(read, blocks, strict=True):
        for kind, table in runs[block.run_ids()[0]].items():
            assert block.table(block.run_ids()[0], kind).equals(table)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(small=st.booleans(), where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_of_a_block_is_detected(
    tmp_path: Path, small: bool, where: float, bit: int
) -> None:
    """Small blocks: the second is compressed with the first's bytes, so a bit flipped in the
    first must also be caught when the second is read."""
    rows = 2 if small else 40_000  # compressed blocks, or blocks stored as written
    blocks = [{"run": chain([("append", i), ("rename", 0)], rows)} for i in range(2)]
    refs = append_runs(tmp_path, blocks)
    path = tmp_path / "segments" / refs[0].segment
    data = bytearray(path.read_bytes())
    data[int(where * len(data))] ^= 1 << bit
    path.write_bytes(bytes(data))
    segments._dictionary.cache_clear()  # a dictionary read before the flip must not hide it
    with pytest.raises(CorruptionError):
        for ref, runs in zip(reversed(refs), reversed(blocks), strict=True):
            block = Block(LocalFS(tmp_path), ref)
            for kind in runs["run"]:
                block.table("run", kind)
            block.blob("run", "tape")


@pytest.mark.parametrize("bit", [0, 7, 31])
def test_a_block_whose_header_length_is_damaged_is_corrupt(tmp_path: Path, bit: int) -> None:
    (ref,) = append_runs(tmp_path, [{"run": chain([], 2)}])
    path = tmp_path / "segments" / ref.segment
    data = bytearray(path.read_bytes())
    data[ref.offset + 4 + bit // 8] ^= 1 << (bit % 8)  # the u32 after the magic
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError):
        Block(LocalFS(tmp_path), ref)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, rows=st.integers(0, 4), share_rows=st.sampled_from([0, 256]))
def test_digests_shared_along_a_run_equal_digests_computed_alone(
    monkeypatch: pytest.MonkeyPatch, ops: list[tuple[str, int]], rows: int, share_rows: int
) -> None:
    """A personal column passed from table to table is hashed once per run (the memo); each
    table's digest stays the one it has on its own, as verify and replay compute it."""
    monkeypatch.setattr(segments, "SHARE_ROWS", share_rows)
    tables = chain(ops, rows)
    made = stored(tables, PERSONAL)
    for kind, table in tables.items():
        assert made[kind].digest == table_digest(table, PERSONAL)
        assert made[kind].data_digest == sha256(memoryview(made[kind].data))
