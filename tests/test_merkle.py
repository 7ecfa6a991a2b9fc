"""The ledger's Merkle tree: RFC 9162 roots, inclusion and consistency proofs."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from replay.core import merkle


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"entry {i}".encode()) for i in range(n)]


def _reference_root(leaves: list[bytes]) -> bytes:
    # RFC 9162's recursive definition, written out literally.
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def test_the_rfc_6962_test_vector_root_of_the_empty_tree() -> None:
    assert (
        merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_leaves_and_nodes_are_hashed_with_distinct_prefixes() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)


@given(st.integers(0, 70))
def test_the_root_matches_the_recursive_definition(n: int) -> None:
    assert merkle.root(_leaves(n)) == _reference_root(_leaves(n))


@given(st.integers(1, 70), st.data())
def test_every_leaf_has_a_verifying_inclusion_proof(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(i, leaves)
    assert merkle.verify_inclusion(i, n, leaves[i], proof, merkle.root(leaves))


@given(st.integers(2, 70), st.data())
def test_an_inclusion_proof_fails_for_another_leaf_or_index(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i))
    proof = merkle.inclusion_proof(i, leaves)
    top = merkle.root(leaves)
    assert not merkle.verify_inclusion(i, n, leaves[j], proof, top)
    assert not merkle.verify_inclusion(j, n, leaves[i], proof, top)


@given(st.integers(1, 70), st.data())
def test_a_grown_ledger_is_consistent_with_its_past(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    m = data.draw(st.integers(1, n))
    proof = merkle.consistency_proof(m, leaves)
    assert merkle.verify_consistency(m, n, merkle.root(leaves[:m]), merkle.root(leaves), proof)


@given(st.integers(2, 70), st.data())
def test_a_rewritten_past_is_not_consistent(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    m = data.draw(st.integers(1, n - 1))
    k = data.draw(st.integers(0, m - 1))
    forged = [*leaves[:k], merkle.leaf_hash(b"forged"), *leaves[k + 1 :]]
    proof = merkle.consistency_proof(m, forged)
    assert not merkle.verify_consistency(m, n, merkle.root(leaves[:m]), merkle.root(forged), proof)
