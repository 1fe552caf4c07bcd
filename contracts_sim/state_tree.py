"""The state commitment: a sparse Merkle tree over every row of the ledger state.

The construction is the *compact* binary sparse Merkle tree of Diem / Aptos
(``SparseMerkleTree``; docs/state-commitment.md has the why and the proof format):

    key path     ``SHA-256(KEY_DOMAIN || table || 0x00 || key)``: 256 bits, read MSB first;
                 bit ``d`` picks the child at depth ``d`` (0 = left).
    value hash   ``SHA-256(canonical JSON of the record)``.
    leaf         ``SHA-256(0x00 || key path || value hash)``.
    branch       ``SHA-256(0x01 || left || right)``.
    empty        32 zero bytes: the hash of a subtree that holds no row.

A subtree holding one row *is* that row's leaf (it is not pushed down to depth 256), and a
branch always has at least two rows below it. So the shape, and the root, follow from the set
of rows alone: deterministic and independent of insertion order. With n rows a leaf sits at
depth about log2(n), and writing k rows hashes about k·log2(n) nodes.

Nodes are immutable (``Leaf``, ``Branch``; ``None`` is the empty subtree). ``update`` copies
only the paths it changes and shares every other node, so an old root stays valid: copying a
state is copying a pointer, and two states that share history share their nodes.

``prove`` walks from the root to where a key's path ends; ``verify_proof`` checks a record
(or its absence) against a root and raises ``StateProofError`` on anything else.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, Final

from contracts_sim.exceptions import StateProofError
from protocol.hashing import canonical_json, sha256
from protocol.types import HASH_SIZE, Hash32

KEY_DOMAIN: Final = b"proofnet/state-key/v1\x00"
LEAF_PREFIX: Final = b"\x00"
BRANCH_PREFIX: Final = b"\x01"
EMPTY_HASH: Final = Hash32(bytes(HASH_SIZE))
KEY_BITS: Final = 8 * HASH_SIZE
MAX_SIBLINGS: Final = KEY_BITS
"""Two distinct key paths differ within 256 bits: the deepest branch splits on bit 255, so no
leaf is deeper than 256."""

_HEX64 = re.compile(r"[0-9a-f]{64}")


# --- hashing --------------------------------------------------------------------------------


def key_path(table: str, key: str) -> Hash32:
    """Where the row ``(table, key)`` lives in the tree (the table name holds no 0x00)."""
    return sha256(KEY_DOMAIN + table.encode() + b"\x00" + key.encode())


def value_hash(record_json: Any) -> Hash32:
    """The hash of a row's record, in the JSON form the store and the API use."""
    return sha256(canonical_json(record_json))


def leaf_hash(path: bytes, value: bytes) -> Hash32:
    return sha256(LEAF_PREFIX + path + value)


def branch_hash(left: bytes, right: bytes) -> Hash32:
    return sha256(BRANCH_PREFIX + left + right)


def _bit(bits: int, depth: int) -> int:
    return (bits >> (KEY_BITS - 1 - depth)) & 1


# --- nodes ----------------------------------------------------------------------------------


class Leaf:
    """One row: its key path (as bytes and as an int, for bit tests) and its value hash."""

    __slots__ = ("bits", "hash", "path", "value_hash")

    def __init__(self, path: bytes, value: bytes) -> None:
        self.path = path
        self.bits = int.from_bytes(path, "big")
        self.value_hash = value
        self.hash = leaf_hash(path, value)


class Branch:
    """Two subtrees holding at least two rows between them."""

    __slots__ = ("hash", "left", "right")

    def __init__(self, left: Node, right: Node) -> None:
        self.left = left
        self.right = right
        self.hash = branch_hash(node_hash(left), node_hash(right))


Node = Leaf | Branch | None
"""A subtree; ``None`` is the empty one."""


def node_hash(node: Node) -> Hash32:
    return EMPTY_HASH if node is None else Hash32(node.hash)


def make_leaf(table: str, key: str, record_json: Any) -> Leaf:
    return Leaf(key_path(table, key), value_hash(record_json))


def _join(left: Node, right: Node) -> Node:
    """The subtree over two children, in canonical form: a lone leaf (or nothing) moves up."""
    if left is None and not isinstance(right, Branch):
        return right
    if right is None and isinstance(left, Leaf):
        return left
    return Branch(left, right)


def _split(items: Sequence[Any], depth: int, bits_of: Callable[[Any], int]) -> int:
    """How many of ``items`` (sorted by path, sharing their first ``depth`` bits) go left."""
    shift = KEY_BITS - 1 - depth
    first_right = ((bits_of(items[0]) >> (shift + 1)) << (shift + 1)) | (1 << shift)
    return bisect_left(items, first_right, key=bits_of)


# --- updating -------------------------------------------------------------------------------


Change = tuple[int, Leaf | None]
"""``(key path as int, new leaf)``; ``None`` deletes the row."""
_CHANGE_BITS: Final = itemgetter(0)
_LEAF_BITS: Final = attrgetter("bits")


def update(node: Node, changes: Sequence[Change], depth: int = 0) -> Node:
    """The subtree ``node`` with ``changes`` applied (sorted by path, one per path).

    Only the nodes on the changed paths are rebuilt; every other node is shared.
    """
    if not changes:
        return node
    if not isinstance(node, Branch):
        return build(_merge(node, changes), depth)
    split = _split(changes, depth, _CHANGE_BITS)
    return _join(
        update(node.left, changes[:split], depth + 1),
        update(node.right, changes[split:], depth + 1),
    )


