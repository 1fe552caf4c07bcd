"""The referee: the only place where the ledger executes training
(docs/protocol.md, "The one-step referee").

Three questions, all answered by the exact VM (``protocol.exact``), never by a party:

* ``initial_state_hash(spec)`` — the hash of state 0, for a dispute about leaf 0;
* ``one_step_post_hash(spec, blob, step)`` — decode the agreed pre-state blob, check it fits
  the spec, run ``step`` once, hash the result;
* ``forced_error_post_hash(spec, blob, step, selector)`` — the same with a forced error planted
  after the step (``protocol.forced_errors``).

Each raises ``ProofNetError`` when the input cannot be executed (a blob that is not a state of this
spec, a step that would leave the exact range, a dataset that does not match). The dispute rules
treat that as the solver's fault: every hash the game refers to was authored by the solver.

``protocol.exact`` (and so torch) is imported on first use, not with the ledger: most nodes and
tests never referee a step.

With ``Params.operator_disputes`` the referee judges one operator of the step, never the
step: the program (``trace_program``), what an element reads (``element_reads``), the
operator's checks (``operator_checks``, ``check_fails``) and one element from proved boxes
(``operator_element``) — a few thousand multiply-adds whatever the model's size.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from protocol.spec import JobSpec
from protocol.trace import OpNode, Program
from protocol.types import Hash32

if TYPE_CHECKING:
    from protocol.exact.trace.registry import Box, Check


@functools.lru_cache(maxsize=32)
def initial_state_hash(spec: JobSpec) -> Hash32:
    """``state_hash(init(spec))``, computed on the CPU."""
    from protocol import exact

    return exact.state_hash(exact.init(spec, "cpu"))


def one_step_post_hash(spec: JobSpec, blob: bytes, step_index: int) -> Hash32:
    """``state_hash(step(spec, decode_state_for(spec, blob), step_index))``, on the CPU.

    The blob is decoded against the spec's layout (``decode_state_for``), so any bytes raise a
    ProofNetError in time linear in their length, never a library error.
    """
    from protocol import exact

    state = exact.decode_state_for(spec, blob, "cpu")
    return exact.state_hash(exact.step(spec, state, step_index))


def forced_error_post_hash(spec: JobSpec, blob: bytes, step_index: int, selector: int) -> Hash32:
    """The hash of the state after ``step_index`` *with* the forced error ``selector`` planted
    after it (``protocol.forced_errors``): what an honest solver commits after a trap step."""
    from protocol import exact
    from protocol.exact.forced_error import perturb

    state = exact.decode_state_for(spec, blob, "cpu")
    return exact.state_hash(perturb(spec, exact.step(spec, state, step_index), selector))


# --- operator disputes (contracts_sim.operator_dispute) -------------------------------------
#
# The referee of an operator-level dispute never runs a step: it reads the step's program,
# which boxes of which inputs one output element depends on, the operator's run-time checks,
# and recomputes one element (or one check) from values the ledger has already proved.


def trace_program(spec: JobSpec) -> Program:
    """The operator program of one step of ``spec`` (``protocol.exact.trace.program_of``)."""
    from protocol.exact.trace import program_of

    return program_of(spec)


def element_reads(
    node: OpNode, shapes: Sequence[tuple[int, ...]], index: tuple[int, ...]
) -> tuple[Box | None, ...]:
    """The box of each input that output element ``index`` of ``node`` reads."""
    from protocol.exact.trace import op_def

    boxes: tuple[Box | None, ...] = op_def(node.kind).reads(node, shapes, index)
    return boxes


def _tensors(named: Mapping[str, tuple[tuple[int, ...], bytes]]) -> dict[str, Any]:
    """CPU int64 tensors from (shape, little-endian bytes), built by the exact VM's own
    decoder (the ledger holds no tensor library)."""
    from protocol import exact
    from protocol.hashing import TensorRecord, encode_tensors

    records = [TensorRecord(name, "int64", shape, data) for name, (shape, data) in named.items()]
    return dict(exact.decode_state(encode_tensors(records)))


def _int64s(values: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(values)}q", *values)


def _shaped_inputs(
    node: OpNode, shapes: Sequence[tuple[int, ...]], scalars: Mapping[int, int]
) -> list[Any]:
    """Stand-ins for ``node``'s inputs that carry only their shapes (a zero expanded: no
    memory) and the scalar values ``scalars`` (input -> value: the step counter, which
    checks read)."""
    named = {f"s{j}": ((), _int64s([v])) for j, v in scalars.items()}
    built = _tensors({**named, "zero": ((), _int64s([0]))})
    zero = built["zero"]
    return [
        built[f"s{j}"] if j in scalars else zero.expand(shape) for j, shape in enumerate(shapes)
    ]


def operator_checks(
    node: OpNode, shapes: Sequence[tuple[int, ...]], scalars: Mapping[int, int]
) -> tuple[Check, ...]:
    """``node``'s run-time checks (``protocol.exact.trace.registry.op_checks``): which inputs'
    maxima, times what, must stay below what. They depend on shapes and on the scalar inputs
    only, never on a tensor's values."""
    from protocol.exact.trace.registry import op_checks

    return op_checks(node, _shaped_inputs(node, shapes, scalars))


