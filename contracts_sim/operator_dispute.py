"""Operator-level disputes: from one disputed step to one operator, then to one element.

With ``Params.operator_disputes`` on, a dispute whose bisection has reached one step a
(``hash_lo`` agreed, ``hash_hi`` disputed) does not post the pre-state for the referee to run
the whole step. It plays on, over the step's operator trace (``protocol.trace``), and the
referee recomputes one element of one operator's output from a few proved input values::

    phase            move                by          next phase
    commit_trace     commit_trace        solver      reveal_children | reveal_op
    reveal_children  reveal_children     solver      choose_child         (trace or chunks)
    choose_child     choose_child        challenger  reveal_children | reveal_op | reveal_chunk
    choose_child     show_overflow       challenger  resolved  (trace tree, solver claims none)
    reveal_op        reveal_op           solver      prove_overflow | reveal_children
                                                     | reveal_chunk | name_element | resolved
    prove_overflow   show_overflow       solver      resolved (challenger loses)
    reveal_chunk     reveal_chunk        solver      name_element
    name_element     name_element        challenger  post_pieces
    name_element     show_overflow       challenger  resolved (solver loses)
    post_pieces      post_pieces         solver      resolved

Each move has ``move_timeout`` blocks; at timeout the party to move loses (``claim_timeout``).

The rules and why
    commit_trace  The solver commits the trace root of step a, whether the step overflowed,
        and the data root of every tensor of the pre- and post-state. The ledger checks the
        roots rebuild ``hash_lo`` and ``hash_hi`` (headers from the spec's layout, the
        counter's data root computed from a) and ties the post-state to the trace: each post
        tensor an operator writes is that operator's leaf (inclusion proof), each tensor the
        step keeps equals the pre-state's. Claiming an overflow, the post-state is the
        pre-state with the counter moved on, and one leaf is ``OVERFLOW_ENTRY``. So a trace
        that does not explain the disputed post-state cannot be committed, and everything
        later is proved against the trace root or ``hash_lo``.
    trace descent  The trajectory's descent (``contracts_sim.dispute``, one implementation):
        the solver reveals children, the challenger names the leftmost child it disagrees
        with, down to op k; every leaf before k is then agreed (the challenger chose a right
        child only when it agreed with the left one). Instead of choosing, a challenger may
        show an ``OVERFLOW_ENTRY`` leaf when the solver claimed no overflow: its trace
        contradicts its claim (an honest trace equal to the solver's but overflowing would
        otherwise leave the challenger nothing to disagree with).
    reveal_op  The solver opens entry k: an overflow (then it must show why, below; with the
        claim "no overflow" it has already contradicted itself and loses) or its output's data
        root (the entry must be ``output_entry(k, shape, root)``).
    prove_overflow / show_overflow at op k  A run-time check of op k (``op_checks``) fails
        when the maxima of its source inputs multiply past its limit; any element's |value|
        is at most its input's max, so one witness element per source factor, each with its
        chunk proved against an agreed root, whose product reaches the limit proves the
        check fails; so does an input of op k whose leaf is ``OVERFLOW_ENTRY``. The solver
        must prove an overflow it claims; the challenger may prove one the solver hid.
    chunk descent  The same descent over the chunk tree of op k's output (data root), to one
        chunk c the challenger disputes; the solver reveals its bytes (they hash to the
        leaf). The challenger names one element of it, and the solver posts, for each input
        op k's definition reads for that element (``OpDef.reads``), the chunks covering its
        box with their paths: against the pre-state's data root (committed with the trace)
        for a state tensor; against an earlier op's data root, itself proved as that op's
        leaf of the trace, for an op output; nothing for a batch tensor (the referee computes
        the batch from the spec). The referee recomputes the element (``OpDef.element``):
        the solver's value -> the challenger loses; another -> the solver loses.

Inputs are agreed by construction: the pre-state by ``hash_lo``, earlier outputs by the
descent, the batch by the spec. The referee's work is one element (a row dot product, a
row's softmax, one value): a few thousand multiply-adds whatever the model's size. A verdict
records ``located_step = a`` and ``located_op = k`` (with its label) on the dispute and in
its ``dispute_resolved`` event.

Bounds: every list is bounded when the body is parsed (``contracts_sim.transactions``), every
list must have exactly the length the program or the box implies, the bytes of one move's
chunks at most ``max_blob_bytes``; anything else is a typed error that changes nothing.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from contracts_sim import dispute as game
from contracts_sim import referee
from contracts_sim.env import TxContext
from contracts_sim.events import Event
from contracts_sim.exceptions import HashMismatchError, InvalidProofError, MalformedBodyError
from contracts_sim.jobs import get_job_spec
from contracts_sim.params import Params
from contracts_sim.records import Dispute, OperatorGame, Party, Phase, Resolution
from contracts_sim.state import LedgerState
from contracts_sim.transactions import (
    ChunkPiece,
    CommitTraceBody,
    InputPiece,
    NameElementBody,
    PostPiecesBody,
    RevealChunkBody,
    RevealOpBody,
    ShowOverflowBody,
    Witness,
)
from protocol.errors import ProofError, ProofNetError
from protocol.hashing import sha256
from protocol.layout import STEP_KEY, state_layout
from protocol.merkle import InclusionProof, NodeRef, hash_leaf, inclusion_root, verify_inclusion
from protocol.spec import JobSpec
from protocol.state_commitment import (
    CHUNK_BYTES,
    chunk_count,
    data_root,
    root_of_tensor_entries,
    tensor_entry,
)
from protocol.trace import OVERFLOW_ENTRY, OpNode, Program, output_entry
from protocol.types import Hash32, Height

VALUE_BYTES = 8
"""Every operator output and state tensor is int64."""
VALUES_PER_CHUNK = CHUNK_BYTES // VALUE_BYTES


# --- what the program says -----------------------------------------------------------------


def _program(dispute: Dispute, state: LedgerState) -> tuple[JobSpec, Program]:
    spec = get_job_spec(state.get_job(dispute.job_id))
    return spec, referee.trace_program(spec)


def _game(dispute: Dispute) -> OperatorGame:
    assert dispute.operator is not None
    return dispute.operator


def _op(dispute: Dispute, program: Program) -> OpNode:
    k = _game(dispute).op_index
    assert k is not None
    return program.nodes[k]


def input_shapes(spec: JobSpec, program: Program, node: OpNode) -> list[tuple[int, ...]]:
    """The shape of each input of ``node``: from the layout, the batch or the program."""
    layout, batch = state_layout(spec), dict(program.batch)
    shapes = []
    for ref in node.inputs:
        if ref.source == "state":
            shapes.append(layout[str(ref.key)].shape)
        elif ref.source == "batch":
            shapes.append(batch[str(ref.key)])
        else:
            assert isinstance(ref.key, int)
            shapes.append(program.nodes[ref.key].shape)
    return shapes


def _scalar_inputs(node: OpNode, step_index: int) -> dict[int, int]:
    """The inputs of ``node`` whose value the ledger knows: the counter (step a)."""
    return {
        j: step_index
        for j, ref in enumerate(node.inputs)
        if ref.source == "state" and ref.key == STEP_KEY
    }


def counter_root(step_index: int) -> Hash32:
    """The data root of the step counter at ``step_index`` (an int64 scalar)."""
    return data_root(struct.pack("<q", step_index))


def unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    index = []
    for dim in reversed(shape):
        flat, rest = divmod(flat, dim)
        index.append(rest)
    return tuple(reversed(index))


def box_runs(shape: Sequence[int], box: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The box's elements as flat [start, stop) runs of row-major order (one per row of
    its last dimension), in order."""
    strides = [math.prod(shape[d + 1 :]) for d in range(len(shape))]
    if not box:
        return [(0, 1)]
    lead = [range(lo, hi) for lo, hi in box[:-1]]
    lo, hi = box[-1]
    runs = []
    for index in itertools.product(*lead):
        start = sum(i * s for i, s in zip(index, strides, strict=False)) + lo
        runs.append((start, start + hi - lo))
    return runs


