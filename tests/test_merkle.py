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


@given(
    st.binary(max_size=600),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
)
def test_leaves_and_nodes_are_hashed_as_rfc_9162_defines(
    leaf: bytes, left: bytes, right: bytes
) -> None:
    assert merkle.leaf_hash(leaf) == hashlib.sha256(b"\x00" + leaf).digest()
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


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


def _reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    # PATH(m, D[n]) of RFC 9162 §2.1.3.1, written out literally.
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_reference_path(m, leaves[:k]), _reference_root(leaves[k:])]
    return [*_reference_path(m - k, leaves[k:]), _reference_root(leaves[:k])]


def _reference_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    # SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1, written out literally.
    if m == len(leaves):
        return [] if whole else [_reference_root(leaves)]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m <= k:
        return [*_reference_subproof(m, leaves[:k], whole), _reference_root(leaves[k:])]
    return [*_reference_subproof(m - k, leaves[k:], False), _reference_root(leaves[:k])]


@given(st.integers(1, 90), st.data())
def test_a_grown_tree_proves_any_past_size_as_the_rfc_defines(n: int, data: st.DataObject) -> None:
    """Export proves a run against a checkpoint of an earlier size than the ledger has now."""
    leaves = _leaves(n)
    tree = merkle.Tree(leaves)
    size = data.draw(st.integers(1, n))
    i = data.draw(st.integers(0, size - 1))
    m = data.draw(st.integers(1, size))
    assert tree.root(size) == _reference_root(leaves[:size])
    assert tree.inclusion_proof(i, size) == _reference_path(i, leaves[:size])
    assert tree.consistency_proof(m, size) == _reference_subproof(m, leaves[:size], True)


class _Counting(merkle.Tree):
    reads = 0

    def _node(self, level: int, index: int) -> bytes:
        _Counting.reads += 1
        return super()._node(level, index)


def test_a_proof_in_a_big_tree_reads_log_n_nodes_not_n() -> None:
    n = (1 << 16) + 12_345
    tree = _Counting(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n))
    _Counting.reads = 0
    tree.inclusion_proof(n - 7)
    tree.consistency_proof(n // 3)
    tree.root()
    assert _Counting.reads <= 3 * 17 * 17  # (log2 n)^2 per proof at worst; n is 78k


@given(st.lists(st.integers(0, 40), max_size=5))
def test_a_frontier_extended_by_batches_equals_one_grown_leaf_by_leaf(batches: list[int]) -> None:
    one, batched, n = merkle.Frontier(), merkle.Frontier(), 0
    for size in batches:
        leaves = _leaves(n + size)[n:]
        for leaf in leaves:
            one.append(leaf)
        batched.extend(leaves)
        n += size
        assert (batched.size, batched.hashes) == (one.size, one.hashes)
    assert batched.root() == _reference_root(_leaves(n))