def check_fails(check: Check, witnesses: Mapping[int, Sequence[int]]) -> bool:
    """Whether elements ``witnesses`` (input -> values) already make ``check`` fail: each
    input's max |value| is at least its witnesses' (``Check``), so a failing product of the
    witnesses' maxima proves the operator's check fails on the whole inputs."""
    width = 1 + max((j for j in check.sources if j is not None), default=0)
    values = {f"w{j}": list(witnesses.get(j, ())) or [0] for j in range(width)}
    built = _tensors({name: ((len(v),), _int64s(v)) for name, v in values.items()})
    return bool(check.bound([built[f"w{j}"] for j in range(width)]).fails())


def batch_piece(spec: JobSpec, step_index: int, name: str, box: Box) -> Any:
    """Batch tensor ``name`` of step ``step_index``, cut to ``box`` (the referee computes the
    batch from the spec: nobody posts it)."""
    from protocol.exact.trace.registry import cut

    return cut(_batch(spec, step_index)[name], box)


@functools.lru_cache(maxsize=4)
def _batch(spec: JobSpec, step_index: int) -> dict[str, Any]:
    from protocol.exact.device import resolve_device
    from protocol.exact.trace.run import batch_tensors

    return batch_tensors(spec, step_index, resolve_device("cpu"))


def batch_value(spec: JobSpec, step_index: int, name: str, element: int) -> int:
    """Flat element ``element`` of batch tensor ``name`` of step ``step_index``."""
    tensor = _batch(spec, step_index)[name]
    if not 0 <= element < tensor.numel():
        raise ValueError(f"element {element} of a batch tensor of {tensor.numel()}")
    return int(tensor.reshape(-1)[element].item())


def operator_element(
    spec: JobSpec,
    step_index: int,
    node: OpNode,
    index: tuple[int, ...],
    boxes: Sequence[Box | None],
    values: Sequence[bytes | None],
) -> int:
    """Output element ``index`` of ``node`` at step ``step_index`` from its inputs' boxes:
    ``values[j]`` is input j's box as int64 little-endian bytes in row-major order (proved
    by the ledger), None for an input not read or a batch input (computed here)."""
    from protocol.exact.trace import op_def

    posted = {
        f"p{j}": (tuple(hi - lo for lo, hi in box), data)
        for j, (box, data) in enumerate(zip(boxes, values, strict=True))
        if box is not None and data is not None
    }
    built = _tensors(posted)
    pieces: list[Any] = []
    for j, (ref, box) in enumerate(zip(node.inputs, boxes, strict=True)):
        if box is None:
            pieces.append(None)
        elif ref.source == "batch":
            pieces.append(batch_piece(spec, step_index, str(ref.key), box))
        else:
            pieces.append(built[f"p{j}"])
    return int(op_def(node.kind).element(node, index, pieces))
