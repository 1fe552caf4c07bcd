"""The trajectory commitment: an RFC 9162 Merkle tree over state hashes
(docs/protocol.md, "Commitments" and "The dispute game").

A solver commits to its training trajectory as an RFC 9162 (Certificate Transparency v2) Merkle
tree. The ledger stores only (size, root); everything else is proved against that pair.

Glossary
    entry    the 32-byte data of one leaf: the state hash at step j·C (leaf 0 is the initial
             state, which anyone can recompute from the spec).
    leaf     the Merkle leaf *hash* of an entry: ``SHA-256(0x00 || entry)``.
    node     a subtree of the tree of ``size`` leaves, named by the leaf range ``[lo, hi)`` it
             covers (``NodeRef``); its hash is ``SHA-256(0x01 || left || right)``, or the leaf
             hash when it covers one leaf. Children split at ``lo + split_point(hi - lo)``.
    root     the hash of the node ``[0, size)``; the empty tree's root is ``SHA-256(b"")``.
    descent  the first phase of a dispute: starting at the root, the solver reveals the two child
             hashes of the current node (``hash_node`` of them must equal it) and the challenger
             names the child it disagrees with, until a single leaf remains.

Why it is built this way
    * The 0x00 / 0x01 prefixes make a leaf hash and a node hash come from disjoint inputs, so an
      interior node can never be passed off as a leaf (or back) during a descent.
    * Every hash this module accepts from outside must be exactly 32 bytes: with fixed-width
      children, ``left || right`` has one parse, so a node hash pins its two children.
    * The tree is stored by pymerkle's ``InmemoryTree`` (SHA-256, security prefixes on, entries
      hashed once, as is: leaf = ``SHA-256(0x00 || entry)``), which gives roots and the hashes
      of perfect subtrees. Proofs use the RFC 9162 wire form (§2.1.3, §2.1.4) rather than
      pymerkle's: an RFC proof is only a list of sibling hashes, its shape follows from the
      sizes, and pymerkle's consistency layout differs from the RFC's (it repeats the old root
      and descends right when the old size is a split point). Verification is the RFC's own
      algorithm, written out below, independent of the code that generates proofs — the tests
      check one against the other.

Errors: a ``ValueError`` means the caller passed impossible arguments (a bug); a ``ProofError``
means evidence — a hash, a proof, a claimed root — is malformed or failed to verify.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymerkle import InmemoryTree

from protocol.errors import ProofError
from protocol.hashing import sha256
from protocol.types import HASH_SIZE, Hash32

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = sha256(b"")
"""The root of the tree with no leaves (RFC 9162: the hash of the empty string)."""

MAX_TREE_SIZE = 2**64 - 1
"""Tree sizes and leaf indices are uint64 in RFC 9162."""
MAX_PATH = 2 * 64
"""No well-formed proof for a tree of at most ``MAX_TREE_SIZE`` leaves is longer than this."""

_HEX_DIGITS = frozenset("0123456789abcdef")


# --- hashing --------------------------------------------------------------------------------


def _require_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes")
    return value


def hash_leaf(entry: bytes) -> Hash32:
    """The leaf hash of an entry: ``SHA-256(0x00 || entry)``. The entry must be 32 bytes."""
    return sha256(LEAF_PREFIX + _require_hash(entry, "leaf entry"))


def hash_node(left: bytes, right: bytes) -> Hash32:
    """An interior node's hash: ``SHA-256(0x01 || left || right)``; children are 32 bytes."""
    return sha256(
        NODE_PREFIX + _require_hash(left, "left child") + _require_hash(right, "right child")
    )


def split_point(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``): the left child's width."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"split_point needs an integer n >= 2, got {n!r}")
    return 1 << ((n - 1).bit_length() - 1)


def _mth(entries: Sequence[bytes], lo: int, hi: int) -> Hash32:
    # RFC 9162 §2.1.1, on the half-open range [lo, hi) with hi - lo >= 1.
    if hi - lo == 1:
        return hash_leaf(entries[lo])
    mid = lo + split_point(hi - lo)
    return hash_node(_mth(entries, lo, mid), _mth(entries, mid, hi))