def _nbytes(shape: Sequence[int]) -> int:
    return VALUE_BYTES * math.prod(shape)


# --- verifying what a party posts ----------------------------------------------------------


def _verify_trace_leaf(what: str, entry: bytes, game_: OperatorGame, proof: InclusionProof) -> int:
    """``entry`` is leaf ``proof.index`` of the solver's trace; returns the index."""
    try:
        verify_inclusion(entry, proof.index, game_.trace_size, game_.trace_root, proof)
    except ProofError as exc:
        raise InvalidProofError(what, exc.message) from exc
    return proof.index


def _verify_chunk(what: str, root: Hash32, nbytes: int, chunk: ChunkPiece) -> None:
    """``chunk`` is chunk ``chunk.index`` of a tensor of ``nbytes`` whose data root is
    ``root``: the right length, and its path leads to the root."""
    total = chunk_count(nbytes)
    if not 0 <= chunk.index < total:
        raise MalformedBodyError(what, f"chunk {chunk.index} of a tensor of {total} chunks")
    size = min(CHUNK_BYTES, nbytes - chunk.index * CHUNK_BYTES)
    if len(chunk.data) != size:
        raise MalformedBodyError(what, f"is {len(chunk.data)} bytes; chunk {chunk.index} is {size}")
    try:
        found = inclusion_root(sha256(chunk.data), InclusionProof(chunk.index, total, chunk.path))
    except ProofError as exc:
        raise InvalidProofError(what, exc.message) from exc
    if found != root:
        raise InvalidProofError(what, f"chunk {chunk.index} does not lead to the data root")


