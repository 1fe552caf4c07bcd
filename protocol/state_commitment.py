"""The state commitment: a Merkle tree over a training state's tensors and their chunks.

A checkpoint's hash (the Merkle leaf entry of the trajectory, ``protocol.merkle``) is not the
hash of its blob but the root of a two-level RFC 9162 tree over the state it encodes::

    chunk        CHUNK_BYTES (4 KiB: 512 int64 values) of one tensor's little-endian data, in
                 row-major order; the last chunk of a tensor may be shorter
    chunk entry  SHA-256(chunk)
    data root    MTH(chunk entries of the tensor)          (EMPTY_ROOT for a zero-size tensor)
    tensor entry SHA-256(TENSOR_TAG || name || dtype || shape || data root), every field
                 length-prefixed as in the blob (``protocol.hashing.encode_tensors``)
    state root   SHA-256(STATE_TAG || u32 tensor count || MTH(tensor entries, by name))

Why a tree and not ``SHA-256(blob)``
    Any piece of a state — one tensor, one chunk, the values of one row — can be proved against
    the state root with a path of ``O(log n)`` hashes (``ChunkProof``), so a party can show a
    referee the few values a decision needs without posting the whole state, and a fetch can be
    verified piece by piece. The cost of committing is the same hashing as before (every byte
    once) plus one interior node per two chunks.

Domain separation: chunk entries hash raw bytes, tensor entries start with ``TENSOR_TAG`` and
the state root with ``STATE_TAG``; leaf and node hashes inside each tree carry RFC 9162's 0x00 /
0x01 prefixes (``protocol.merkle``). A tensor entry binds its name, dtype and shape, so the same
data under another name or shape has another entry; the state root binds the tensor count.

The blob itself is unchanged (``protocol.hashing``): its canonical bytes decode to exactly one
list of records, so ``blob_root`` is a function of the blob, and a blob is still addressed by
(the root computed from) its own content.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256 as _sha256
from typing import Any

from protocol.errors import EncodingError, ProofError
from protocol.hashing import TensorLayout, TensorRecord, decode_tensors, sha256
from protocol.merkle import EMPTY_ROOT, InclusionProof, inclusion_root
from protocol.types import Hash32

CHUNK_BYTES = 4096
"""Bytes per chunk: 512 int64 values. Small enough that a proved row of a wide layer carries
little besides the row, large enough that the tree adds one node per 4 KiB hashed."""
TENSOR_TAG = b"proofnet/tensor/v1\x00"
STATE_TAG = b"proofnet/state/v2\x00"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def chunk_count(nbytes: int) -> int:
    """The number of chunks of a tensor of ``nbytes`` bytes (0 for an empty tensor)."""
    return -(-nbytes // CHUNK_BYTES)


def chunk_entries(data: bytes | memoryview) -> list[Hash32]:
    """The chunk entries of one tensor's data, in order."""
    view = memoryview(data)
    size = CHUNK_BYTES
    return [Hash32(_sha256(view[i : i + size]).digest()) for i in range(0, len(view), size)]


def data_root(data: bytes | memoryview) -> Hash32:
    """MTH of a tensor's chunk entries."""
    return merkle_root(chunk_entries(data))