def range_root(entries: Sequence[bytes], lo: int, hi: int) -> Hash32:
    """MTH(entries[lo:hi]), computed directly from the entries (pure Python, no pymerkle)."""
    if not 0 <= lo <= hi <= len(entries):
        raise ValueError(f"range [{lo}, {hi}) is not within 0..{len(entries)}")
    if lo == hi:
        return EMPTY_ROOT
    return _mth(entries, lo, hi)


def root_of(entries: Sequence[bytes]) -> Hash32:
    """The RFC 9162 Merkle tree hash of a list of entries; ``SHA-256(b"")`` when empty."""
    return range_root(entries, 0, len(entries))


# --- descent helpers ------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRef:
    """A node covering leaves ``[lo, hi)``; its hash is ``MTH(entries[lo:hi])``."""

    lo: int
    hi: int

    def __post_init__(self) -> None:
        for name, value in (("lo", self.lo), ("hi", self.hi)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"NodeRef.{name} must be an int, got {value!r}")
        if not 0 <= self.lo < self.hi:
            raise ValueError(f"NodeRef needs 0 <= lo < hi, got [{self.lo}, {self.hi})")

    @property
    def width(self) -> int:
        """The number of leaves under this node."""
        return self.hi - self.lo


def root_node(size: int) -> NodeRef:
    """The root of the tree of ``size >= 1`` leaves."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"a tree with a root node needs size >= 1, got {size!r}")
    return NodeRef(0, size)


def is_leaf_node(node: NodeRef) -> bool:
    return node.hi - node.lo == 1


def children(node: NodeRef) -> tuple[NodeRef, NodeRef]:
    """The left and right children of an interior node (the left one is a perfect subtree)."""
    if is_leaf_node(node):
        raise ValueError(f"node [{node.lo}, {node.hi}) is a leaf and has no children")
    mid = node.lo + split_point(node.width)
    return NodeRef(node.lo, mid), NodeRef(mid, node.hi)


def _inclusion_siblings(index: int, size: int) -> list[NodeRef]:
    # The siblings met when descending from the root to leaf `index`, listed bottom-up.
    siblings: list[NodeRef] = []
    node = root_node(size)
    while not is_leaf_node(node):
        left, right = children(node)
        node, sibling = (left, right) if index < left.hi else (right, left)
        siblings.append(sibling)
    siblings.reverse()
    return siblings


def _consistency_nodes(old_size: int, node: NodeRef, old_is_complete_node: bool) -> list[NodeRef]:
    # RFC 9162 §2.1.4.1 SUBPROOF(m, D[lo:hi], b), with m counted from node.lo.
    if old_size == node.width:
        return [] if old_is_complete_node else [node]
    left, right = children(node)
    if old_size <= left.width:
        return [*_consistency_nodes(old_size, left, old_is_complete_node), right]
    return [*_consistency_nodes(old_size - left.width, right, False), left]


# --- proofs ---------------------------------------------------------------------------------


def _check_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofError(f"{what} must be an integer")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise ProofError(f"{what} is out of range")
    return value


def _check_path(path: object) -> tuple[bytes, ...]:
    if not isinstance(path, tuple) or len(path) > MAX_PATH:
        raise ProofError(f"proof path must be a tuple of at most {MAX_PATH} hashes")
    for element in path:
        _require_hash(element, "proof path element")
    return path


def _parse_hex_hash(value: object) -> bytes:
    # Strict: exactly 64 lowercase hex digits, so a proof has exactly one JSON spelling.
    if not isinstance(value, str) or len(value) != 2 * HASH_SIZE or not set(value) <= _HEX_DIGITS:
        raise ProofError("proof path element must be 64 lowercase hex digits")
    return bytes.fromhex(value)


def _parse_json(data: object, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ProofError(f"{what} must be a JSON object")
    if set(data) != {*keys, "path"}:
        raise ProofError(f"{what} must have exactly the keys {sorted({*keys, 'path'})}")
    path = data["path"]
    if not isinstance(path, list) or len(path) > MAX_PATH:
        raise ProofError(f"{what}.path must be a list of at most {MAX_PATH} hex hashes")
    parsed: dict[str, Any] = {key: _check_size(data[key], f"{what}.{key}") for key in keys}
    parsed["path"] = tuple(_parse_hex_hash(element) for element in path)
    return parsed


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 inclusion proof: the sibling hashes from leaf ``index`` up to the root."""

    index: int
    size: int
    path: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "size": self.size, "path": [p.hex() for p in self.path]}

    @classmethod
    def from_json(cls, data: object) -> InclusionProof:
        """Parse ``to_json`` output; anything malformed raises ``ProofError``."""
        fields = _parse_json(data, ("index", "size"), "inclusion proof")
        return cls(fields["index"], fields["size"], fields["path"])


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 consistency proof that the tree of ``old_size`` is a prefix of ``new_size``.

    Empty when ``old_size == 0`` (the empty tree is a prefix of every tree) or
    ``old_size == new_size`` (a tree is consistent only with itself).
    """

    old_size: int
    new_size: int
    path: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "path": [p.hex() for p in self.path],
        }

    @classmethod
    def from_json(cls, data: object) -> ConsistencyProof:
        """Parse ``to_json`` output; anything malformed raises ``ProofError``."""
        fields = _parse_json(data, ("old_size", "new_size"), "consistency proof")
        return cls(fields["old_size"], fields["new_size"], fields["path"])


def verify_inclusion(
    entry: bytes, index: int, size: int, root: bytes, proof: InclusionProof
) -> None:
    """Check that ``entry`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Returns nothing on success; raises ``ProofError`` otherwise (RFC 9162 §2.1.3.2).
    """
    if not isinstance(proof, InclusionProof):
        raise ProofError("not an inclusion proof")
    _require_hash(root, "root")
    index = _check_size(index, "index")
    size = _check_size(size, "size")
    # INVARIANT: the proof is for the position and tree the caller asks about.
    if proof.index != index or proof.size != size:
        raise ProofError(
            f"proof is for leaf {proof.index} of {proof.size}, not leaf {index} of {size}"
        )
    if inclusion_root(entry, proof) != root:
        raise ProofError(f"leaf {index} does not lead to the claimed root of a {size}-leaf tree")


def inclusion_root(entry: bytes, proof: InclusionProof) -> Hash32:
    """The root that ``entry`` as leaf ``proof.index`` of ``proof.size`` leaves leads to along
    ``proof.path`` (RFC 9162 §2.1.3.2, without the final comparison). Raises ``ProofError`` for
    a path of the wrong length or an index outside the tree."""
    leaf = hash_leaf(entry)
    index = _check_size(proof.index, "index")
    size = _check_size(proof.size, "size")
    path = _check_path(proof.path)
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")

    # fn is the node's index on its level, sn the last index on that level.
    fn, sn, r = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise ProofError("inclusion path is too long")
        if fn & 1 or fn == sn:
            r = hash_node(sibling, r)
            # A last node with no right sibling moves up unchanged until it is a right child.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hash_node(r, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion path is too short")
    return r


def inclusion_path(entries: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """The RFC 9162 inclusion path of leaf ``index`` among ``entries`` (pure Python: each
    sibling's hash from the entries under it, so O(len(entries)) hashes per path)."""
    siblings = _inclusion_siblings(index, len(entries))
    return tuple(range_root(entries, node.lo, node.hi) for node in siblings)


def verify_consistency(
    old_size: int, old_root: bytes, new_size: int, new_root: bytes, proof: ConsistencyProof
) -> None:
    """Check that the tree (old_size, old_root) is a prefix of the tree (new_size, new_root).

    Edge cases: ``old_size == 0`` needs an empty proof and ``old_root == EMPTY_ROOT`` (any tree
    extends the empty one); ``old_size == new_size`` needs an empty proof and equal roots.
    Returns nothing on success; raises ``ProofError`` otherwise (RFC 9162 §2.1.4.2).
    """
    if not isinstance(proof, ConsistencyProof):
        raise ProofError("not a consistency proof")
    _require_hash(old_root, "old root")
    _require_hash(new_root, "new root")
    old_size = _check_size(old_size, "old size")
    new_size = _check_size(new_size, "new size")
    path = _check_path(proof.path)
    # INVARIANT: the proof is between the two trees the caller asks about.
    if proof.old_size != old_size or proof.new_size != new_size:
        raise ProofError(
            f"proof is from size {proof.old_size} to {proof.new_size}, "
            f"not from {old_size} to {new_size}"
        )
    if old_size > new_size:
        raise ProofError(f"a tree cannot shrink from {old_size} to {new_size} leaves")
    if old_size == 0 or old_size == new_size:
        if path:
            raise ProofError("consistency path must be empty")
        expected = EMPTY_ROOT if old_size == 0 else new_root
        if old_root != expected:
            raise ProofError(f"old root does not match the tree of {old_size} leaves")
        return
    if not path:
        raise ProofError("consistency path is empty")

    # When the old tree is a complete node of the new one, the RFC leaves its root out.
    if old_size & (old_size - 1) == 0:
        path = (old_root, *path)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency path is too long")
        if fn & 1 or fn == sn:
            fr, sr = hash_node(c, fr), hash_node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = hash_node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency path is too short")
    if fr != old_root:
        raise ProofError(f"proof does not lead to the claimed root of {old_size} leaves")
    if sr != new_root:
        raise ProofError(f"proof does not lead to the claimed root of {new_size} leaves")


# --- the tree -------------------------------------------------------------------------------


class CommitmentTree:
    """An append-only commitment tree of 32-byte entries, stored by pymerkle's InmemoryTree.

    Indices are 0-based here (pymerkle counts leaves from 1).
    """

    def __init__(self, entries: Iterable[bytes] = ()) -> None:
        self._tree = InmemoryTree(algorithm="sha256")
        for entry in entries:
            self.append(entry)

    @property
    def size(self) -> int:
        return int(self._tree.get_size())

    def append(self, entry: bytes) -> int:
        """Append one 32-byte entry; return the new size."""
        if not isinstance(entry, bytes) or len(entry) != HASH_SIZE:
            raise ValueError(f"an entry must be {HASH_SIZE} bytes")
        return int(self._tree.append_entry(bytes(entry)))

    def entry(self, index: int) -> bytes:
        self._check_index(index, self.size)
        return bytes(self._tree.leaves[index].data)

    def entries(self) -> list[bytes]:
        return [bytes(leaf.data) for leaf in self._tree.leaves]

    def root(self, size: int | None = None) -> Hash32:
        """The root of the tree of the first ``size`` leaves (default: all of them)."""
        size = self._resolve_size(size)
        return Hash32(bytes(self._tree.get_root(size)))

    def node_hash(self, node: NodeRef) -> Hash32:
        """``MTH(entries[node.lo:node.hi])``, the hash of that node in any tree containing it."""
        if node.hi > self.size:
            raise ValueError(f"node [{node.lo}, {node.hi}) is beyond tree size {self.size}")
        width = node.width
        if width & (width - 1) == 0 and node.lo % width == 0:
            return self._perfect_subtree_hash(node.lo, width.bit_length() - 1)
        # Not a perfect subtree (so width >= 3): combine the children, as in the tree itself.
        left, right = children(node)
        return hash_node(self.node_hash(left), self.node_hash(right))

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        size = self._resolve_size(size)
        self._check_index(index, size)
        path = tuple(self.node_hash(node) for node in _inclusion_siblings(index, size))
        return InclusionProof(index=index, size=size, path=path)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        new_size = self._resolve_size(new_size)
        if isinstance(old_size, bool) or not isinstance(old_size, int):
            raise ValueError(f"old size must be an int, got {old_size!r}")
        if not 0 <= old_size <= new_size:
            raise ValueError(f"old size {old_size} is not within 0..{new_size}")
        if old_size in (0, new_size):
            return ConsistencyProof(old_size=old_size, new_size=new_size, path=())
        nodes = _consistency_nodes(old_size, root_node(new_size), True)
        path = tuple(self.node_hash(node) for node in nodes)
        return ConsistencyProof(old_size=old_size, new_size=new_size, path=path)

    def _perfect_subtree_hash(self, lo: int, height: int) -> Hash32:
        # An aligned perfect subtree [lo, lo + 2**height) inside the tree is a pymerkle node:
        # the ancestor `height` levels above leaf lo.
        node = self._tree.leaves[lo]
        for _ in range(height):
            node = node.parent
        return Hash32(bytes(node.digest))

    def _resolve_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= self.size:
            raise ValueError(f"size {size!r} is not within 0..{self.size}")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
            raise ValueError(f"leaf index {index!r} is not within 0..{size - 1}")
