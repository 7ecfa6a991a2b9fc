"""Verdicts that never lie (issue 13): a replayed output whose digest differs from the
recorded one is exact or equivalent only when a declared tolerance covers every difference
found; a difference in the schema or the encoding alone is named, and one that cannot be
found is said so."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from typer.testing import CliRunner

import replay
from replay.cli.app import app
from replay.engine.replay import ReplayReport, StepResult
from replay.engine.replay import replay as replay_run


@pytest.fixture
def store(either_store: replay.Store) -> replay.Store:
    """Every test here runs on a folder store, then on S3 (tests/conftest.py)."""
    return either_store


AT = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
VARIANT = "REPLAY_TEST_VARIANT"  # which output the step returns: recorded one, replayed another
NOTHING_FOUND = "digests differ; no column difference found (chunking/encoding?)"
BIG = 2**53


def _base() -> pa.Table:
    return pa.table(
        {
            "id": ["A1", "A2"],
            "n": pa.array([BIG, None], pa.int64()),
            "x": [0.0, 1.5],
            "d": pa.array(["a", "b"]).dictionary_encode(),
            "v": pa.array([[0.5], [1.0]], pa.list_(pa.float64())),
            "s": pa.array([{"p": 0.25, "r": "ok"}, {"p": 0.75, "r": "ok"}]),
        }
    )


def _with(name: str, column: pa.Array | pa.ChunkedArray, field: pa.Field | None = None) -> pa.Table:
    table = _base()
    i = table.column_names.index(name)
    return table.set_column(i, field or pa.field(name, column.type), column)


def _null_over(value: int) -> pa.Array:
    """[2**53, null] with ``value`` in the bytes under the null (Arrow leaves them open)."""
    data = pa.py_buffer(BIG.to_bytes(8, "little") + value.to_bytes(8, "little"))
    return pa.Array.from_buffers(pa.int64(), 2, [pa.py_buffer(b"\x01"), data])


def _dictionary_in_chunks() -> pa.ChunkedArray:
    """["a", "b"] in two chunks whose dictionaries combine into one with an unused entry."""
    return pa.chunked_array(
        [
            pa.DictionaryArray.from_arrays(pa.array([1], pa.int32()), pa.array(["z", "a"])),
            pa.DictionaryArray.from_arrays(pa.array([0], pa.int32()), pa.array(["b"])),
        ]
    )


def _twins(second: str) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array(["hi", "lo"]), pa.array(["hi", second])], names=["s", "s"]
    )


VARIANTS = {
    "base": _base,
    "order": lambda: _base().select(["x", "id", "n", "d", "v", "s"]),
    "metadata": lambda: _with(
        "x", pa.array([0.0, 1.5]), pa.field("x", pa.float64(), metadata={"unit": "EUR"})
    ),
    "nested-name": lambda: _with(
        "v", pa.array([[0.5], [1.0]], pa.list_(pa.field("element", pa.float64())))
    ),
    "nullability": lambda: _with(
        "x", pa.array([0.0, 1.5]), pa.field("x", pa.float64(), nullable=False)
    ),
    "negative-zero": lambda: _with("x", pa.array([-0.0, 1.5])),
    "int32-base": lambda: _with("n", pa.array([2**23, None], pa.int64())),
    "int32": lambda: _with("n", pa.array([2**23, None], pa.int32())),
    "plain": lambda: _with("d", pa.array(["a", "b"])),
    "chunks": lambda: _with("d", _dictionary_in_chunks()),
    "under-null": lambda: _with("n", _null_over(7)),
    "plus-one": lambda: _with("n", pa.array([BIG + 1, None], pa.int64())),
    "nan": lambda: _with("x", pa.array([1e-9, float("nan")])),
    "null": lambda: _with("x", pa.array([1e-9, None], pa.float64())),
    "vector": lambda: _with("v", pa.array([[0.5 + 1e-9], [1.0]], pa.list_(pa.float64()))),
    "struct": lambda: _with("s", pa.array([{"p": 0.25 + 1e-9, "r": "ok"}, {"p": 0.75, "r": "ok"}])),
    "twins": lambda: _twins("lo"),
    "twins-moved": lambda: _twins("hi"),
}


def shape(table: pa.Table) -> pa.Table:
    return VARIANTS[os.environ.get(VARIANT, "base")]()


def _record(
    store: replay.Store,
    monkeypatch: pytest.MonkeyPatch,
    variant: str = "base",
    tolerances: dict[str, float] | None = None,
) -> str:
    monkeypatch.setenv(VARIANT, variant)
    pipe = replay.Pipeline("verdicts", [replay.Step("shape", shape, tolerances=tolerances)])
    return replay.record(pipe, pa.table({"i": [1]}), store=store, at=AT).run_id


def _replayed(
    store: replay.Store,
    monkeypatch: pytest.MonkeyPatch,
    variant: str,
    recorded: str = "base",
    tolerances: dict[str, float] | None = None,
) -> StepResult:
    """The one step's result when it returned ``recorded`` and now returns ``variant``;
    ``tolerances`` declared by the step (as pipelines have always been able to)."""
    run_id = _record(store, monkeypatch, recorded, tolerances)
    monkeypatch.setenv(VARIANT, variant)
    report = replay_run(store, run_id)
    (step,) = report.steps
    assert step.recorded != step.replayed  # every case here changes the digest
    assert report.verdict == step.verdict
    return step


def test_reordered_columns_diverge_and_say_the_new_order(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "order")
    assert step.verdict == "diverged"
    assert step.diff.order == ("x", "id", "n", "d", "v", "s") and step.diff.columns == ()
    assert (
        step.error == "digests differ; same values, another schema: column order x, id, n, d, v, s"
    )


def test_changed_field_metadata_diverges(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "metadata")
    assert (step.verdict, step.diff.metadata) == ("diverged", ("x",))
    assert step.error == "digests differ; same values, another schema: metadata of x"


def test_a_renamed_list_item_field_diverges_as_metadata(store, monkeypatch) -> None:
    # pyarrow's types compare equal (list<item> == list<element>); the digest does not.
    step = _replayed(store, monkeypatch, "nested-name")
    assert (step.verdict, step.diff.metadata, step.diff.retyped) == ("diverged", ("v",), ())


def test_a_changed_nullability_diverges(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "nullability")
    assert (step.verdict, step.diff.nullability) == ("diverged", ("x",))
    assert step.error == "digests differ; same values, another schema: nullability of x"


def test_negative_zero_without_a_tolerance_diverges_as_a_change_of_zero(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "negative-zero")
    (column,) = step.diff.columns
    assert (column.column, column.rows_changed, column.max_abs, column.max_rel) == (
        "x",
        1,
        0.0,
        0.0,
    )
    assert step.verdict == "diverged"


def test_negative_zero_is_within_any_declared_tolerance(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "negative-zero", tolerances={"x": 1e-12})
    assert step.verdict == "equivalent"
    assert [c.column for c in step.diff.columns] == ["x"]


def test_a_type_that_compares_equal_as_values_says_so(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "int32", recorded="int32-base")
    assert (step.verdict, step.diff.retyped, step.diff.columns) == ("diverged", ("n",), ())
    assert step.error == "digests differ; same values, another schema: type of n"


def test_dictionary_against_plain_diverges_as_an_encoding(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "plain")
    assert (step.verdict, step.diff.encoding, step.diff.retyped) == ("diverged", ("d",), ())
    assert step.error == "digests differ; same values, another schema: encoding of d"


def test_chunks_that_change_the_dictionary_diverge_as_an_encoding(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "chunks")
    assert (step.verdict, step.diff.encoding, step.diff.columns) == ("diverged", ("d",), ())


def test_a_mismatch_no_column_explains_diverges_with_the_reason(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "under-null")
    assert not step.diff
    assert (step.verdict, step.error) == ("diverged", NOTHING_FOUND)


def test_the_cli_exits_1_and_prints_the_reason(store, monkeypatch) -> None:
    run_id = _record(store, monkeypatch)
    monkeypatch.setenv(VARIANT, "under-null")
    result = CliRunner().invoke(
        app, ["--store", store.url, "run", run_id], env={"COLUMNS": "200"}
    )  # wide enough not to wrap the reason
    assert result.exit_code == 1, result.output
    assert "DIVERGED" in result.output
    words = " ".join(result.output.replace("│", " ").split())
    assert NOTHING_FOUND in words


def test_structural_differences_survive_the_report_json(store, monkeypatch) -> None:
    run_id = _record(store, monkeypatch)
    monkeypatch.setenv(VARIANT, "order")
    report = replay_run(store, run_id)
    again = ReplayReport.from_json(report.as_json())
    assert again.steps[0].diff == report.steps[0].diff
    assert again.steps[0].diff.order == ("x", "id", "n", "d", "v", "s")


def test_integers_past_2_53_are_compared_exactly(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "plus-one", tolerances={"n": 0.5})
    (column,) = step.diff.columns
    assert (column.column, column.rows_changed, column.max_abs) == ("n", 1, 1.0)
    assert step.verdict == "diverged"


def test_nan_against_a_value_is_beyond_any_tolerance(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "nan", tolerances={"x": 1e-6})
    assert step.verdict == "diverged"
    assert step.diff.columns[0].max_abs == float("inf")


def test_null_against_a_value_is_beyond_any_tolerance(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "null", tolerances={"x": 1e-6})
    assert step.verdict == "diverged"
    assert step.diff.columns[0].rows == (0, 1)


def test_a_vector_column_is_compared_by_value(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "vector", tolerances={"v": 1e-6})
    assert step.verdict == "equivalent"
    assert [(c.column, c.rows_changed) for c in step.diff.columns] == [("v", 1)]


def test_a_struct_column_is_compared_field_by_field(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "struct", tolerances={"s": 1e-6})
    assert step.verdict == "equivalent"
    assert [(c.column, c.rows_changed) for c in step.diff.columns] == [("s.p", 1)]


def test_a_change_in_the_second_of_two_same_named_columns_is_named(store, monkeypatch) -> None:
    step = _replayed(store, monkeypatch, "twins-moved", recorded="twins")
    assert step.verdict == "diverged"
    assert [(c.column, c.changes) for c in step.diff.columns] == [("s#2", (("lo", "hi", 1),))]
