"""Training states and their canonical bytes.

A state is a ``dict[str, torch.Tensor]`` of int64 tensors: parameters, optimizer (momentum)
buffers and the 0-dim ``step`` counter. Its canonical bytes (``protocol.hashing``) are both its
hash preimage and the checkpoint blob a solver serves, so a blob is addressed by its own hash.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from protocol.errors import EncodingError, StateMismatchError
from protocol.hashing import TensorRecord, decode_tensors, encode_tensors, sha256
from protocol.types import Hash32

State = dict[str, torch.Tensor]
STEP_KEY = "step"
_DTYPES: dict[torch.dtype, str] = {torch.int64: "int64", torch.float32: "float32"}
_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {"int64": np.dtype("<i8"), "float32": np.dtype("<f4")}


def _record(name: str, tensor: torch.Tensor) -> TensorRecord:
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise StateMismatchError(
            f"tensor {name!r} has dtype {tensor.dtype}; states are int64 (float32 in native mode)"
        )
    array = tensor.detach().to("cpu").contiguous().numpy().astype(_NUMPY_DTYPES[dtype])
    return TensorRecord(name, dtype, tuple(int(d) for d in tensor.shape), array.tobytes())


def encode_state(state: State) -> bytes:
    """Canonical bytes of a state (the checkpoint blob)."""
    return encode_tensors([_record(name, t) for name, t in state.items()])


def state_hash(state: State) -> Hash32:
    """SHA-256 of the canonical bytes; the Merkle leaf entry for a checkpoint."""
    return sha256(encode_state(state))


def decode_state(blob: bytes, device: str | torch.device = "cpu") -> State:
    """Inverse of ``encode_state``; raises EncodingError on malformed bytes."""
    state: State = {}
    for rec in decode_tensors(blob):
        np_dtype = _NUMPY_DTYPES.get(rec.dtype)
        if np_dtype is None:
            raise EncodingError(f"tensor {rec.name!r}: unsupported dtype {rec.dtype!r}")
        count = 1
        for d in rec.shape:
            count *= d
        if count * np_dtype.itemsize != len(rec.data):
            raise EncodingError(f"tensor {rec.name!r}: data length does not match its shape")
        array = np.frombuffer(rec.data, dtype=np_dtype).reshape(rec.shape).copy()
        state[rec.name] = torch.from_numpy(array).to(device)
    return state


def state_step(state: State) -> int:
    if STEP_KEY not in state:
        raise StateMismatchError("state has no 'step' counter")
    return int(state[STEP_KEY].item())


def export_safetensors(state: State, metadata: dict[str, str] | None = None) -> bytes:
    """The state as a safetensors file (int64 fixed-point tensors, 16 fractional bits)."""
    from safetensors.torch import save

    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    meta = {"format": "proofnet-exact", "frac_bits": "16", **(metadata or {})}
    return save(tensors, metadata=meta)
