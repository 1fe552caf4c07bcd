"""A training step as an operator trace: the program, its outputs' entries and the trace root.

A step of every family is a fixed sequence of exact operators (forward, loss, backward,
optimizer update) that depends on the spec alone, never on the values (``Program``). Each
operator (``OpNode``) reads tensors named by ``Ref``s — a tensor of the pre-state, a tensor of
step i's batch, or the output of an earlier operator — and writes one int64 tensor of a static
shape. The trace of step i is the list of the operators' *output entries*: the state tree's
tensor entry of the output (``protocol.state_commitment``: name ``op<k>``, its shape, its data
root), or ``OVERFLOW_ENTRY`` for an operator whose bound check failed. The trace root is the
RFC 9162 root over the entries (``protocol.merkle``), so a dispute can bisect the operator
sequence with the descent it already plays on a trajectory, and every output and every chunk of
it can be proved against the root.

The overflow rule in a trace: an operator one of whose run-time checks fails, or one of whose
inputs is an overflow, outputs ``OVERFLOW_ENTRY``; the step's post-state is then the skipped
state (the counter moves on, nothing else: ``protocol.exact.program.skipped_step``) — exactly
when one process running the step would skip it.

This module is torch-free: the ledger reads programs and verifies entries without the exact VM.
The operators themselves (what ``kind`` computes, how one output element is recomputed from the
few input values it depends on) are ``protocol.exact.trace``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from protocol.hashing import sha256
from protocol.merkle import root_of
from protocol.state_commitment import tensor_entry
from protocol.types import Hash32

Source = Literal["state", "batch", "op"]

OVERFLOW_ENTRY = sha256(b"proofnet/trace/overflow/v1")
"""The entry of an operator output the overflow rule replaced (no tensor)."""
OUTPUT_DTYPE = "int64"


@dataclass(frozen=True)
class Ref:
    """Where an operator input comes from: a pre-state tensor (``key`` its name), a batch
    tensor (``key`` its name in ``Program.batch``) or an earlier operator's output (``key``
    its index, smaller than the reading operator's)."""

    source: Source
    key: str | int


@dataclass(frozen=True)
class OpNode:
    """One operator of a step's program.

    ``kind`` names the operator's definition (``protocol.exact.trace``); ``attrs`` are its
    static arguments (shifts, strides, heads, the dataset's max |value| ...), integers or
    strings only, sorted by name, so a node has one canonical form; ``shape`` is the output's.
    ``label`` says what it is for a reader ("layer0.forward", "adam_m.head.weight.update").
    """

    index: int
    kind: str
    inputs: tuple[Ref, ...]
    attrs: tuple[tuple[str, int | str], ...]
    shape: tuple[int, ...]
    label: str

    def attr(self, name: str) -> int | str:
        for key, value in self.attrs:
            if key == name:
                return value
        raise KeyError(f"operator {self.index} ({self.kind}) has no attribute {name!r}")


@dataclass(frozen=True)
class Program:
    """Every operator of one step of a spec, in execution order, and how the post-state is
    assembled: ``post_state`` maps each tensor of the state (the step counter aside, which
    always moves on by one) to the ``Ref`` its next value comes from — an operator's output,
    or the pre-state's own tensor where the step leaves it unchanged. ``batch`` names step i's
    batch tensors and their shapes."""

    nodes: tuple[OpNode, ...]
    batch: tuple[tuple[str, tuple[int, ...]], ...]
    post_state: tuple[tuple[str, Ref], ...]

    def __post_init__(self) -> None:
        for position, node in enumerate(self.nodes):
            if node.index != position:
                raise ValueError(f"operator {position} carries index {node.index}")
            for ref in node.inputs:
                if ref.source == "op" and not (isinstance(ref.key, int) and ref.key < position):
                    raise ValueError(f"operator {position} reads a later output {ref.key!r}")


def output_entry(index: int, shape: Sequence[int], data_root: bytes) -> Hash32:
    """The trace entry of operator ``index``'s output: a tensor entry named ``op<index>``."""
    return tensor_entry(f"op{index}", OUTPUT_DTYPE, tuple(shape), data_root)


def trace_root(entries: Sequence[bytes]) -> Hash32:
    """The RFC 9162 root over a step's output entries, in operator order."""
    return root_of(entries)
