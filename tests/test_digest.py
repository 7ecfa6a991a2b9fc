"""Digests name content, not layout: properties of canonical JSON and table hashing."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from replay.digest import canonical_json, json_digest, table_digest

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=20)


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
def test_changing_any_value_changes_the_table_digest(values: list[int], data: st.DataObject
                                                     ) -> None:
    i = data.draw(st.integers(0, len(values) - 1))
    changed = list(values)
    changed[i] += data.draw(st.integers(1, 1000))
    assert table_digest(pa.table({"v": changed})) != table_digest(pa.table({"v": values}))
