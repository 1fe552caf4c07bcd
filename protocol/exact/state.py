"""Training states and their canonical bytes.

A state is a ``dict[str, torch.Tensor]`` of int64 tensors: parameters, optimizer (momentum)
buffers and the 0-dim ``step`` counter. Its canonical bytes (``protocol.hashing``) are the
checkpoint blob a solver serves; its hash is the root of the state tree over its tensors and
their chunks (``protocol.state_commitment``), which any piece of it can be proved against. A blob
is addressed by the root of the state it encodes (``blob_root``).

Blobs from another party are decoded with ``decode_state_for(spec, blob)``: the hardened decoder
(``protocol.hashing.decode_tensors``) checks every header against the spec's layout
(``protocol.layout``) before a tensor is built, and raises only ProofNetErrors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from protocol.errors import EncodingError, StateMismatchError
from protocol.hashing import TensorRecord, decode_tensors, encode_tensors, encoded_size
from protocol.layout import STEP_KEY, state_layout
from protocol.spec import JobSpec
from protocol.state_commitment import records_root
from protocol.types import Hash32

State = dict[str, torch.Tensor]
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


def state_records(state: State) -> list[TensorRecord]:
    """The state's tensors as canonical records (CPU bytes), what both the blob and the state
    root are computed from."""
    return [_record(name, t) for name, t in state.items()]


def encode_state(state: State) -> bytes:
    """Canonical bytes of a state (the checkpoint blob)."""
    return encode_tensors(state_records(state))


def state_hash(state: State) -> Hash32:
    """The root of the state's tree (``protocol.state_commitment``): the Merkle leaf entry of a
    checkpoint."""
    return records_root(state_records(state))


def checkpoint(state: State) -> tuple[Hash32, bytes]:
    """(state hash, blob) of a state, from one conversion of its tensors."""
    records = state_records(state)
    return records_root(records), encode_tensors(records)


def decode_state(blob: bytes, device: str | torch.device = "cpu") -> State:
    """Inverse of ``encode_state``; raises EncodingError on malformed bytes.

    Any well-formed state, whatever its model: for a blob another party sent, use
    ``decode_state_for``, which also checks it is a state of the job's spec.
    """
    return _to_state(decode_tensors(blob), device)


def decode_state_for(spec: JobSpec, blob: bytes, device: str | torch.device = "cpu") -> State:
    """Decode a blob that must be a state of ``spec`` (the check of ``check_state`` included).

    Its length, then every tensor header, is compared with the spec's layout before any data is
    read or any tensor built, so a blob for another model costs O(header) to refuse.
    """
    layout = state_layout(spec)
    # Exactly the length every state of this spec has.
    if len(blob) != encoded_size(layout):
        raise EncodingError(
            f"state blob is {len(blob)} bytes; a state of this spec is {encoded_size(layout)}"
        )
    return _to_state(decode_tensors(blob, layout), device)


def _to_state(records: list[TensorRecord], device: str | torch.device) -> State:
    state: State = {}
    for rec in records:
        state[rec.name] = _tensor(rec).to(device)
    return state


def _tensor(rec: TensorRecord) -> torch.Tensor:
    """A CPU tensor of a record ``decode_tensors`` validated (dtype, shape, length).

    The checks there make these calls safe; the ``except`` keeps a library's own refusal (in a
    version we did not test) a typed error rather than a crash of the agent that decodes it.
    """
    try:
        array = np.frombuffer(rec.data, dtype=_NUMPY_DTYPES[rec.dtype]).reshape(rec.shape)
        return torch.from_numpy(array.copy())
    except (KeyError, ValueError, TypeError, OverflowError, MemoryError, RuntimeError) as exc:
        raise EncodingError(f"tensor {rec.name!r}: cannot be built: {exc}") from exc


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
