"""The ledger: hash-chained, append-only, torn tails never visible, tampering caught."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.core.digest import canonical_json, sha256
from replay.errors import CorruptionError
from replay.store.fs import LocalFS
from replay.store.ledger import GENESIS, Ledger, canonical_entry, entry_hash


def _records(n: int) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        manifest = {"run_id": f"run-{i}", "n": i}
        out.append({"run_id": f"run-{i}", "manifest_sha256": sha256(canonical_json(manifest))})
    return out


def test_entries_chain_each_to_the_previous(tmp_path: Path) -> None:
    ledger = Ledger(LocalFS(tmp_path))
    entries = ledger.append(_records(3))
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev"] == GENESIS
    assert entries[1]["prev"] == entries[0]["hash"]
    assert ledger.verify() == 3


def test_two_ledger_objects_on_one_folder_continue_one_chain(tmp_path: Path) -> None:
    Ledger(LocalFS(tmp_path)).append(_records(2))
    more = Ledger(LocalFS(tmp_path)).append(_records(1))
    assert more[0]["seq"] == 3
    assert Ledger(LocalFS(tmp_path)).verify() == 3


def test_a_torn_last_line_is_invisible_and_cut_by_the_next_append(tmp_path: Path) -> None:
    ledger = Ledger(LocalFS(tmp_path))
    ledger.append(_records(2))
    with open(ledger.path, "ab") as f:
        f.write(b'{"seq":3,"half a line')
    assert [e["seq"] for _, e in Ledger(LocalFS(tmp_path)).read()] == [1, 2]
    appended = Ledger(LocalFS(tmp_path)).append(_records(1))
    assert appended[0]["seq"] == 3
    assert Ledger(LocalFS(tmp_path)).verify() == 3


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_changing_any_byte_of_the_ledger_is_detected(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("ledger")
    ledger = Ledger(LocalFS(root))
    ledger.append(_records(4))
    raw = bytearray(ledger.path.read_bytes())
    # Any byte but a line break: changing those only splits or joins lines.
    pos = data.draw(st.sampled_from([i for i, b in enumerate(raw) if b != 0x0A]))
    raw[pos] ^= data.draw(st.integers(1, 255))
    if raw[pos] == 0x0A:
        raw[pos] = 0x20 if raw[pos - 1] != 0x20 else 0x21
    ledger.path.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError):
        Ledger(LocalFS(root)).verify()


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(record=st.dictionaries(st.text(), _VALUES, max_size=4))
def test_an_entry_leaf_is_its_canonical_json_whatever_it_holds(record: dict[str, Any]) -> None:
    entry = {k: v for k, v in record.items() if k not in ("seq", "prev", "hash")}
    entry |= {"seq": 1, "prev": GENESIS}
    entry["hash"] = entry_hash(entry)
    read = orjson.loads(canonical_json(entry))  # as the ledger gives it back
    assert canonical_entry(read) == canonical_json(read)