def _merge(leaf: Leaf | None, changes: Sequence[Change]) -> list[Leaf]:
    """The leaves of a subtree that held ``leaf`` (or nothing) once ``changes`` are made."""
    leaves = [new for _, new in changes if new is not None]
    if leaf is not None and all(bits != leaf.bits for bits, _ in changes):
        leaves.append(leaf)
        leaves.sort(key=lambda one: one.bits)
    return leaves


def build(leaves: Sequence[Leaf], depth: int = 0) -> Node:
    """The subtree holding exactly ``leaves`` (sorted by path, distinct paths)."""
    if len(leaves) <= 1:
        return leaves[0] if leaves else None
    split = _split(leaves, depth, _LEAF_BITS)
    return _join(build(leaves[:split], depth + 1), build(leaves[split:], depth + 1))


# --- proofs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateProof:
    """Where a key's path ends in the tree, and the sibling hashes on the way there.

    ``siblings[d]`` is the hash of the other child of the branch at depth ``d`` (root first).
    ``leaf`` is ``(key path, value hash)`` of the leaf found there, or ``None`` for an empty
    subtree. For a present key it is the key's own leaf; for an absent key it is empty or the
    leaf of another key whose path starts with the same ``len(siblings)`` bits.
    """

    leaf: tuple[Hash32, Hash32] | None
    siblings: tuple[Hash32, ...]

    def to_json(self) -> dict[str, Any]:
        leaf = None
        if self.leaf is not None:
            leaf = {"key_path": self.leaf[0].hex(), "value_hash": self.leaf[1].hex()}
        return {"leaf": leaf, "siblings": [s.hex() for s in self.siblings]}

    @classmethod
    def from_json(cls, data: Any) -> StateProof:
        """Parse ``to_json`` output strictly; anything else raises ``StateProofError``."""
        if not isinstance(data, Mapping) or set(data) != {"leaf", "siblings"}:
            raise StateProofError("a state proof has exactly the keys ['leaf', 'siblings']")
        siblings = data["siblings"]
        if not isinstance(siblings, list) or len(siblings) > MAX_SIBLINGS:
            raise StateProofError(f"siblings must be a list of at most {MAX_SIBLINGS} hashes")
        leaf = data["leaf"]
        parsed_leaf = None
        if leaf is not None:
            if not isinstance(leaf, Mapping) or set(leaf) != {"key_path", "value_hash"}:
                raise StateProofError("leaf must be null or {key_path, value_hash}")
            parsed_leaf = (_hash(leaf["key_path"]), _hash(leaf["value_hash"]))
        return cls(parsed_leaf, tuple(_hash(s) for s in siblings))


def _hash(value: Any) -> Hash32:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise StateProofError("a hash in a state proof is 64 lowercase hex digits")
    return Hash32(bytes.fromhex(value))


def prove(root: Node, path: bytes) -> StateProof:
    """The proof for the key at ``path``: present or absent."""
    bits = int.from_bytes(path, "big")
    node, depth, siblings = root, 0, []
    while isinstance(node, Branch):
        node, sibling = (node.right, node.left) if _bit(bits, depth) else (node.left, node.right)
        siblings.append(node_hash(sibling))
        depth += 1
    leaf = None if node is None else (Hash32(node.path), Hash32(node.value_hash))
    return StateProof(leaf, tuple(siblings))


def verify_proof(
    root: bytes, table: str, key: str, record_json: Any | None, proof: StateProof
) -> None:
    """Check that the row ``(table, key)`` holds ``record_json`` under ``root`` (``None``:
    that the row is absent). Returns nothing; raises ``StateProofError`` otherwise."""
    if len(proof.siblings) > MAX_SIBLINGS:
        raise StateProofError(f"a state proof has at most {MAX_SIBLINGS} siblings")
    path = key_path(table, key)
    _check_leaf(path, record_json, proof)
    node = EMPTY_HASH if proof.leaf is None else leaf_hash(*proof.leaf)
    bits = int.from_bytes(path, "big")
    for depth in range(len(proof.siblings) - 1, -1, -1):
        sibling = proof.siblings[depth]
        node = branch_hash(sibling, node) if _bit(bits, depth) else branch_hash(node, sibling)
    if node != root:
        raise StateProofError(f"the proof for {table}/{key} does not lead to the state root")


def _check_leaf(path: Hash32, record_json: Any | None, proof: StateProof) -> None:
    """The leaf the proof ends at must be the record's (present) or another key's (absent)."""
    if record_json is not None:
        if proof.leaf != (path, value_hash(record_json)):
            raise StateProofError("the proof's leaf is not this key's record")
        return
    if proof.leaf is None:
        return
    other = proof.leaf[0]
    if other == path:
        raise StateProofError("the proof shows the key present, not absent")
    depth = len(proof.siblings)
    mine, theirs = int.from_bytes(path, "big"), int.from_bytes(other, "big")
    if depth and (mine ^ theirs) >> (KEY_BITS - depth):  # they part before the leaf
        raise StateProofError("the proof's leaf is not on this key's path")
