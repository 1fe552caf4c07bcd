"""Hashing and canonical encodings.

Two canonical forms matter to the protocol:

* **Canonical JSON** — UTF-8, keys sorted, no whitespace, integers only where money or heights
  are concerned. Used for spec hashes, job ids and transaction signing bytes.
* **Canonical tensor bytes** — the encoding of a training state (docs/protocol.md, "The state
  commitment"): tensors sorted by name; for each, the name, dtype, shape and little-endian
  contiguous bytes, every variable-length field prefixed with its length.
  ``state_hash = SHA-256(canonical bytes)``. The same bytes are the checkpoint *blob*, so a
  blob is addressed by its own hash and decodes back to the state.

This module knows nothing about torch; ``protocol.exact.state`` converts tensors to and from the
``TensorRecord`` tuples defined here.

``decode_tensors`` is the one decoder for blobs another party sent. Whatever the bytes, it raises
only ``EncodingError`` and its work is linear in the blob's length: every count, length, dtype and
dimension is checked against the limits below, and every tensor's byte length against its shape
(with Python integers), before anything is sliced out or handed to numpy. The limits are far
above any state a spec can describe and far below what would cost a verifier memory or time.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol.errors import EncodingError
from protocol.types import Hash32

BLOB_MAGIC = b"PNST\x01"  # ProofNet STate, format version 1
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

MAX_TENSORS = 256
"""Tensors in one blob. A state has 4 per layer (weight, bias, their momenta) plus ``step``."""
MAX_NAME_BYTES = 256
"""Length of a tensor name; names are ASCII identifiers (``NAME_PATTERN``)."""
NAME_PATTERN = re.compile(rb"[A-Za-z0-9_.\-]+")
"""Tensor names: ASCII letters, digits, ``_``, ``.`` and ``-``, so byte order is name order."""
DTYPE_SIZES: dict[str, int] = {"int64": 8, "float32": 4}
"""The dtypes a blob may hold, with their item sizes; checked before the shape is read."""
MAX_DTYPE_BYTES = max(len(name) for name in DTYPE_SIZES)
MAX_NDIM = 8
MAX_DIM = 2**31 - 1
"""Largest single dimension (a spec's widest layer is 4096)."""
MAX_ELEMENTS = 2**31 - 1
"""Largest product of a shape's non-zero dimensions, so numpy's and torch's strides always fit
(a zero-size tensor still needs them: ``(0, 2**63)`` holds no bytes but no library can build it)."""


def sha256(data: bytes) -> Hash32:
    return Hash32(hashlib.sha256(data).digest())


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def hash_json(obj: Any) -> Hash32:
    return sha256(canonical_json(obj))


def to_hex(data: bytes) -> str:
    return data.hex()


def from_hex(text: str, *, size: int | None = None, what: str = "hash") -> bytes:
    """Parse lowercase/uppercase hex (optional ``0x``); raise EncodingError on anything else."""
    raw = text[2:] if text.startswith("0x") else text
    try:
        data = bytes.fromhex(raw)
    except ValueError as exc:
        raise EncodingError(f"{what}: not a hex string") from exc
    if size is not None and len(data) != size:
        raise EncodingError(f"{what}: expected {size} bytes, got {len(data)}")
    return data


@dataclass(frozen=True)
class TensorRecord:
    """One named tensor in canonical form: dtype name (e.g. ``int64``), shape, LE bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: bytes


@dataclass(frozen=True)
class TensorLayout:
    """What a tensor must be, short of its values: dtype name and shape."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return DTYPE_SIZES[self.dtype] * _product(self.shape)


def _product(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _put_bytes(out: list[bytes], data: bytes) -> None:
    out.append(_U64.pack(len(data)))
    out.append(data)


def encode_tensors(records: list[TensorRecord]) -> bytes:
    """Canonical bytes of a set of tensors (sorted by name; lengths prefixed)."""
    names = [r.name for r in records]
    if len(set(names)) != len(names):
        raise EncodingError("duplicate tensor names")
    out: list[bytes] = [BLOB_MAGIC, _U32.pack(len(records))]
    for rec in sorted(records, key=lambda r: r.name):
        _put_bytes(out, rec.name.encode("utf-8"))
        _put_bytes(out, rec.dtype.encode("ascii"))
        out.append(_U32.pack(len(rec.shape)))
        out.extend(_U64.pack(d) for d in rec.shape)
        _put_bytes(out, rec.data)
    return b"".join(out)


def encoded_size(layout: Mapping[str, TensorLayout]) -> int:
    """The exact length of ``encode_tensors`` of tensors laid out as ``layout``.

    Mirrors ``encode_tensors`` field by field, so a reader can bound a fetch, or refuse a blob of
    the wrong length, before reading a byte of it.
    """
    size = len(BLOB_MAGIC) + _U32.size
    for name, tensor in layout.items():
        size += _U64.size + len(name.encode("utf-8"))
        size += _U64.size + len(tensor.dtype.encode("ascii"))
        size += _U32.size + _U64.size * len(tensor.shape)
        size += _U64.size + tensor.nbytes
    return size


class _Reader:
    """Reads fields off a blob; every read past its end is an EncodingError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise EncodingError("state blob is truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def bounded(self, limit: int, what: str) -> bytes:
        """A length-prefixed field of at most ``limit`` bytes."""
        size = self.u64()
        if size > limit:
            raise EncodingError(f"{what} is {size} bytes; the limit is {limit}")
        return self.take(size)


def _read_name(reader: _Reader, previous: bytes | None) -> bytes:
    raw = reader.bounded(MAX_NAME_BYTES, "tensor name (MAX_NAME_BYTES)")
    # Names are ASCII identifiers: no decoding ambiguity, and byte order is the canonical order.
    if NAME_PATTERN.fullmatch(raw) is None:
        raise EncodingError(f"tensor name {raw[:32]!r} is not an ASCII identifier")
    # Strictly increasing names: the canonical order, with no duplicates.
    if previous is not None and raw <= previous:
        raise EncodingError(f"tensor {raw.decode()!r} is out of canonical order or repeated")
    return raw


def _read_dtype(reader: _Reader, name: str) -> str:
    raw = reader.bounded(MAX_DTYPE_BYTES, f"tensor {name!r}: dtype")
    dtype = raw.decode("ascii", errors="replace")
    # Only whitelisted dtypes, checked before the shape is read.
    if dtype not in DTYPE_SIZES:
        raise EncodingError(f"tensor {name!r}: unsupported dtype {raw!r}")
    return dtype


def _read_shape(reader: _Reader, name: str) -> tuple[int, ...]:
    ndim = reader.u32()
    # At most MAX_NDIM dimensions.
    if ndim > MAX_NDIM:
        raise EncodingError(f"tensor {name!r}: {ndim} dimensions is too many (MAX_NDIM {MAX_NDIM})")
    shape = tuple(reader.u64() for _ in range(ndim))
    # Every dimension at most MAX_DIM.
    if any(dim > MAX_DIM for dim in shape):
        raise EncodingError(f"tensor {name!r}: a dimension of {shape} exceeds MAX_DIM {MAX_DIM}")
    # The non-zero dimensions' product at most MAX_ELEMENTS, zero-size tensors included.
    if _product(tuple(max(dim, 1) for dim in shape)) > MAX_ELEMENTS:
        raise EncodingError(f"tensor {name!r}: shape {shape} exceeds MAX_ELEMENTS {MAX_ELEMENTS}")
    return shape


def _check_expected(
    name: str, dtype: str, shape: tuple[int, ...], expected: Mapping[str, TensorLayout]
) -> None:
    want = expected.get(name)
    if want is None:
        raise EncodingError(f"tensor {name!r} is not part of the expected state")
    if (dtype, shape) != (want.dtype, want.shape):
        raise EncodingError(f"tensor {name!r}: {dtype} {shape}, expected {want.dtype} {want.shape}")


def decode_tensors(
    blob: bytes, expected: Mapping[str, TensorLayout] | None = None
) -> list[TensorRecord]:
    """Inverse of ``encode_tensors``; rejects anything that is not exactly canonical.

    With ``expected``, the blob must hold exactly those tensors: each header is compared with it
    before its data is read, so a blob for another model is refused after its first mismatch.
    Raises only EncodingError; the work is linear in ``len(blob)`` (see the module docstring).
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise EncodingError(f"a state blob is bytes, not {type(blob).__name__}")
    reader = _Reader(bytes(blob))
    if reader.take(len(BLOB_MAGIC)) != BLOB_MAGIC:
        raise EncodingError("not a ProofNet state blob (bad magic)")
    count = reader.u32()
    # At most MAX_TENSORS tensors, checked before any of them is read.
    if count > MAX_TENSORS:
        raise EncodingError(f"state blob declares {count} tensors; MAX_TENSORS is {MAX_TENSORS}")
    # Exactly the expected number of tensors, when the layout is known.
    if expected is not None and count != len(expected):
        raise EncodingError(f"state blob declares {count} tensors; expected {len(expected)}")
    records = []
    previous: bytes | None = None
    for _ in range(count):
        previous = _read_name(reader, previous)
        name = previous.decode("ascii")
        dtype = _read_dtype(reader, name)
        shape = _read_shape(reader, name)
        if expected is not None:
            _check_expected(name, dtype, shape, expected)
        nbytes = DTYPE_SIZES[dtype] * _product(shape)
        # The data is exactly as long as the shape says, checked before it is read.
        if reader.u64() != nbytes:
            raise EncodingError(f"tensor {name!r}: data length does not match its shape {shape}")
        records.append(TensorRecord(name, dtype, shape, reader.take(nbytes)))
    if reader.pos != len(reader.data):
        raise EncodingError("state blob has trailing bytes")
    return records