def merkle_root(entries: Sequence[bytes]) -> Hash32:
    """``protocol.merkle.root_of(entries)``, built level by level for speed: leaves paired left
    to right, an unpaired last node carried up unchanged — the same tree as RFC 9162's
    recursive split (the left subtree is always the largest power of two), with no checks on
    entries this module computed itself (tests compare the two on every size up to 70)."""
    if not entries:
        return EMPTY_ROOT
    level = [_sha256(b"\x00" + entry).digest() for entry in entries]
    while len(level) > 1:
        paired = [
            _sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return Hash32(level[0])


def tensor_header(name: str, dtype: str, shape: Sequence[int]) -> bytes:
    """The fields a tensor entry binds besides its data, encoded as in the blob."""
    raw_name, raw_dtype = name.encode("ascii"), dtype.encode("ascii")
    parts = [_U64.pack(len(raw_name)), raw_name, _U64.pack(len(raw_dtype)), raw_dtype]
    parts.append(_U32.pack(len(shape)))
    parts.extend(_U64.pack(dim) for dim in shape)
    return b"".join(parts)


def tensor_entry(name: str, dtype: str, shape: Sequence[int], root: bytes) -> Hash32:
    """The state tree's entry for one tensor: its header and its data root."""
    return sha256(TENSOR_TAG + tensor_header(name, dtype, shape) + root)


def root_of_tensor_entries(entries: Sequence[bytes]) -> Hash32:
    """The state root of tensor entries already in canonical (name) order."""
    return sha256(STATE_TAG + _U32.pack(len(entries)) + merkle_root(entries))


def records_root(records: Sequence[TensorRecord]) -> Hash32:
    """The state root of a set of tensor records (any order; sorted by name here)."""
    ordered = sorted(records, key=lambda r: r.name)
    entries = [tensor_entry(r.name, r.dtype, r.shape, data_root(r.data)) for r in ordered]
    return root_of_tensor_entries(entries)


def blob_root(blob: bytes, layout: Mapping[str, TensorLayout] | None = None) -> Hash32:
    """The state root of the state a blob encodes; with ``layout``, the blob must be a state of
    that layout. Raises ``EncodingError`` (only) for bytes that are not such a blob."""
    return records_root(decode_tensors(blob, layout))


def blob_has_root(
    blob: bytes, root: bytes, layout: Mapping[str, TensorLayout] | None = None
) -> bool:
    """Whether ``blob`` encodes a state (of ``layout``) whose root is ``root``; False for any
    bytes that do not decode, so a party's garbage is a mismatch, never an exception."""
    try:
        return blob_root(blob, layout) == root
    except EncodingError:
        return False


# --- proving one chunk ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkProof:
    """That ``chunk`` is chunk ``chunk_index`` of tensor ``name`` of the state with some root.

    ``chunk_path`` proves the chunk entry in the tensor's data tree (``chunk_total`` leaves);
    ``tensor_path`` proves the tensor entry in the state tree (``tensor_total`` leaves), where
    the tensor is leaf ``tensor_index``. The header (dtype, shape) fixes ``chunk_total``.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    tensor_index: int
    tensor_total: int
    chunk_index: int
    chunk_path: tuple[bytes, ...]
    tensor_path: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "tensor_index": self.tensor_index,
            "tensor_total": self.tensor_total,
            "chunk_index": self.chunk_index,
            "chunk_path": [h.hex() for h in self.chunk_path],
            "tensor_path": [h.hex() for h in self.tensor_path],
        }

    @classmethod
    def from_json(cls, data: object) -> ChunkProof:
        """Parse ``to_json`` output; anything malformed raises ``ProofError``."""
        keys = {
            "name",
            "dtype",
            "shape",
            "tensor_index",
            "tensor_total",
            "chunk_index",
            "chunk_path",
            "tensor_path",
        }
        if not isinstance(data, Mapping) or set(data) != keys:
            raise ProofError(f"a chunk proof is an object with exactly the keys {sorted(keys)}")
        name, dtype, shape = data["name"], data["dtype"], data["shape"]
        if not isinstance(name, str) or not isinstance(dtype, str) or not isinstance(shape, list):
            raise ProofError("chunk proof: name and dtype are strings, shape a list")
        ints = [data["tensor_index"], data["tensor_total"], data["chunk_index"], *shape]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in ints):
            raise ProofError("chunk proof: indices, totals and dimensions are integers >= 0")
        return cls(
            name,
            dtype,
            tuple(shape),
            data["tensor_index"],
            data["tensor_total"],
            data["chunk_index"],
            _hashes(data["chunk_path"], "chunk_path"),
            _hashes(data["tensor_path"], "tensor_path"),
        )


def _hashes(value: object, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > 128:
        raise ProofError(f"chunk proof: {what} is a list of at most 128 hex hashes")
    try:
        hashes = tuple(bytes.fromhex(h) for h in value)
    except (TypeError, ValueError) as exc:
        raise ProofError(f"chunk proof: {what} holds a non-hex element") from exc
    if any(len(h) != 32 for h in hashes):
        raise ProofError(f"chunk proof: every {what} element is 32 bytes")
    return hashes


def chunk_proof_root(chunk: bytes, proof: ChunkProof) -> Hash32:
    """The state root that ``chunk`` and ``proof`` lead to; the caller compares it with the
    root it trusts. Raises ``ProofError`` for a proof that has no such root (a wrong length,
    an index past the end, a chunk of the wrong size)."""
    try:
        header = tensor_header(proof.name, proof.dtype, proof.shape)
    except (UnicodeEncodeError, struct.error) as exc:
        raise ProofError(f"chunk proof: header cannot be encoded: {exc}") from exc
    nbytes = _tensor_nbytes(proof.dtype, proof.shape)
    total = chunk_count(nbytes)
    if proof.chunk_index >= total:
        raise ProofError(f"chunk {proof.chunk_index} of a tensor of {total} chunks")
    expected_size = min(CHUNK_BYTES, nbytes - proof.chunk_index * CHUNK_BYTES)
    if len(chunk) != expected_size:
        raise ProofError(
            f"chunk is {len(chunk)} bytes; chunk {proof.chunk_index} is {expected_size}"
        )
    root = inclusion_root(sha256(chunk), InclusionProof(proof.chunk_index, total, proof.chunk_path))
    entry = sha256(TENSOR_TAG + header + root)
    tensors_root = inclusion_root(
        entry, InclusionProof(proof.tensor_index, proof.tensor_total, proof.tensor_path)
    )
    return sha256(STATE_TAG + _U32.pack(proof.tensor_total) + tensors_root)


def _tensor_nbytes(dtype: str, shape: Sequence[int]) -> int:
    from protocol.hashing import DTYPE_SIZES, MAX_ELEMENTS, MAX_NDIM

    if dtype not in DTYPE_SIZES or len(shape) > MAX_NDIM:
        raise ProofError(f"chunk proof: unsupported dtype {dtype!r} or too many dimensions")
    count = 1
    for dim in shape:
        count *= dim
        if count > MAX_ELEMENTS:
            raise ProofError(f"chunk proof: shape {tuple(shape)} is too large")
    return DTYPE_SIZES[dtype] * count


class StateTree:
    """The state tree of a set of records, kept to prove any chunk (``chunk_proof``)."""

    def __init__(self, records: Sequence[TensorRecord]) -> None:
        self.records = sorted(records, key=lambda r: r.name)
        self._chunks = [chunk_entries(r.data) for r in self.records]
        self._entries = [
            tensor_entry(r.name, r.dtype, r.shape, merkle_root(chunks))
            for r, chunks in zip(self.records, self._chunks, strict=True)
        ]
        self.root = root_of_tensor_entries(self._entries)
        self._index = {r.name: i for i, r in enumerate(self.records)}

    def chunk(self, name: str, index: int) -> bytes:
        """The bytes of chunk ``index`` of tensor ``name``."""
        data = self.records[self._tensor(name)].data
        return data[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]

    def chunk_proof(self, name: str, index: int) -> ChunkProof:
        """The proof of chunk ``index`` of tensor ``name`` against ``self.root``."""
        from protocol.merkle import inclusion_path

        t = self._tensor(name)
        record, chunks = self.records[t], self._chunks[t]
        if not 0 <= index < len(chunks):
            raise ValueError(f"tensor {name!r} has {len(chunks)} chunks, not {index + 1}")
        return ChunkProof(
            record.name,
            record.dtype,
            record.shape,
            t,
            len(self._entries),
            index,
            inclusion_path(chunks, index),
            inclusion_path(self._entries, t),
        )

    def _tensor(self, name: str) -> int:
        if name not in self._index:
            raise ValueError(f"the state has no tensor {name!r}")
        return self._index[name]
