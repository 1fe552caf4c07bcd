"""The RFC 9162 commitment tree: roots, proofs, JSON, descent helpers, and tampering."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from protocol.errors import ProofError
from protocol.merkle import (
    EMPTY_ROOT,
    CommitmentTree,
    ConsistencyProof,
    InclusionProof,
    NodeRef,
    children,
    hash_leaf,
    hash_node,
    is_leaf_node,
    range_root,
    root_node,
    root_of,
    split_point,
    verify_consistency,
    verify_inclusion,
)

# --- an independent RFC 9162 reference, written from the RFC with hashlib only ---------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, literally."""
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + d[0])
    k = _ref_k(n)
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = _ref_k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _ref_k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


ENTRIES = [_h(b"entry-%d" % i) for i in range(70)]
TREE = CommitmentTree(ENTRIES)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


# --- hashing and roots ----------------------------------------------------------------------


def test_known_answer_three_leaves() -> None:
    entries = [_h(bytes([i])) for i in range(3)]
    leaves = [_h(b"\x00" + e) for e in entries]
    expected = _h(b"\x01" + _h(b"\x01" + leaves[0] + leaves[1]) + leaves[2])
    assert expected.hex() == "d1f13800048f5909d4043fc0c152f6643280cba608b672715e56ce159a20629f"
    assert root_of(entries) == expected
    assert CommitmentTree(entries).root() == expected
    assert hash_leaf(entries[0]) == leaves[0]
    assert hash_node(leaves[0], leaves[1]) == _h(b"\x01" + leaves[0] + leaves[1])


def test_empty_and_single() -> None:
    assert root_of([]) == EMPTY_ROOT == _h(b"")
    assert CommitmentTree().root() == EMPTY_ROOT
    assert CommitmentTree().size == 0
    assert root_of(ENTRIES[:1]) == _h(b"\x00" + ENTRIES[0])


def test_roots_match_reference_for_sizes_1_to_70() -> None:
    grown = CommitmentTree()
    for n in range(1, 71):
        assert grown.append(ENTRIES[n - 1]) == n
        expected = ref_mth(ENTRIES[:n])
        assert root_of(ENTRIES[:n]) == expected
        assert grown.root() == expected  # read while growing
        assert TREE.root(n) == expected  # historical root of the full tree


def test_pymerkle_hashes_each_entry_once_with_rfc_prefixes() -> None:
    raw = InmemoryTree(algorithm="sha256")
    for i, entry in enumerate(ENTRIES[:9]):
        raw.append_entry(entry)
        assert raw.get_leaf(i + 1) == _h(b"\x00" + entry)
    assert raw.get_root() == ref_mth(ENTRIES[:9])


def test_range_root_matches_reference() -> None:
    for lo in range(0, 12):
        for hi in range(lo, 13):
            assert range_root(ENTRIES, lo, hi) == ref_mth(ENTRIES[lo:hi])
    with pytest.raises(ValueError):
        range_root(ENTRIES[:3], 2, 1)
    with pytest.raises(ValueError):
        range_root(ENTRIES[:3], 0, 4)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32, None])
def test_hashes_must_be_32_bytes(bad: Any) -> None:
    with pytest.raises(ProofError):
        hash_leaf(bad)
    with pytest.raises(ProofError):
        hash_node(bad, ENTRIES[0])
    with pytest.raises(ProofError):
        hash_node(ENTRIES[0], bad)
    with pytest.raises(ProofError):
        root_of([ENTRIES[0], bad])


# --- the tree object --------------------------------------------------------------------------


def test_tree_accessors_and_argument_errors() -> None:
    tree = CommitmentTree(ENTRIES[:5])
    assert tree.size == 5
    assert tree.entries() == ENTRIES[:5]
    assert tree.entry(4) == ENTRIES[4]
    for bad_entry in (b"short", bytearray(32), "x" * 32):
        with pytest.raises(ValueError):
            tree.append(bad_entry)  # type: ignore[arg-type]
    assert tree.size == 5  # a refused append changes nothing
    with pytest.raises(ValueError):
        tree.entry(5)
    with pytest.raises(ValueError):
        tree.root(6)
    with pytest.raises(ValueError):
        tree.inclusion_proof(5)
    with pytest.raises(ValueError):
        tree.inclusion_proof(3, 3)
    with pytest.raises(ValueError):
        tree.consistency_proof(4, 3)
    with pytest.raises(ValueError):
        tree.node_hash(NodeRef(2, 6))
    with pytest.raises(ValueError):
        CommitmentTree().inclusion_proof(0)


# --- descent helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k"), [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1000, 512), (1025, 1024)]
)
def test_split_point(n: int, k: int) -> None:
    assert split_point(n) == k


