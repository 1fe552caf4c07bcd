"""The exact VM: bit-identical training on any device and thread count
(docs/protocol.md, "Exact execution").

Public API::

    init(spec, device) -> State          state 0
    step(spec, state, i) -> State        one pure training step
    run(spec, state, a, b) -> State      steps a..b-1
    evaluate(spec, state) -> float       the family's metric (metric_name: accuracy or loss)
    encode_state / decode_state / state_hash
    decode_state_for(spec, blob)         decode a blob another party sent, checked against spec
    state_blob_size(spec)                the exact length of every state blob of spec
    train_trajectory(spec, device, ...)  leaves + blobs of a whole run
    NativeTrainer                        float32 baseline (not exact)
"""

from protocol.exact.device import (
    Device,
    as_device,
    get_threads,
    prepare_exact,
    resolve_device,
    set_threads,
)
from protocol.exact.fixedpoint import FRAC, ONE
from protocol.exact.native import NativeTrainer
from protocol.exact.program import check_state, evaluate, init, metric_name, run, step
from protocol.exact.state import (
    State,
    checkpoint,
    decode_state,
    decode_state_for,
    encode_state,
    export_safetensors,
    state_hash,
    state_step,
)
from protocol.exact.trajectory import Trajectory, train_trajectory
from protocol.layout import state_blob_size

__all__ = [
    "FRAC",
    "ONE",
    "Device",
    "NativeTrainer",
    "State",
    "Trajectory",
    "as_device",
    "check_state",
    "checkpoint",
    "decode_state",
    "decode_state_for",
    "encode_state",
    "evaluate",
    "export_safetensors",
    "get_threads",
    "init",
    "metric_name",
    "prepare_exact",
    "resolve_device",
    "run",
    "set_threads",
    "state_blob_size",
    "state_hash",
    "state_step",
    "step",
    "train_trajectory",
]
