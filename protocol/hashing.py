"""Hashing and canonical encodings.

Two canonical forms matter to the protocol:

* **Canonical JSON** — UTF-8, keys sorted, no whitespace, integers only where money or heights
  are concerned. Used for spec hashes, job ids and transaction signing bytes.
* **Canonical tensor bytes** — the encoding of a training state (DESIGN §2): tensors sorted by
  name; for each, the name, dtype, shape and little-endian contiguous bytes, every variable-length
  field prefixed with its length. ``state_hash = SHA-256(canonical bytes)``. The same bytes are the
  checkpoint *blob*, so a blob is addressed by its own hash and decodes back to the state.

This module knows nothing about torch; ``protocol.exact.state`` converts tensors to and from the
``TensorRecord`` tuples defined here.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from protocol.errors import EncodingError
from protocol.types import Hash32

BLOB_MAGIC = b"PNST\x01"  # ProofNet STate, format version 1
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


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


class _Reader:
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

    def sized(self) -> bytes:
        return self.take(self.u64())


def decode_tensors(blob: bytes) -> list[TensorRecord]:
    """Inverse of ``encode_tensors``; rejects anything that is not exactly canonical."""
    reader = _Reader(blob)
    if reader.take(len(BLOB_MAGIC)) != BLOB_MAGIC:
        raise EncodingError("not a ProofNet state blob (bad magic)")
    count = reader.u32()
    records = []
    for _ in range(count):
        try:
            name = reader.sized().decode("utf-8")
            dtype = reader.sized().decode("ascii")
        except UnicodeDecodeError as exc:
            raise EncodingError("state blob has a non-text name or dtype") from exc
        ndim = reader.u32()
        if ndim > 8:
            raise EncodingError(f"tensor {name!r}: {ndim} dimensions is too many")
        shape = tuple(reader.u64() for _ in range(ndim))
        records.append(TensorRecord(name, dtype, shape, reader.sized()))
    if reader.pos != len(blob):
        raise EncodingError("state blob has trailing bytes")
    if encode_tensors(records) != blob:
        raise EncodingError("state blob is not in canonical order")
    return records
