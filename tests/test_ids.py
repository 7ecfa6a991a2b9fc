"""Run ids: UUIDv7 text, in the order runs were made."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from replay.core.ids import new_run_id, uuid_text


@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_an_id_is_written_as_uuid_writes_it(value: int) -> None:
    assert uuid_text(value) == str(uuid.UUID(int=value))


def test_a_run_id_is_a_version_7_uuid_of_rfc_9562() -> None:
    parsed = uuid.UUID(new_run_id())
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)


def test_run_ids_of_one_process_increase_strictly() -> None:
    ids = [new_run_id() for _ in range(10_000)]
    assert ids == sorted(set(ids))