@pytest.mark.parametrize("n", [-1, 0, 1, True, 2.0])
def test_split_point_rejects(n: Any) -> None:
    with pytest.raises(ValueError):
        split_point(n)


def test_node_ref_rejects_empty_or_negative_ranges() -> None:
    for lo, hi in ((0, 0), (3, 2), (-1, 1)):
        with pytest.raises(ValueError):
            NodeRef(lo, hi)
    with pytest.raises(ValueError):
        root_node(0)
    with pytest.raises(ValueError):
        children(NodeRef(4, 5))


def test_descent_reproduces_every_node_and_leaf() -> None:
    for n in range(1, 41):
        tree = CommitmentTree(ENTRIES[:n])
        reached: list[int] = []
        stack = [root_node(n)]
        assert tree.node_hash(stack[0]) == tree.root()
        while stack:
            node = stack.pop()
            digest = tree.node_hash(node)
            assert digest == ref_mth(ENTRIES[node.lo : node.hi])
            if is_leaf_node(node):
                assert digest == hash_leaf(tree.entry(node.lo))
                reached.append(node.lo)
                continue
            left, right = children(node)
            assert (left.lo, left.hi, right.hi) == (node.lo, right.lo, node.hi)
            assert left.width & (left.width - 1) == 0  # left children are perfect subtrees
            assert hash_node(tree.node_hash(left), tree.node_hash(right)) == digest
            stack += [right, left]
        assert reached == list(range(n))


def test_node_hash_of_any_range() -> None:
    for lo in range(0, 20):
        for hi in range(lo + 1, 21):
            assert TREE.node_hash(NodeRef(lo, hi)) == ref_mth(ENTRIES[lo:hi])


# --- proofs: completeness ---------------------------------------------------------------------


def _json_round_trip(proof: Any) -> Any:
    return type(proof).from_json(json.loads(json.dumps(proof.to_json())))


def test_inclusion_proofs_verify_and_match_rfc_and_pymerkle() -> None:
    raw = InmemoryTree(algorithm="sha256")
    raw.append_entries(ENTRIES[:33])
    for n in range(1, 34):
        root = TREE.root(n)
        for i in range(n):
            proof = TREE.inclusion_proof(i, n)
            assert list(proof.path) == ref_path(i, ENTRIES[:n])
            # pymerkle's path is the leaf hash followed by the RFC path
            assert raw.prove_inclusion(i + 1, n).path == [hash_leaf(ENTRIES[i]), *proof.path]
            verify_inclusion(ENTRIES[i], i, n, root, proof)
            verify_inclusion(ENTRIES[i], i, n, root, _json_round_trip(proof))


def test_consistency_proofs_verify_and_match_rfc() -> None:
    for n in range(1, 34):
        for m in range(0, n + 1):
            proof = TREE.consistency_proof(m, n)
            expected = [] if m in (0, n) else ref_subproof(m, ENTRIES[:n], True)
            assert list(proof.path) == expected
            verify_consistency(m, TREE.root(m), n, TREE.root(n), proof)
            verify_consistency(m, TREE.root(m), n, TREE.root(n), _json_round_trip(proof))


def test_defaults_use_the_current_size() -> None:
    assert TREE.inclusion_proof(3) == TREE.inclusion_proof(3, TREE.size)
    assert TREE.consistency_proof(7) == TREE.consistency_proof(7, TREE.size)
    assert TREE.root() == TREE.root(TREE.size)


# --- proofs: soundness ------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=len(ENTRIES))


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(sizes)
    return draw(st.integers(0, n - 1)), n


@settings(max_examples=100, deadline=None)
@given(index_and_size(), st.integers(0, 255))
def test_tampered_entry_or_root_fails(case: tuple[int, int], bit: int) -> None:
    i, n = case
    proof, root = TREE.inclusion_proof(i, n), TREE.root(n)
    with pytest.raises(ProofError):
        verify_inclusion(_flip(ENTRIES[i], bit), i, n, root, proof)
    with pytest.raises(ProofError):
        verify_inclusion(ENTRIES[i], i, n, _flip(root, bit), proof)


@settings(max_examples=100, deadline=None)
@given(index_and_size(), st.data())
def test_tampered_path_fails(case: tuple[int, int], data: st.DataObject) -> None:
    i, n = case
    proof = TREE.inclusion_proof(i, n)
    root = TREE.root(n)
    path = list(proof.path)
    action = data.draw(st.sampled_from(["flip", "drop", "add", "swap"]))
    if action == "flip" and path:
        k = data.draw(st.integers(0, len(path) - 1))
        path[k] = _flip(path[k], data.draw(st.integers(0, 255)))
    elif action == "drop" and path:
        del path[data.draw(st.integers(0, len(path) - 1))]
    elif action == "swap" and len(path) >= 2:
        path[0], path[-1] = path[-1], path[0]
        if path[0] == path[-1]:
            return
    else:
        path.insert(data.draw(st.integers(0, len(path))), ENTRIES[0])
    with pytest.raises(ProofError):
        verify_inclusion(ENTRIES[i], i, n, root, InclusionProof(i, n, tuple(path)))