def _input_root(
    what: str, dispute: Dispute, spec: JobSpec, program: Program, j: int, piece: InputPiece
) -> Hash32:
    """The agreed data root of input j of op k: the pre-state's (committed with the trace)
    or an earlier op's (its entry proved as that op's leaf of the trace)."""
    game_ = _game(dispute)
    ref = _op(dispute, program).inputs[j]
    if ref.source == "state":
        if piece.data_root is not None or piece.entry_proof is not None:
            raise MalformedBodyError(what, "a pre-state input has no data_root or entry_proof")
        return game_.pre_roots[sorted(state_layout(spec)).index(str(ref.key))]
    assert ref.source == "op" and isinstance(ref.key, int)
    if piece.data_root is None or piece.entry_proof is None:
        raise MalformedBodyError(what, "an operator input needs data_root and entry_proof")
    if piece.entry_proof.index != ref.key:
        raise MalformedBodyError(what, f"entry_proof is for leaf {piece.entry_proof.index}")
    entry = output_entry(ref.key, program.nodes[ref.key].shape, piece.data_root)
    _verify_trace_leaf(f"{what}.entry_proof", entry, game_, piece.entry_proof)
    return piece.data_root


def _value(chunks: dict[int, bytes], flat: int) -> bytes:
    chunk, offset = divmod(flat, VALUES_PER_CHUNK)
    return chunks[chunk][offset * VALUE_BYTES : (offset + 1) * VALUE_BYTES]


def _signed(raw: bytes) -> int:
    return int.from_bytes(raw, "little", signed=True)


# --- the moves ------------------------------------------------------------------------------


def process_commit_trace(
    state: LedgerState, ctx: TxContext, body: CommitTraceBody, params: Params
) -> list[Event]:
    """Solver: the trace of step a, tied to the agreed pre-state and the disputed post-state."""
    dispute, party = game.begin_move(state, ctx, body.dispute_id, "commit_trace")
    spec, program = _program(dispute, state)
    a, hash_lo, hash_hi = dispute.step_lo, dispute.hash_lo, dispute.hash_hi
    assert a is not None and hash_lo is not None and hash_hi is not None
    layout = state_layout(spec)
    names = sorted(layout)
    # INVARIANT: one data root per tensor of the layout, rebuilding both agreed roots ...
    for what, roots, expected, step in (
        ("pre", body.pre, hash_lo, a),
        ("post", body.post, hash_hi, a + 1),
    ):
        if len(roots) != len(names):
            raise MalformedBodyError(what, f"has {len(roots)} data roots; the state {len(names)}")
        entries = [
            tensor_entry(n, layout[n].dtype, layout[n].shape, r)
            for n, r in zip(names, roots, strict=True)
        ]
        root = root_of_tensor_entries(entries)
        if root != expected:
            raise HashMismatchError(f"state root of the {what} data roots", expected, root)
        # ... with the counter at a (pre) and a + 1 (post).
        if roots[names.index(STEP_KEY)] != counter_root(step):
            raise MalformedBodyError(what, f"the step counter's data root is not that of {step}")
    size = len(program.nodes)
    operator = OperatorGame(body.trace_root, size, body.overflow, body.pre)
    if body.overflow:
        # INVARIANT: an overflowed step keeps every tensor but the counter ...
        for name, pre, post in zip(names, body.pre, body.post, strict=True):
            if name != STEP_KEY and pre != post:
                raise MalformedBodyError("post", f"{name} changes in a step claimed to overflow")
        # ... and its trace holds an overflow.
        assert body.overflow_proof is not None
        _verify_trace_leaf("overflow_proof", OVERFLOW_ENTRY, operator, body.overflow_proof)
    else:
        _require_post_from_trace(body, names, program, operator)
    dispute = game.record(
        dispute,
        "commit_trace",
        party,
        ctx,
        step=a,
        trace_root=body.trace_root,
        trace_size=size,
        overflow=body.overflow,
    )
    return _descend(state, ctx, dispute, operator, "trace", size, body.trace_root, params)


