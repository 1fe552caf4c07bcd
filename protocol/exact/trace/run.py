"""Executing a step's program: every operator in order, its output's trace entry, the
overflow rule, the post-state.

An operator whose run-time check fails, or that reads an overflowed output, overflows: its
output is None and its entry ``OVERFLOW_ENTRY``. Operators that do not depend on it still
run (their entries are part of the trace either way). If any operator overflowed, the
post-state is the skipped state (``program.skipped_step``): one process running the step
skips it exactly then, because the program makes the step's checks on the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from protocol.errors import OverflowBoundError, StateMismatchError
from protocol.exact.family import family_of
from protocol.exact.program import check_state, skipped_step
from protocol.exact.state import State, state_step
from protocol.exact.trace.registry import op_def
from protocol.layout import STEP_KEY
from protocol.spec import JobSpec
from protocol.state_commitment import data_root
from protocol.trace import OVERFLOW_ENTRY, OpNode, Program, Ref, output_entry, trace_root
from protocol.types import Hash32

Outputs = list[torch.Tensor | None]


@dataclass(frozen=True)
class TraceRun:
    """One step executed as its program: the post-state, every operator's output (None for
    an overflow) and the trace's entries."""

    post_state: State
    outputs: Outputs
    entries: list[Hash32]

    @property
    def root(self) -> Hash32:
        return trace_root(self.entries)

    @property
    def overflowed(self) -> bool:
        return any(out is None for out in self.outputs)


def tensor_bytes(t: torch.Tensor) -> bytes:
    """An int64 tensor's little-endian bytes in row-major order (as a state's tensor)."""
    return t.detach().to("cpu").contiguous().numpy().astype("<i8", copy=False).tobytes()


def entry_of(index: int, output: torch.Tensor | None) -> Hash32:
    """Operator ``index``'s trace entry for its output (``OVERFLOW_ENTRY`` for None)."""
    if output is None:
        return OVERFLOW_ENTRY
    return output_entry(index, tuple(output.shape), data_root(tensor_bytes(output)))


def batch_tensors(spec: JobSpec, i: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Step i's batch as the programs name it: ``inputs`` (the family's batch inputs, in its
    shape) and ``targets``."""
    batch = family_of(spec).batch(spec, i, device)
    return {"inputs": batch.inputs, "targets": batch.targets}


def resolve(
    ref: Ref, state: State, batch: dict[str, torch.Tensor], outputs: Outputs
) -> torch.Tensor | None:
    if ref.source == "state":
        return state[str(ref.key)]
    if ref.source == "batch":
        return batch[str(ref.key)]
    assert isinstance(ref.key, int)
    return outputs[ref.key]


Tamper = Callable[[OpNode, torch.Tensor], torch.Tensor]
"""What a dishonest executor does to an output before it is recorded and read (tests and
adversarial players: a cheater who perturbs one operator)."""


def execute(
    program: Program,
    state: State,
    batch: dict[str, torch.Tensor],
    tamper: Tamper | None = None,
) -> TraceRun:
    """Run every operator of ``program`` on ``state`` and ``batch``; ``tamper`` (if given)
    may replace each output before later operators read it."""
    for name, shape in program.batch:
        if tuple(batch[name].shape) != shape:
            raise StateMismatchError(f"batch {name}: {tuple(batch[name].shape)}, not {shape}")
    outputs: Outputs = []
    entries: list[Hash32] = []
    for node in program.nodes:
        inputs = [resolve(ref, state, batch, outputs) for ref in node.inputs]
        output: torch.Tensor | None = None
        if all(t is not None for t in inputs):
            try:
                output = op_def(node.kind).run(node, [t for t in inputs if t is not None])
            except OverflowBoundError:
                output = None
        if output is not None and (output.dtype != torch.int64 or output.shape != node.shape):
            raise StateMismatchError(
                f"operator {node.index} ({node.kind}) made {output.dtype} "
                f"{tuple(output.shape)}, not int64 {node.shape}"
            )
        if output is not None and tamper is not None:
            output = tamper(node, output)
        outputs.append(output)
        entries.append(entry_of(node.index, output))
    if any(out is None for out in outputs):
        return TraceRun(skipped_step(state), outputs, entries)
    post: State = {STEP_KEY: state[STEP_KEY] + 1}
    for name, ref in program.post_state:
        value = resolve(ref, state, batch, outputs)
        assert value is not None
        post[name] = value
    return TraceRun(post, outputs, entries)


def run_trace(spec: JobSpec, state: State, i: int, program: Program) -> TraceRun:
    """Step ``i`` of ``spec`` from ``state`` as ``program`` (``program_of(spec)``):
    post_state == ``program.step(spec, state, i)`` bit for bit."""
    check_state(spec, state)
    if state_step(state) != i:
        raise StateMismatchError(f"state is at step {state_step(state)}, not {i}")
    if not 0 <= i < spec.steps:
        raise StateMismatchError(f"step {i} is outside 0..{spec.steps - 1}")
    return execute(program, state, batch_tensors(spec, i, state[STEP_KEY].device))