@settings(max_examples=100, deadline=None)
@given(index_and_size(), st.data())
def test_wrong_index_or_size_fails(case: tuple[int, int], data: st.DataObject) -> None:
    i, n = case
    proof, root = TREE.inclusion_proof(i, n), TREE.root(n)
    j = data.draw(st.integers(0, len(ENTRIES)).filter(lambda x: x != i))
    with pytest.raises(ProofError):  # the proof's own index disagrees
        verify_inclusion(ENTRIES[i], j, n, root, proof)
    with pytest.raises(ProofError):  # the proof is relabelled to claim index j
        verify_inclusion(ENTRIES[i], j, n, root, InclusionProof(j, n, proof.path))
    m = data.draw(st.integers(1, len(ENTRIES)).filter(lambda x: x != n))
    with pytest.raises(ProofError):
        verify_inclusion(ENTRIES[i], i, m, root, proof)
    if i < m:  # relabelled to size m, checked against the real root of m leaves
        with pytest.raises(ProofError):
            verify_inclusion(ENTRIES[i], i, m, TREE.root(m), InclusionProof(i, m, proof.path))


@st.composite
def old_and_new(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(sizes)
    return draw(st.integers(0, n)), n


@settings(max_examples=100, deadline=None)
@given(old_and_new(), st.data())
def test_tampered_consistency_fails(case: tuple[int, int], data: st.DataObject) -> None:
    m, n = case
    proof = TREE.consistency_proof(m, n)
    old_root, new_root = TREE.root(m), TREE.root(n)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        verify_consistency(m, _flip(old_root, bit), n, new_root, proof)
    if m > 0:  # (m == 0: the empty tree is a prefix of any tree, new root is not constrained)
        with pytest.raises(ProofError):
            verify_consistency(m, old_root, n, _flip(new_root, bit), proof)
    if proof.path:
        path = list(proof.path)
        k = data.draw(st.integers(0, len(path) - 1))
        path[k] = _flip(path[k], bit)
        with pytest.raises(ProofError):
            verify_consistency(m, old_root, n, new_root, ConsistencyProof(m, n, tuple(path)))
        with pytest.raises(ProofError):
            verify_consistency(m, old_root, n, new_root, ConsistencyProof(m, n, proof.path[:-1]))
    with pytest.raises(ProofError):
        verify_consistency(
            m, old_root, n, new_root, ConsistencyProof(m, n, (*proof.path, ENTRIES[0]))
        )
    other = data.draw(st.integers(1, len(ENTRIES)).filter(lambda x: x not in (m, n)))
    with pytest.raises(ProofError):  # sizes in the proof must equal the arguments
        verify_consistency(other, TREE.root(other), n, new_root, proof)
    if other > m > 0:  # relabelled to a new size `other`, against that tree's real root
        with pytest.raises(ProofError):
            verify_consistency(
                m, old_root, other, TREE.root(other), ConsistencyProof(m, other, proof.path)
            )


def test_consistency_edge_cases() -> None:
    root5 = TREE.root(5)
    verify_consistency(0, EMPTY_ROOT, 5, root5, ConsistencyProof(0, 5, ()))
    verify_consistency(0, EMPTY_ROOT, 0, EMPTY_ROOT, ConsistencyProof(0, 0, ()))
    verify_consistency(5, root5, 5, root5, ConsistencyProof(5, 5, ()))
    with pytest.raises(ProofError):  # the empty tree has exactly one root
        verify_consistency(0, root5, 5, root5, ConsistencyProof(0, 5, ()))
    with pytest.raises(ProofError):  # same size, different roots: a rewritten history
        verify_consistency(5, root5, 5, TREE.root(6), ConsistencyProof(5, 5, ()))
    with pytest.raises(ProofError):  # trivial cases take an empty path
        verify_consistency(5, root5, 5, root5, ConsistencyProof(5, 5, (root5,)))
    with pytest.raises(ProofError):
        verify_consistency(0, EMPTY_ROOT, 5, root5, ConsistencyProof(0, 5, (root5,)))
    with pytest.raises(ProofError):  # trees only grow
        verify_consistency(6, TREE.root(6), 5, root5, ConsistencyProof(6, 5, ()))
    with pytest.raises(ProofError):  # a non-trivial proof is never empty
        verify_consistency(3, TREE.root(3), 5, root5, ConsistencyProof(3, 5, ()))


def test_a_rewritten_history_is_not_consistent() -> None:
    forked = CommitmentTree([*ENTRIES[:6], _h(b"rewritten"), *ENTRIES[7:20]])
    for m in range(7, 20):
        with pytest.raises(ProofError):
            verify_consistency(
                m, TREE.root(m), 20, forked.root(20), forked.consistency_proof(m, 20)
            )
    with pytest.raises(ProofError):
        verify_consistency(7, TREE.root(7), 20, forked.root(20), TREE.consistency_proof(7, 20))


def test_verify_rejects_wrong_kinds_and_bad_arguments() -> None:
    proof = TREE.inclusion_proof(1, 4)
    root = TREE.root(4)
    cons = TREE.consistency_proof(2, 4)
    with pytest.raises(ProofError):
        verify_inclusion(ENTRIES[1], 1, 4, root, cons)  # type: ignore[arg-type]
    with pytest.raises(ProofError):
        verify_consistency(2, TREE.root(2), 4, root, proof)  # type: ignore[arg-type]
    bad_sizes: list[Any] = [True, -1, 1.0, 2**64]
    for bad in bad_sizes:
        with pytest.raises(ProofError):
            verify_inclusion(ENTRIES[1], bad, 4, root, proof)
        with pytest.raises(ProofError):
            verify_consistency(2, TREE.root(2), bad, root, cons)
    with pytest.raises(ProofError):
        verify_inclusion(ENTRIES[1], 1, 4, root[:31], proof)
    with pytest.raises(ProofError):  # index beyond the tree
        verify_inclusion(ENTRIES[1], 4, 4, root, InclusionProof(4, 4, proof.path))
    with pytest.raises(ProofError):
        verify_inclusion(ENTRIES[1], 1, 4, root, InclusionProof(1, 4, list(proof.path)))  # type: ignore[arg-type]
    with pytest.raises(ProofError):
        verify_inclusion(ENTRIES[1], 1, 4, root, InclusionProof(1, 4, (b"x", *proof.path[1:])))


# --- JSON -----------------------------------------------------------------------------------


def test_json_shape() -> None:
    proof = TREE.inclusion_proof(2, 5)
    assert proof.to_json() == {"index": 2, "size": 5, "path": [p.hex() for p in proof.path]}
    cons = TREE.consistency_proof(3, 5)
    assert cons.to_json() == {"old_size": 3, "new_size": 5, "path": [p.hex() for p in cons.path]}


_GOOD_INCLUSION = TREE.inclusion_proof(2, 5).to_json()
_GOOD_CONSISTENCY = TREE.consistency_proof(3, 5).to_json()
_HEX = _GOOD_INCLUSION["path"][0]


@pytest.mark.parametrize(
    "patch",
    [
        {"index": None},
        {"index": True},
        {"index": -1},
        {"index": 2.0},
        {"index": "2"},
        {"size": 2**64},
        {"path": _HEX},
        {"path": None},
        {"path": [1]},
        {"path": [_HEX.upper()]},
        {"path": ["0x" + _HEX[2:]]},
        {"path": [_HEX[:-2]]},
        {"path": [_HEX + "00"]},
        {"path": ["zz" * 32]},
        {"path": [_HEX] * 129},
        {"extra": 1},
    ],
)
def test_malformed_inclusion_json(patch: dict[str, Any]) -> None:
    with pytest.raises(ProofError):
        InclusionProof.from_json({**_GOOD_INCLUSION, **patch})


@pytest.mark.parametrize("drop", ["index", "size", "path"])
def test_inclusion_json_missing_key(drop: str) -> None:
    data = {key: value for key, value in _GOOD_INCLUSION.items() if key != drop}
    with pytest.raises(ProofError):
        InclusionProof.from_json(data)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "proof",
        {},
        {**_GOOD_CONSISTENCY, "old_size": False},
        {**_GOOD_CONSISTENCY, "new_size": "5"},
        {**_GOOD_CONSISTENCY, "path": [None]},
        _GOOD_INCLUSION,
    ],
)
def test_malformed_consistency_json(data: Any) -> None:
    with pytest.raises(ProofError):
        ConsistencyProof.from_json(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=9), inner),
    max_leaves=12,
)
proof_like = st.fixed_dictionaries(
    {},
    optional={
        "index": json_values,
        "size": json_values,
        "old_size": json_values,
        "new_size": json_values,
        "path": json_values | st.lists(st.sampled_from([_HEX, _HEX.upper(), "", "00"])),
    },
)


@settings(max_examples=100, deadline=None)
@given(st.one_of(json_values, proof_like))
def test_arbitrary_json_only_ever_raises_proof_error(data: Any) -> None:
    for cls in (InclusionProof, ConsistencyProof):
        try:
            proof = cls.from_json(data)
        except ProofError:
            continue
        assert proof.to_json() == data  # whatever parses is canonical