def _require_post_from_trace(
    body: CommitTraceBody, names: list[str], program: Program, operator: OperatorGame
) -> None:
    """Each post tensor an operator writes is that operator's leaf; each kept one is the
    pre-state's."""
    if len(body.post_proofs) != len(names):
        raise MalformedBodyError("post_proofs", f"needs one entry per tensor ({len(names)})")
    sources = dict(program.post_state)
    for name, post, proof in zip(names, body.post, body.post_proofs, strict=True):
        what = f"post_proofs[{names.index(name)}]"
        ref = sources.get(name)
        if ref is None or ref.source != "op":
            if proof is not None:
                raise MalformedBodyError(what, f"{name} is not an operator's output: null")
            if ref is not None and post != body.pre[names.index(str(ref.key))]:
                raise MalformedBodyError("post", f"{name} is kept by the step but changed")
            continue
        assert isinstance(ref.key, int)
        if proof is None or proof.index != ref.key:
            raise MalformedBodyError(what, f"needs the proof of leaf {ref.key} ({name})")
        entry = output_entry(ref.key, program.nodes[ref.key].shape, post)
        _verify_trace_leaf(what, entry, operator, proof)


def _descend(
    state: LedgerState,
    ctx: TxContext,
    dispute: Dispute,
    operator: OperatorGame,
    tree: str,
    size: int,
    root: Hash32,
    params: Params,
) -> list[Event]:
    """Start the descent over ``tree`` (``size`` leaves, root ``root``)."""
    operator = replace(operator, tree=tree)
    node = {"node_lo": 0, "node_hi": size, "node_hash": root, "left_hash": None, "right_hash": None}
    if size > 1:
        return _enter(state, ctx, dispute, Phase.REVEAL_CHILDREN, params, operator=operator, **node)
    return reached_leaf(
        state, ctx, replace(dispute, operator=operator), NodeRef(0, 1), params, node
    )


def reached_leaf(
    state: LedgerState,
    ctx: TxContext,
    dispute: Dispute,
    leaf: NodeRef,
    params: Params,
    changes: dict[str, Any],
) -> list[Event]:
    """The descent (``contracts_sim.dispute.process_choose_child``) reached ``leaf`` of the
    trace (op k: the solver opens its entry) or of op k's chunks (the solver reveals it)."""
    operator = _game(dispute)
    if operator.tree == "trace":
        _, program = _program(dispute, state)
        label = program.nodes[leaf.lo].label
        operator = replace(operator, op_index=leaf.lo, op_label=label)
        phase = Phase.REVEAL_OP
    else:
        operator = replace(operator, chunk_index=leaf.lo)
        phase = Phase.REVEAL_CHUNK
    return _enter(state, ctx, dispute, phase, params, operator=operator, **changes)


def process_reveal_op(
    state: LedgerState, ctx: TxContext, body: RevealOpBody, params: Params
) -> list[Event]:
    """Solver: entry k, an overflow or its output's data root."""
    dispute, party = game.begin_move(state, ctx, body.dispute_id, "reveal_op")
    _, program = _program(dispute, state)
    node, operator = _op(dispute, program), _game(dispute)
    if body.overflow:
        entry = OVERFLOW_ENTRY
    else:
        assert body.data_root is not None
        entry = output_entry(node.index, node.shape, body.data_root)
    # INVARIANT: the entry is the leaf the descent reached.
    assert dispute.node_hash is not None
    if hash_leaf(entry) != dispute.node_hash:
        raise HashMismatchError("hash_leaf(entry)", dispute.node_hash, hash_leaf(entry))
    dispute = game.record(
        dispute,
        "reveal_op",
        party,
        ctx,
        op=node.index,
        overflow=body.overflow,
        data_root=body.data_root,
    )
    if body.overflow and not operator.overflow:
        reason = _contradiction(node.index, node.label)
        return _verdict(
            state, ctx, dispute, Party.CHALLENGER, reason, params, Resolution.OVERFLOW_EVIDENCE
        )
    if body.overflow:
        return _enter(state, ctx, dispute, Phase.PROVE_OVERFLOW, params)
    assert body.data_root is not None
    operator = replace(operator, output_root=body.data_root)
    total = chunk_count(_nbytes(node.shape))
    if total == 0:  # nothing to dispute in an empty output but an overflow
        return _enter(state, ctx, dispute, Phase.NAME_ELEMENT, params, operator=operator)
    return _descend(state, ctx, dispute, operator, "chunks", total, body.data_root, params)


