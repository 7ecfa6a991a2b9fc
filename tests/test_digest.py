"""Digests name content, not layout: properties of canonical JSON and table hashing."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import example, given
from hypothesis import strategies as st

from replay.core.context import _args_digest, _args_digest_v1
from replay.core.digest import canonical_json, json_digest, table_digest

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_round_trips_to_the_same_bytes(value: object) -> None:
    assert canonical_json(json.loads(canonical_json(value))) == canonical_json(value)


@given(st.dictionaries(st.text(), st.integers(), min_size=2))
def test_key_order_does_not_change_a_digest(d: dict[str, int]) -> None:
    assert json_digest(dict(reversed(list(d.items())))) == json_digest(d)


@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=50), st.integers(1, 10))
def test_table_digest_ignores_chunking_and_metadata(values: list[float], chunks: int) -> None:
    table = pa.table({"v": values})
    size = max(1, len(values) // chunks)
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=size))
    tagged = rechunked.replace_schema_metadata({"pandas": "{}"})
    assert table_digest(tagged) == table_digest(table)


@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=30), st.data())
def test_changing_any_value_changes_the_table_digest(
    values: list[int], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(values) - 1))
    changed = list(values)
    changed[i] += data.draw(st.integers(1, 1000))
    assert table_digest(pa.table({"v": changed})) != table_digest(pa.table({"v": values}))


_args = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(_args, _args)
@example(float("nan"), None)
@example(float("inf"), None)
@example(1, 1.0)
@example(True, 1)
@example(2**64, 2**64 + 1)
@example({"a": None}, {"a": float("nan")})
def test_call_arguments_tell_apart_exactly_what_older_tapes_told_apart(
    a: object, b: object
) -> None:
    """The faster arguments digest of current tapes (orjson) must neither merge arguments the
    older one (json) kept apart (NaN and null, 1 and 1.0, huge integers), nor split equal ones."""
    same_now = _args_digest((a,), {"k": b}) == _args_digest((b,), {"k": a})
    same_before = _args_digest_v1((a,), {"k": b}) == _args_digest_v1((b,), {"k": a})
    assert same_now == same_before
