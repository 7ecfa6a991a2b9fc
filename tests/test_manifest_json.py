"""A manifest ``record`` made is written by msgspec, into the bytes ``canonical_json`` gives.

The manifest's digest is recorded and golden stores must replay exactly, so the fast encoder
may never write another byte: these tests hold it to ``canonical_json`` over any text, any
integer and any tags, and check that a manifest it cannot write alike takes the general way.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from replay.core import manifest as records
from replay.core.digest import canonical_json
from replay.core.manifest import Failure, InputRecord, Manifest, StepRecord, manifest_json, plain

text = st.text(st.characters(blacklist_categories=["Cs"]))  # a lone surrogate is no UTF-8
digest = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h)
parts = st.dictionaries(text, digest).map(lambda p: {"personal": p})


@st.composite
def manifests(draw: st.DrawFn, tags: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    steps = draw(
        st.lists(
            st.builds(
                StepRecord,
                text,
                st.lists(digest),
                st.none() | digest,
                st.none() | st.integers(0, 2**40),
                st.integers(0, 2**63),
                st.dictionaries(text, st.integers(0, 2**64 - 1)),
                st.integers(0, 1000),
                parts,
            ),
            max_size=4,
        )
    )
    manifest = Manifest(
        records.MANIFEST_FORMAT,
        draw(text),
        draw(text),
        draw(digest),
        draw(st.sampled_from(["ok", "failed"])),
        draw(st.integers(0, 2**63)),
        draw(st.integers(0, 2**63)),
        draw(text),
        draw(st.none() | text),
        InputRecord(draw(digest), draw(st.integers(1, 2**40)), draw(parts)),
        draw(digest),
        steps,
        draw(tags),
        kind=draw(text),
        tape=draw(digest),
        error=Failure(draw(st.none() | text), draw(text)),
    )
    return plain(manifest)


@given(manifests(st.dictionaries(text, text)))
def test_a_recorded_manifest_is_written_byte_for_byte_as_canonical_json(
    manifest: dict[str, Any],
) -> None:
    assert manifest_json(manifest) == canonical_json(manifest)


@given(
    manifests(
        st.dictionaries(
            text, st.floats(allow_nan=False, allow_infinity=False) | st.integers() | text
        )
    )
)
def test_tags_of_any_json_type_are_written_as_canonical_json(manifest: dict[str, Any]) -> None:
    assert manifest_json(manifest) == canonical_json(manifest)


def test_a_float_tag_takes_the_general_way() -> None:
    manifest = {**plain(_minimal()), "tags": {"threshold": 1e-05}}
    assert manifest_json(manifest) == canonical_json(manifest)
    assert b'"threshold":1e-05' in manifest_json(manifest)


def _minimal() -> Manifest:
    return Manifest(
        records.MANIFEST_FORMAT,
        "r",
        "p",
        "v",
        "ok",
        0,
        1,
        "c",
        None,
        InputRecord("d", 1),
        "e",
        [],
        {},
    )


json_of_text_and_ints = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda inner: st.lists(inner) | st.dictionaries(text, inner),
)


@given(json_of_text_and_ints)
def test_a_block_index_of_text_and_integers_is_written_as_canonical_json(value: Any) -> None:
    # what replay.store.segments relies on for its blocks' index and header
    assert msgspec.json.Encoder(order="sorted").encode(value) == canonical_json(value)