def process_reveal_chunk(
    state: LedgerState, ctx: TxContext, body: RevealChunkBody, params: Params
) -> list[Event]:
    """Solver: the bytes of chunk c of op k's output."""
    dispute, party = game.begin_move(state, ctx, body.dispute_id, "reveal_chunk")
    _, program = _program(dispute, state)
    node, operator = _op(dispute, program), _game(dispute)
    c = operator.chunk_index
    assert c is not None and dispute.node_hash is not None
    size = min(CHUNK_BYTES, _nbytes(node.shape) - c * CHUNK_BYTES)
    # INVARIANT: the chunk has its length and hashes to the leaf the descent reached.
    if len(body.data) != size:
        raise MalformedBodyError("data", f"is {len(body.data)} bytes; chunk {c} is {size}")
    leaf = hash_leaf(sha256(body.data))
    if leaf != dispute.node_hash:
        raise HashMismatchError("hash_leaf(sha256(data))", dispute.node_hash, leaf)
    dispute = game.record(dispute, "reveal_chunk", party, ctx, op=node.index, chunk=c)
    operator = replace(operator, chunk=body.data)
    return _enter(state, ctx, dispute, Phase.NAME_ELEMENT, params, operator=operator)


def process_name_element(
    state: LedgerState, ctx: TxContext, body: NameElementBody, params: Params
) -> list[Event]:
    """Challenger: the element of the revealed chunk it disagrees with."""
    dispute, party = game.begin_move(state, ctx, body.dispute_id, "name_element")
    operator = _game(dispute)
    c, chunk = operator.chunk_index, operator.chunk
    if c is None or chunk is None:
        raise MalformedBodyError("element", "op k's output is empty: nothing to name")
    first = c * VALUES_PER_CHUNK
    # INVARIANT: the element is in the revealed chunk.
    if not first <= body.element < first + len(chunk) // VALUE_BYTES:
        raise MalformedBodyError(
            "element", f"must be in chunk {c}: {first}..{first + len(chunk) // VALUE_BYTES - 1}"
        )
    dispute = game.record(dispute, "name_element", party, ctx, element=body.element)
    operator = replace(operator, element=body.element)
    return _enter(state, ctx, dispute, Phase.POST_PIECES, params, operator=operator)


def process_post_pieces(
    state: LedgerState, ctx: TxContext, body: PostPiecesBody, params: Params
) -> list[Event]:
    """Solver: the proved inputs of the named element; the referee recomputes it."""
    dispute, party = game.begin_move(state, ctx, body.dispute_id, "post_pieces")
    spec, program = _program(dispute, state)
    node, operator = _op(dispute, program), _game(dispute)
    e, chunk = operator.element, operator.chunk
    a = dispute.step_lo
    assert e is not None and chunk is not None and a is not None
    shapes = input_shapes(spec, program, node)
    index = unravel(e, node.shape)
    boxes = referee.element_reads(node, shapes, index)
    if len(body.inputs) != len(node.inputs):
        raise MalformedBodyError(
            "inputs", f"needs one entry per input of op {node.index} ({len(node.inputs)})"
        )
    posted = sum(len(c.data) for p in body.inputs if p is not None for c in p.chunks)
    if posted > params.max_blob_bytes:
        raise MalformedBodyError("inputs", f"carry {posted} bytes; at most {params.max_blob_bytes}")
    values: list[bytes | None] = []
    for j, (ref, box, piece) in enumerate(zip(node.inputs, boxes, body.inputs, strict=True)):
        what = f"inputs[{j}]"
        if box is None or ref.source == "batch":
            if piece is not None:
                raise MalformedBodyError(
                    what, "must be null: the element does not read it or the referee computes it"
                )
            values.append(None)
            continue
        if piece is None:
            raise MalformedBodyError(what, f"the element reads {box} of it")
        values.append(_box_bytes(what, dispute, spec, program, j, shapes[j], box, piece))
    solver_value = _signed(_value({operator.chunk_index or 0: chunk}, e))
    try:
        expected: int | None = referee.operator_element(spec, a, node, index, boxes, values)
        invalid = ""
    except ProofNetError as exc:
        expected, invalid = None, exc.message
    dispute = game.record(
        dispute, "post_pieces", party, ctx, op=node.index, element=e, bytes=posted, value=expected
    )
    where = f"op {node.index} ({node.label}) element {e}"
    if expected is None:
        return _verdict(
            state,
            ctx,
            dispute,
            Party.CHALLENGER,
            f"{where} cannot be recomputed: {invalid}",
            params,
            Resolution.OPERATOR_CHECK,
        )
    if expected == solver_value:
        return _verdict(
            state,
            ctx,
            dispute,
            Party.SOLVER,
            f"{where} recomputed to the solver's value",
            params,
            Resolution.OPERATOR_CHECK,
        )
    return _verdict(
        state,
        ctx,
        dispute,
        Party.CHALLENGER,
        f"{where} recomputed to {expected}, not the solver's {solver_value}",
        params,
        Resolution.OPERATOR_CHECK,
    )


