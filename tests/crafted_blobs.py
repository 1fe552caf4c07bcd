"""Hand-built state blobs for the decoder's tests: any field, any order, any length.

``raw_blob`` writes the canonical layout (``protocol.hashing``) field by field without checking
anything, so a test can declare what an adversary would: a shape of ``(0, 2**63)``, a count that
lies, names out of order, data of the wrong length.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.hashing import BLOB_MAGIC

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class RawTensor:
    name: bytes
    dtype: bytes
    shape: tuple[int, ...]
    data: bytes
    data_length: int | None = None  # declared length; None: len(data)


def raw_tensor(name: str, shape: Sequence[int], dtype: str = "int64") -> RawTensor:
    """A tensor whose data length matches its shape (zeros)."""
    count = 1
    for dim in shape:
        count *= dim
    itemsize = {"int64": 8, "float32": 4}.get(dtype, 8)
    return RawTensor(name.encode(), dtype.encode(), tuple(shape), bytes(count * itemsize))


def raw_blob(
    tensors: Sequence[RawTensor], *, count: int | None = None, magic: bytes = BLOB_MAGIC
) -> bytes:
    """The fields of ``tensors`` in the order given, with ``count`` (default: how many)."""
    out = [magic, _U32.pack(len(tensors) if count is None else count)]
    for t in tensors:
        out += [_U64.pack(len(t.name)), t.name, _U64.pack(len(t.dtype)), t.dtype]
        out.append(_U32.pack(len(t.shape)))
        out += [_U64.pack(dim) for dim in t.shape]
        declared = len(t.data) if t.data_length is None else t.data_length
        out += [_U64.pack(declared), t.data]
    return b"".join(out)


def huge_empty_shape_blob() -> bytes:
    """The reported crash: a well-formed header declaring shape ``(0, 2**63)`` and no data."""
    return raw_blob([raw_tensor("step", ()), RawTensor(b"weight", b"int64", (0, 2**63), b"")])


def many_tensors_blob(count: int = 20_000) -> bytes:
    """The reported slow blob: ``count`` one-element tensors (about 1.1 MB for 20,000)."""
    return raw_blob([raw_tensor(f"t{i:06d}", (1,)) for i in range(count)])
