"""A kept table form gives the very bytes and digests the general path gives, for any table."""

from __future__ import annotations

import decimal
import json

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replay.core.digest import (
    combine_parts,
    digest_parts,
    ipc_digest,
    normalize_table,
    sha256,
    table_bytes,
)
from replay.core.forms import Forms, TableForm


def _columns() -> dict[str, pa.Array]:
    n = 5
    return {
        "id": pa.array(["a", None, "c", "d", "e"]),
        "i": pa.array([1, None, 3, 4, 5]),
        "view": pa.array(
            ["x", None, "a longer string than twelve bytes", "", "y"], pa.string_view()
        ),
        "list": pa.array([[1, 2], None, [], [3], [4, 5, 6]]),
        "struct": pa.array(
            [{"x": 1, "y": "a"}, None, {"x": None, "y": "b"}] + [{"x": 2, "y": "c"}] * 2
        ),
        "map": pa.array([[("k", 1)], None, [], [("a", 2)], []], pa.map_(pa.string(), pa.int64())),
        "dec": pa.array(
            [decimal.Decimal("1.25"), None] + [decimal.Decimal("2")] * 3, pa.decimal128(9, 2)
        ),
        "null": pa.nulls(n),
        "ts": pa.array([1, None, 3, 4, 5], pa.timestamp("ns", "UTC")),
        "ree": pa.RunEndEncodedArray.from_arrays([2, n], pa.array([7, 8])),
        "uuid": pa.ExtensionArray.from_storage(
            pa.uuid(), pa.array([b"0123456789abcdef"] * n, pa.binary(16))
        ),
        "dict": pa.array(["p", "q", "p", None, "q"]).dictionary_encode(),
    }


TABLE = pa.table(_columns())
WITHOUT_DICT = TABLE.drop_columns(["dict"])
SLICES = [(0, 5), (1, 3), (2, 1), (4, 1), (0, 0)]
PERSONAL = [(), ("id",), ("id", "struct"), ("dict",), ("uuid", "i"), ("absent",)]


@pytest.mark.parametrize("base", [TABLE, WITHOUT_DICT], ids=["dictionary", "plain"])
@pytest.mark.parametrize(("offset", "length"), SLICES)
@pytest.mark.parametrize("personal", PERSONAL)
def test_a_form_gives_the_bytes_and_digests_of_the_general_path(
    base: pa.Table, offset: int, length: int, personal: tuple[str, ...]
) -> None:
    table = normalize_table(base.slice(offset, length))
    form = TableForm.of(table.schema, personal)
    assert form.stream(table).to_pybytes() == table_bytes(table).to_pybytes()
    assert form.digest(table) == ipc_digest(table)
    assert form.parts(table, None) == digest_parts(table, personal)
    memo: dict[tuple[object, ...], str] = {}
    assert form.parts(table, memo) == digest_parts(table, personal, {})
    assert form.parts(table, memo) == digest_parts(table, personal)  # from the memo


@given(st.data())
def test_a_form_of_any_columns_gives_the_bytes_and_digests_of_the_general_path(
    data: st.DataObject,
) -> None:
    names = data.draw(st.lists(st.sampled_from(TABLE.column_names), min_size=1, unique=True))
    personal = data.draw(st.lists(st.sampled_from([*names, "absent"]), unique=True))
    offset = data.draw(st.integers(0, TABLE.num_rows))
    table = normalize_table(
        TABLE.select(names).slice(offset, data.draw(st.integers(0, TABLE.num_rows - offset)))
    )
    form = TableForm.of(table.schema, personal)
    assert form.stream(table).to_pybytes() == table_bytes(table).to_pybytes()
    assert form.digest(table) == ipc_digest(table)
    memo: dict[tuple[object, ...], str] = {}
    assert form.parts(table, memo) == digest_parts(table, personal)
    later = normalize_table(table.append_column("later", pa.nulls(table.num_rows)))
    later_form = TableForm.of(later.schema, personal)  # passes the personal columns along
    assert later_form.parts(later, memo) == digest_parts(later, personal)


def test_a_table_of_personal_columns_only_takes_the_general_path() -> None:
    table = normalize_table(pa.table({"id": ["a", "b"]}))
    assert TableForm.of(table.schema, ["id"]).parts(table, {}) == digest_parts(table, ["id"])


def test_forms_keep_a_form_while_the_schema_stays_and_its_metadata_counts() -> None:
    forms = Forms(["id"])
    first = normalize_table(pa.table({"id": ["a"], "v": [1]}))
    again = normalize_table(pa.table({"id": ["b"], "v": [2]}))
    assert forms.of("step", first.schema) is forms.of("step", again.schema)
    tagged = again.cast(again.schema.set(1, again.schema.field(1).with_metadata({"unit": "eur"})))
    form = forms.of("step", tagged.schema)
    assert form.stream(tagged).to_pybytes() == table_bytes(tagged).to_pybytes()
    assert form is not forms.of("step", again.schema)  # and back: the metadata is gone again


def test_extension_types_are_not_kept() -> None:
    """Their authors say when two are equal; a schema with one gets its form afresh."""
    table = normalize_table(TABLE.select(["uuid"]))
    assert not TableForm.of(table.schema, ()).fits(table.schema)


@given(
    st.text(),
    st.dictionaries(st.text(), st.text(), max_size=4),
    st.dictionaries(
        st.text(),
        st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        max_size=3,
    ),
)
def test_combined_parts_digest_canonical_json_whatever_the_text(
    rest: str, personal: dict[str, str], other: dict[str, object]
) -> None:
    for parts in ({"columns": "c", "rest": rest, "personal": personal}, {"personal": other}):
        canonical = json.dumps(
            {"format": "redactable-1", **parts},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        assert combine_parts(parts) == sha256(canonical.encode())