def _box_bytes(
    what: str,
    dispute: Dispute,
    spec: JobSpec,
    program: Program,
    j: int,
    shape: tuple[int, ...],
    box: Sequence[tuple[int, int]],
    piece: InputPiece,
) -> bytes:
    """Input j's box in row-major order, from exactly the chunks that cover it, each proved
    against the input's agreed data root."""
    root = _input_root(what, dispute, spec, program, j, piece)
    runs = box_runs(shape, box)
    needed = sorted(
        {
            c
            for lo, hi in runs
            for c in range(lo // VALUES_PER_CHUNK, (hi - 1) // VALUES_PER_CHUNK + 1)
        }
    )
    given = [c.index for c in piece.chunks]
    if given != needed:
        raise MalformedBodyError(f"{what}.chunks", f"must be chunks {needed} in order, got {given}")
    nbytes = _nbytes(shape)
    for i, c in enumerate(piece.chunks):
        _verify_chunk(f"{what}.chunks[{i}]", root, nbytes, c)
    chunks = {c.index: c.data for c in piece.chunks}
    parts = []
    for lo, hi in runs:
        for flat in range(lo, hi):
            parts.append(_value(chunks, flat))
    return b"".join(parts)


def process_show_overflow(
    state: LedgerState, ctx: TxContext, body: ShowOverflowBody, params: Params
) -> list[Event]:
    """Either party, in its turn: proof of an overflow (see the module docstring)."""
    dispute, party = game.begin_move(state, ctx, body.dispute_id, "show_overflow")
    operator = dispute.operator
    if operator is None or (dispute.phase is Phase.CHOOSE_CHILD and operator.tree != "trace"):
        raise MalformedBodyError("dispute_id", "an overflow is shown over the trace or at op k")
    if dispute.phase is Phase.CHOOSE_CHILD:
        # The solver claimed no overflow: any overflowed leaf of its trace contradicts it.
        if operator.overflow or body.leaf is None:
            raise MalformedBodyError(
                "leaf",
                "during the trace descent: an overflowed leaf, against a solver claiming none",
            )
        j = _verify_trace_leaf("leaf", OVERFLOW_ENTRY, operator, body.leaf)
        dispute = game.record(dispute, "show_overflow", party, ctx, leaf=j)
        _, program = _program(dispute, state)
        reason = _contradiction(j, program.nodes[j].label)
        dispute = replace(
            dispute, operator=replace(operator, op_index=j, op_label=program.nodes[j].label)
        )
        return _verdict(
            state, ctx, dispute, Party.CHALLENGER, reason, params, Resolution.OVERFLOW_EVIDENCE
        )
    spec, program = _program(dispute, state)
    node = _op(dispute, program)
    if body.leaf is not None:
        inputs = {int(ref.key) for ref in node.inputs if ref.source == "op"}
        if body.leaf.index not in inputs:
            raise MalformedBodyError(
                "leaf", f"must be an input of op {node.index}: {sorted(inputs)}"
            )
        _verify_trace_leaf("leaf", OVERFLOW_ENTRY, operator, body.leaf)
        what = f"op {node.index} ({node.label}) reads op {body.leaf.index}, an overflow"
        dispute = game.record(dispute, "show_overflow", party, ctx, leaf=body.leaf.index)
    else:
        assert body.check is not None
        what = _require_failing_check(dispute, spec, program, node, body.check, body.witnesses)
        dispute = game.record(dispute, "show_overflow", party, ctx, check=body.check)
    return _verdict(state, ctx, dispute, party, what, params, Resolution.OVERFLOW_EVIDENCE)


def _require_failing_check(
    dispute: Dispute,
    spec: JobSpec,
    program: Program,
    node: OpNode,
    check_index: int,
    witnesses: Sequence[Witness],
) -> str:
    """Refuse unless the witnesses prove check ``check_index`` of op k fails; says which."""
    a = dispute.step_lo
    assert a is not None
    shapes = input_shapes(spec, program, node)
    checks = referee.operator_checks(node, shapes, _scalar_inputs(node, a))
    if not 0 <= check_index < len(checks):
        raise MalformedBodyError("check", f"op {node.index} makes {len(checks)} checks")
    check = checks[check_index]
    sources = [j for j in check.sources if j is not None]
    if len(witnesses) != len(sources):
        raise MalformedBodyError("witnesses", f"needs one per input factor ({len(sources)})")
    found: dict[int, list[int]] = {}
    for i, (j, witness) in enumerate(zip(sources, witnesses, strict=True)):
        value = _witness_value(
            f"witnesses[{i}]", dispute, spec, program, node, j, shapes[j], witness
        )
        found.setdefault(j, []).append(value)
    if not referee.check_fails(check, found):
        raise MalformedBodyError(
            "witnesses", f"do not make check {check_index} ({check.what}) fail"
        )
    return f"op {node.index} ({node.label}) overflows: {check.where} {check.what}"


def _witness_value(
    what: str,
    dispute: Dispute,
    spec: JobSpec,
    program: Program,
    node: OpNode,
    j: int,
    shape: tuple[int, ...],
    witness: Witness,
) -> int:
    """The value of one element of input j of op k, proved (or computed, for the batch)."""
    if not 0 <= witness.element < math.prod(shape):
        raise MalformedBodyError(f"{what}.element", f"input {j} has {math.prod(shape)} elements")
    ref = node.inputs[j]
    a = dispute.step_lo
    assert a is not None
    if ref.source == "batch":
        if witness.piece is not None:
            raise MalformedBodyError(
                f"{what}.piece", "must be null: the referee computes the batch"
            )
        return referee.batch_value(spec, a, str(ref.key), witness.element)
    if witness.piece is None or len(witness.piece.chunks) != 1:
        raise MalformedBodyError(f"{what}.piece", "needs the one chunk holding the element")
    root = _input_root(f"{what}.piece", dispute, spec, program, j, witness.piece)
    chunk = witness.piece.chunks[0]
    if chunk.index != witness.element // VALUES_PER_CHUNK:
        raise MalformedBodyError(f"{what}.piece", f"chunk {chunk.index} does not hold the element")
    _verify_chunk(f"{what}.piece.chunks[0]", root, _nbytes(shape), chunk)
    return _signed(_value({chunk.index: chunk.data}, witness.element))


def _contradiction(op: int, label: str) -> str:
    return f"op {op} ({label}) overflows in the solver's trace; it claimed the step does not"


def _enter(
    state: LedgerState,
    ctx: TxContext,
    dispute: Dispute,
    phase: Phase,
    params: Params,
    **changes: Any,
) -> list[Event]:
    """Enter ``phase`` with a fresh move deadline (``contracts_sim.dispute.advance_until``)."""
    deadline = Height(ctx.height + params.move_timeout)
    return game.advance_until(state, dispute, phase, deadline, **changes)


def _verdict(
    state: LedgerState,
    ctx: TxContext,
    dispute: Dispute,
    winner: Party,
    reason: str,
    params: Params,
    resolution: Resolution,
) -> list[Event]:
    """An operator-level verdict: located at step a and op k."""
    operator = _game(dispute)
    dispute = replace(dispute, operator=replace(operator, located_op=operator.op_index))
    return game.resolve_dispute(
        state, ctx, dispute, winner, reason, dispute.step_lo, params, resolution
    )
