"""Benchmark: what an operator-level dispute costs the referee, against one whole step.

    python bench/bench_operator_dispute.py [--rounds 3] [--samples 5] [--json] [--quick]

Issue 10, item 5. A dispute at operator level ends (phase 3) with the referee recomputing
ONE element of ONE operator's output from the few input values that element reads, each
proved against a root the ledger already trusts; before it, the referee re-executed the
whole step. For every operator of one step of

  * the MLP at 4.35M parameters (examples/digits-mlp.yaml, hidden [2048, 2048], batch 512),
  * the transformer example (examples/text-transformer.yaml),

and the worst of 16 output elements of each (first, last, middle, 13 seeded), it reports:

  MACs    the element's multiply-adds: the contraction length of a product (matmul_nt,
          attention_scores) or of a dot product (rms_gain_grad, rms_mean_dot); 0 for the
          other kinds, whose few integer operations per value are counted by ``read``
  read    the values the element reads: the sizes of ``op_def(kind).reads``'s boxes
  chunks  the 4 KiB chunks covering the boxes, which the solver posts (none for a batch
          input: the referee computes the batch from the spec)
  hashes  the inclusion-proof hashes posted with them: for a pre-state tensor, per chunk a
          ``ChunkProof`` (chunk path + tensor path, to the agreed pre-state root); for an
          earlier operator's output, per chunk its chunk path, once the data root and the
          output's entry's path in the trace (to the committed trace root)
  KiB     chunk bytes + 32 bytes a hash (raw, before any JSON/hex encoding)
  ref us  the referee's thread CPU time to verify those proofs (``chunk_proof_root``;
          ``inclusion_root`` twice for an operator's output), decode the pieces from the chunk
          bytes, compute the batch where the operator reads it, and run
          ``op_def(kind).element`` — on real chunks of a real step (step 0 from ``init``,
          executed by ``run_trace``), each element checked equal to the run's output. Timed
          for the worst operator of each kind, median of rounds x samples.

against one whole step: its multiply-adds counted from the program (output elements x
contraction length of every product and dot product), beside ``protocol.layout.step_work``'s
products (3 B macs_per_example) and its total units; and its thread CPU time
(``program.step``, what the referee ran before; ``run_trace`` once, for the outputs).

Rounds: phase 2 descends the trace tree (ceil(log2 operators) descents) and phase 3 the
disputed output's chunk tree (ceil(log2 chunks)), two moves a descent; phase 1 (the step
bisection) is unchanged and not counted here.

Rounds of step timing and referee samples are interleaved; torch runs on one thread
(``--threads``) so that thread CPU time is the whole cost. The machine's load average is
printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from protocol.exact.program import init, step
from protocol.exact.state import State, state_records
from protocol.exact.trace import TraceRun, op_def, program_of, run_trace
from protocol.exact.trace.ops import unravel
from protocol.exact.trace.registry import Box
from protocol.exact.trace.run import batch_tensors, tensor_bytes
from protocol.hashing import sha256
from protocol.layout import expected_shapes, parameter_count, step_work
from protocol.merkle import InclusionProof, inclusion_path, inclusion_root, split_point
from protocol.spec import JobSpec, parse_spec
from protocol.state_commitment import (
    CHUNK_BYTES,
    ChunkProof,
    StateTree,
    chunk_count,
    chunk_entries,
    chunk_proof_root,
)
from protocol.trace import OpNode, Program, Ref, output_entry

ROOT = Path(__file__).resolve().parents[1]
VALUE_BYTES = 8  # int64
PER_CHUNK = CHUNK_BYTES // VALUE_BYTES
HASH_BYTES = 32
BOUND = 0.01  # issue 10's acceptance: referee work per dispute <= 1 % of one step's FLOPs
DOT_KINDS = ("matmul_nt", "attention_scores", "rms_gain_grad", "rms_mean_dot")
"""Kinds whose element is a dot product along input 0's last dimension (a (.., M, K),
q (.., T, dh), dy^T (d, rows), dn (rows, d)): its multiply-adds are that length."""
PRODUCT_KINDS = ("matmul_nt", "attention_scores")
"""The products ``step_work`` counts (``macs_per_example``)."""
SAMPLED_ELEMENTS = 16


@dataclass(frozen=True)
class Model:
    """One spec to measure: an example file and the fields changed in it."""

    name: str
    example: str
    changes: dict[str, Any]

    def spec(self) -> JobSpec:
        data = yaml.safe_load((ROOT / "examples" / self.example).read_text())
        for key, value in self.changes.items():
            where = data
            *path, last = key.split(".")
            for part in path:
                where = where[part]
            where[last] = value
        return parse_spec(data)


MODELS = (
    Model("mlp 4.35M", "digits-mlp.yaml", {"model.hidden": [2048, 2048], "batch_size": 512}),
    Model("transformer", "text-transformer.yaml", {}),
)
QUICK_MODELS = (
    Model("mlp quick", "digits-mlp.yaml", {}),
    Model("transformer quick", "text-transformer.yaml", {"batch_size": 2, "model.layers": 1}),
)


# --- what a dispute at one element posts (counted from shapes alone) ------------------------


def path_length(index: int, size: int) -> int:
    """The length of RFC 9162's inclusion path of leaf ``index`` of ``size`` leaves."""
    length = 0
    while size > 1:
        left = split_point(size)
        if index < left:
            size = left
        else:
            index, size = index - left, size - left
        length += 1
    return length


def box_flat(shape: Sequence[int], box: Box) -> np.ndarray:
    """The row-major flat indices of ``box``'s values in a tensor of ``shape``, in the
    box's own row-major order."""
    if not shape:
        return np.zeros(1, dtype=np.int64)
    strides = [math.prod(shape[d + 1 :]) for d in range(len(shape))]
    grids = np.ix_(*[np.arange(lo, hi, dtype=np.int64) for lo, hi in box])
    flat = sum(g * s for g, s in zip(grids, strides, strict=True))
    return np.asarray(flat, dtype=np.int64).reshape(-1)


def tensor_chunks(shape: Sequence[int]) -> int:
    return chunk_count(VALUE_BYTES * math.prod(shape))


@dataclass
class Shapes:
    """Every tensor's shape and position that a dispute's proofs depend on."""

    spec: JobSpec
    program: Program
    state: dict[str, tuple[int, ...]] = field(init=False)
    state_index: dict[str, int] = field(init=False)
    batch: dict[str, tuple[int, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.state = expected_shapes(self.spec)
        self.state_index = {name: i for i, name in enumerate(sorted(self.state))}
        self.batch = dict(self.program.batch)

    def of(self, ref: Ref) -> tuple[int, ...]:
        if ref.source == "state":
            return self.state[str(ref.key)]
        if ref.source == "batch":
            return self.batch[str(ref.key)]
        assert isinstance(ref.key, int)
        return self.program.nodes[ref.key].shape


@dataclass(frozen=True)
class Posted:
    """What the solver posts for one input box and what the referee hashes to check it."""

    chunks: tuple[int, ...]
    chunk_bytes: int
    hashes: int  # proof hashes posted
    verified: int  # hashes the referee computes


def posted_for(shapes: Shapes, ref: Ref, box: Box | None) -> Posted:
    if box is None or ref.source == "batch":
        return Posted((), 0, 0, 0)
    shape = shapes.of(ref)
    total = tensor_chunks(shape)
    chunks = tuple(int(c) for c in np.unique(box_flat(shape, box) // PER_CHUNK))
    nbytes = VALUE_BYTES * math.prod(shape)
    chunk_bytes = sum(min(CHUNK_BYTES, nbytes - c * CHUNK_BYTES) for c in chunks)
    chunk_paths = sum(path_length(c, total) for c in chunks)
    if ref.source == "state":  # a ChunkProof per chunk, to the pre-state root
        tensor_path = path_length(shapes.state_index[str(ref.key)], len(shapes.state))
        hashes = chunk_paths + len(chunks) * tensor_path
        return Posted(chunks, chunk_bytes, hashes, hashes + 3 * len(chunks))
    assert isinstance(ref.key, int)  # chunk paths, the data root, the entry's trace path
    trace_path = path_length(ref.key, len(shapes.program.nodes))
    hashes = chunk_paths + 1 + trace_path
    return Posted(chunks, chunk_bytes, hashes, chunk_paths + len(chunks) + 1 + trace_path)


@dataclass(frozen=True)
class ElementCost:
    """A dispute at element ``flat`` of operator ``node``: the referee's work and the
    solver's posting."""

    node: OpNode
    flat: int
    boxes: tuple[Box | None, ...]
    posted: tuple[Posted, ...]
    macs: int
    read: int

    @property
    def chunks(self) -> int:
        return sum(len(p.chunks) for p in self.posted)

    @property
    def hashes(self) -> int:
        return sum(p.hashes for p in self.posted)

    @property
    def verified(self) -> int:
        return sum(p.verified for p in self.posted)

    @property
    def bytes(self) -> int:
        return sum(p.chunk_bytes for p in self.posted) + HASH_BYTES * self.hashes


def element_macs(node: OpNode, shapes: Shapes) -> int:
    return shapes.of(node.inputs[0])[-1] if node.kind in DOT_KINDS else 0


def element_cost(shapes: Shapes, node: OpNode, flat: int) -> ElementCost:
    in_shapes = [shapes.of(ref) for ref in node.inputs]
    boxes = op_def(node.kind).reads(node, in_shapes, unravel(flat, node.shape))
    posted = tuple(posted_for(shapes, r, b) for r, b in zip(node.inputs, boxes, strict=True))
    read = sum(math.prod(hi - lo for lo, hi in b) for b in boxes if b is not None)
    return ElementCost(node, flat, boxes, posted, element_macs(node, shapes), read)


def worst_element(shapes: Shapes, node: OpNode) -> ElementCost:
    """The costliest of ``SAMPLED_ELEMENTS`` elements of ``node``'s output (the box sizes
    do not depend on the element; which chunks they cover does)."""
    size = math.prod(node.shape)
    rng = np.random.default_rng(node.index)
    picks = {0, size - 1, size // 2, *(int(x) for x in rng.integers(0, size, 13))}
    costs = [element_cost(shapes, node, flat) for flat in sorted(picks)]
    return max(costs, key=lambda c: (c.bytes, c.verified))


def work_key(cost: ElementCost) -> tuple[int, int, int]:
    """Which dispute costs the referee most: multiply-adds, then values read, then bytes."""
    return (cost.macs, cost.read, cost.bytes)


def descents(leaves: int) -> int:
    return math.ceil(math.log2(leaves)) if leaves > 1 else 0


def step_macs(shapes: Shapes, kinds: Sequence[str]) -> int:
    nodes = shapes.program.nodes
    return sum(element_macs(n, shapes) * math.prod(n.shape) for n in nodes if n.kind in kinds)


# --- the referee on real pieces --------------------------------------------------------------


@dataclass
class Evidence:
    """The real chunks and proofs a solver posts for one element, and the roots the referee
    trusts."""

    cost: ElementCost
    state_root: bytes
    trace_root: bytes
    trace_size: int
    state_chunks: list[tuple[int, dict[int, bytes], list[ChunkProof]]]
    op_chunks: list[tuple[int, dict[int, bytes], list[tuple[bytes, ...]], tuple[bytes, ...]]]
    batch_inputs: list[int]

    def posted(self) -> tuple[int, int]:
        """(chunk bytes, proof hashes) of the real chunks and proofs: what ``posted_for``
        counted from shapes alone."""
        chunk_bytes, hashes = 0, 0
        for _, chunks, proofs in self.state_chunks:
            chunk_bytes += sum(len(c) for c in chunks.values())
            hashes += sum(len(p.chunk_path) + len(p.tensor_path) for p in proofs)
        for _, chunks, paths, trace_path in self.op_chunks:
            chunk_bytes += sum(len(c) for c in chunks.values())
            hashes += sum(len(p) for p in paths) + 1 + len(trace_path)  # + the data root
        return chunk_bytes, hashes


class Step:
    """One real step of a spec, executed as its trace, with what proofs need."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.state: State = init(spec)
        self.program = program_of(spec)
        started = time.thread_time()
        self.run: TraceRun = run_trace(spec, self.state, 0)
        self.run_trace_s = time.thread_time() - started
        if self.run.overflowed:
            raise RuntimeError(f"{spec.model.family}: step 0 overflowed; nothing to dispute")
        self.trace_root = self.run.root
        self._tree: StateTree | None = None
        self._output: dict[int, tuple[bytes, list[bytes]]] = {}

    @property
    def tree(self) -> StateTree:
        if self._tree is None:
            self._tree = StateTree(state_records(self.state))
        return self._tree

    def output(self, j: int) -> tuple[bytes, list[bytes]]:
        """Operator j's output bytes and chunk entries."""
        if j not in self._output:
            out = self.run.outputs[j]
            assert out is not None
            data = tensor_bytes(out)
            self._output[j] = (data, list(chunk_entries(data)))
        return self._output[j]

    def evidence(self, cost: ElementCost) -> Evidence:
        state_chunks, op_chunks, batch_inputs = [], [], []
        for j, (ref, posted) in enumerate(zip(cost.node.inputs, cost.posted, strict=True)):
            if cost.boxes[j] is None:
                continue
            if ref.source == "batch":
                batch_inputs.append(j)
            elif ref.source == "state":
                name = str(ref.key)
                chunks = {c: self.tree.chunk(name, c) for c in posted.chunks}
                proofs = [self.tree.chunk_proof(name, c) for c in posted.chunks]
                state_chunks.append((j, chunks, proofs))
            else:
                assert isinstance(ref.key, int)
                data, entries = self.output(ref.key)
                chunks = {c: data[c * CHUNK_BYTES : (c + 1) * CHUNK_BYTES] for c in posted.chunks}
                paths = [inclusion_path(entries, c) for c in posted.chunks]
                trace_path = inclusion_path(self.run.entries, ref.key)
                op_chunks.append((j, chunks, paths, trace_path))
        return Evidence(
            cost,
            self.tree.root,
            self.trace_root,
            len(self.program.nodes),
            state_chunks,
            op_chunks,
            batch_inputs,
        )

    def expected(self, cost: ElementCost) -> int:
        out = self.run.outputs[cost.node.index]
        assert out is not None
        return int(out.reshape(-1)[cost.flat].item())


def piece_of(chunks: dict[int, bytes], shape: tuple[int, ...], box: Box) -> torch.Tensor:
    """Input values cut to ``box`` from the chunks that cover it (what the referee does
    with the posted bytes)."""
    flat = box_flat(shape, box)
    order = sorted(chunks)
    values = np.frombuffer(b"".join(chunks[c] for c in order), dtype="<i8")
    at = np.searchsorted(np.asarray(order), flat // PER_CHUNK) * PER_CHUNK + flat % PER_CHUNK
    return torch.from_numpy(values[at].astype(np.int64)).reshape(tuple(hi - lo for lo, hi in box))


def verified_pieces(spec: JobSpec, shapes: Shapes, ev: Evidence) -> list[torch.Tensor | None]:
    """Verify every posted chunk against the root it is proved to and cut the pieces."""
    node, boxes = ev.cost.node, ev.cost.boxes
    pieces: list[torch.Tensor | None] = [None] * len(node.inputs)
    for j, chunks, proofs in ev.state_chunks:
        for proof in proofs:
            if chunk_proof_root(chunks[proof.chunk_index], proof) != ev.state_root:
                raise RuntimeError(f"operator {node.index}: a state chunk does not verify")
        box = boxes[j]
        assert box is not None
        pieces[j] = piece_of(chunks, shapes.of(node.inputs[j]), box)
    for j, chunks, paths, trace_path in ev.op_chunks:
        source = node.inputs[j].key
        assert isinstance(source, int)
        shape = shapes.of(node.inputs[j])
        total = tensor_chunks(shape)
        roots = {
            inclusion_root(sha256(chunks[c]), InclusionProof(c, total, path))
            for c, path in zip(sorted(chunks), paths, strict=True)
        }
        if len(roots) != 1:
            raise RuntimeError(f"operator {node.index}: chunks of one input disagree")
        entry = output_entry(source, shape, roots.pop())
        if (
            inclusion_root(entry, InclusionProof(source, ev.trace_size, trace_path))
            != ev.trace_root
        ):
            raise RuntimeError(f"operator {node.index}: input {j} is not in the trace")
        box = boxes[j]
        assert box is not None
        pieces[j] = piece_of(chunks, shape, box)
    if ev.batch_inputs:
        batch = batch_tensors(spec, 0, torch.device("cpu"))
        for j in ev.batch_inputs:
            box = boxes[j]
            assert box is not None
            tensor = batch[str(node.inputs[j].key)]
            pieces[j] = tensor[tuple(slice(lo, hi) for lo, hi in box)]
    return pieces


def element_of(ev: Evidence, pieces: list[torch.Tensor | None]) -> int:
    node = ev.cost.node
    return op_def(node.kind).element(node, unravel(ev.cost.flat, node.shape), pieces)


def referee_times(spec: JobSpec, shapes: Shapes, ev: Evidence) -> tuple[float, float]:
    """One referee run: thread CPU seconds to verify and cut the pieces, then to run the
    element."""
    started = time.thread_time()
    pieces = verified_pieces(spec, shapes, ev)
    verified = time.thread_time()
    element_of(ev, pieces)
    return verified - started, time.thread_time() - verified


def _seconds(fn: Callable[[], object]) -> float:
    started = time.thread_time()
    fn()
    return time.thread_time() - started


def _summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


# --- one model ------------------------------------------------------------------------------


def worst_per_kind(costs: Sequence[ElementCost]) -> list[ElementCost]:
    """The costliest operator of each kind (``work_key``), costliest first."""
    by_kind: dict[str, ElementCost] = {}
    for cost in costs:
        kind = cost.node.kind
        if kind not in by_kind or work_key(cost) > work_key(by_kind[kind]):
            by_kind[kind] = cost
    return sorted(by_kind.values(), key=work_key, reverse=True)


def check_evidence(real: Step, shapes: Shapes, cost: ElementCost, ev: Evidence) -> None:
    """The real proofs are the ones counted, and the referee's element is the run's value
    (the pieces are honest): otherwise the bench, not the dispute, is wrong."""
    chunk_bytes, hashes = ev.posted()
    if (chunk_bytes + HASH_BYTES * hashes, hashes) != (cost.bytes, cost.hashes):
        raise RuntimeError(f"{cost.node.label}: the real proofs are not the counted ones")
    value = element_of(ev, verified_pieces(real.spec, shapes, ev))
    if value != real.expected(cost):
        raise RuntimeError(f"{cost.node.label}: element {value} != {real.expected(cost)}")


@dataclass
class Timings:
    """Thread CPU seconds: whole steps, and per timed operator the referee's verifying and
    cutting (``verify``) and its element (``element``)."""

    step: list[float] = field(default_factory=list)
    verify: dict[int, list[float]] = field(default_factory=dict)
    element: dict[int, list[float]] = field(default_factory=dict)

    def referee(self, index: int) -> list[float]:
        return [v + e for v, e in zip(self.verify[index], self.element[index], strict=True)]

    def ratio(self, index: int) -> float:
        """The referee's median time over the step's."""
        return statistics.median(self.referee(index)) / statistics.median(self.step)

    def figures(self, index: int) -> dict[str, Any]:
        return {
            "referee_s": _summary(self.referee(index)),
            "verify_s": _summary(self.verify[index]),
            "element_s": _summary(self.element[index]),
            "time_ratio": self.ratio(index),
        }


def time_disputes(
    real: Step, shapes: Shapes, evidence: dict[int, Evidence], rounds: int, samples: int
) -> Timings:
    """Interleaved: per round one whole step (``program.step``), then ``samples`` referee
    runs of every timed dispute."""
    timings = Timings()
    for index in evidence:
        timings.verify[index], timings.element[index] = [], []
    for _ in range(rounds):
        timings.step.append(_seconds(lambda: step(real.spec, real.state, 0)))
        for index, ev in evidence.items():
            for _ in range(samples):
                verify, element = referee_times(real.spec, shapes, ev)
                timings.verify[index].append(verify)
                timings.element[index].append(element)
    return timings


def measure(model: Model, rounds: int, samples: int) -> dict[str, Any]:
    """Every operator's dispute counted, the worst of each kind timed, against one step."""
    spec = model.spec()
    real = Step(spec)
    shapes = Shapes(spec, real.program)
    nodes = real.program.nodes
    costs = [worst_element(shapes, node) for node in nodes]
    timed = worst_per_kind(costs)
    evidence = {c.node.index: real.evidence(c) for c in timed}
    for cost in timed:
        check_evidence(real, shapes, cost, evidence[cost.node.index])
    timings = time_disputes(real, shapes, evidence, rounds, samples)
    counted = step_macs(shapes, DOT_KINDS)
    worst = max(costs, key=work_key)
    slowest = max(timed, key=lambda c: timings.ratio(c.node.index))
    return {
        "model": model.name,
        "example": model.example,
        "changes": model.changes,
        "parameters": parameter_count(spec),
        "batch_size": spec.batch_size,
        "operators": len(nodes),
        "step": {
            "macs_counted": counted,
            "macs_products": step_macs(shapes, PRODUCT_KINDS),
            "step_work_products": 3 * spec.batch_size * spec.model.macs_per_example(),
            "step_work_units": step_work(spec),
            "step_s": _summary(timings.step),
            "run_trace_s": real.run_trace_s,
        },
        "rounds": {
            "phase2_descents": descents(len(nodes)),
            "phase3_descents_worst_op": descents(tensor_chunks(worst.node.shape)),
            "phase3_descents_max": max(descents(tensor_chunks(n.shape)) for n in nodes),
            "moves_per_descent": 2,
        },
        "worst": {
            **_cost_json(worst),
            **timings.figures(worst.node.index),
            "macs_ratio": worst.macs / counted,
            "work_ratio": (worst.macs + worst.read) / counted,
            "bound": BOUND,
        },
        "most_bytes": _cost_json(max(costs, key=lambda c: (c.bytes, c.macs))),
        "slowest_referee": {**_cost_json(slowest), **timings.figures(slowest.node.index)},
        "per_kind": [{**_cost_json(c), **timings.figures(c.node.index)} for c in timed],
        "operators_all": [_cost_json(c) for c in costs],
    }


def _cost_json(cost: ElementCost) -> dict[str, Any]:
    node = cost.node
    return {
        "index": node.index,
        "kind": node.kind,
        "label": node.label,
        "element": list(unravel(cost.flat, node.shape)),
        "macs": cost.macs,
        "read": cost.read,
        "chunks": cost.chunks,
        "hashes": cost.hashes,
        "hashes_verified": cost.verified,
        "bytes": cost.bytes,
        "output_chunks": tensor_chunks(node.shape),
        "phase3_descents": descents(tensor_chunks(node.shape)),
    }


# --- output ---------------------------------------------------------------------------------


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _spread(s: dict[str, float]) -> str:
    return f"{_time(s['median'])} [{_time(s['min'])}-{_time(s['max'])}]"


def print_model(r: dict[str, Any]) -> None:
    st, rounds, w = r["step"], r["rounds"], r["worst"]
    changes = ", ".join(f"{k} {v}" for k, v in r["changes"].items()) or "as is"
    print(f"{r['model']}: {r['example']} ({changes})")
    print(f"  {r['parameters']:,} parameters, batch {r['batch_size']}, {r['operators']} operators")
    print(
        f"  step: {_si(st['macs_counted'])} MACs counted ({_si(st['macs_products'])} in products);"
        f" step_work: {_si(st['step_work_products'])}"
    )
    print(
        f"    in products, {_si(st['step_work_units'])} units; program.step {_spread(st['step_s'])}"
    )
    print(f"    (run_trace once: {_time(st['run_trace_s'])})")
    p2, p3 = rounds["phase2_descents"], rounds["phase3_descents_worst_op"]
    print(
        f"  rounds: phase 2 {p2} descents, phase 3 {p3} at the worst op"
        f" (<= {rounds['phase3_descents_max']}): {2 * (p2 + p3)} moves"
    )
    print(f"  {'kind':<26} {'label':<24} {'MACs':>6} {'read':>5} {'KiB':>5} {'ref us':>7}")
    for row in r["per_kind"]:
        print(
            f"  {row['kind']:<26} {_short(row['label'], 24):<24} {row['macs']:>6}"
            f" {row['read']:>5} {row['bytes'] / 1024:>5.1f}"
            f" {row['referee_s']['median'] * 1e6:>7.0f}"
        )
    print(f"  worst op #{w['index']} {w['label']} ({w['kind']}), element {w['element']}:")
    print(
        f"    {w['macs']} MACs, {w['read']} values read; {w['chunks']} chunks +"
        f" {w['hashes']} hashes = {w['bytes'] / 1024:.1f} KiB posted"
    )
    print(
        f"    MACs / step's: {w['macs_ratio']:.2e}; (MACs + read) / step's:"
        f" {w['work_ratio']:.2e} (bound {BOUND:.0e})"
    )
    print(
        f"    referee {_spread(w['referee_s'])} / step"
        f" {_time(st['step_s']['median'])} = {w['time_ratio']:.2e}"
    )
    print(
        f"    (verifying and cutting {_time(w['verify_s']['median'])},"
        f" the element {_time(w['element_s']['median'])})"
    )
    s, b = r["slowest_referee"], r["most_bytes"]
    print(
        f"  slowest referee: {_short(s['label'], 28)} ({s['kind']}),"
        f" {s['time_ratio']:.2e} of the step"
    )
    print(
        f"  most bytes: {_short(b['label'], 28)} ({b['kind']}), {b['chunks']} chunks"
        f" + {b['hashes']} hashes = {b['bytes'] / 1024:.1f} KiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="whole steps timed (3)")
    parser.add_argument("--samples", type=int, default=5, help="referee runs per round (5)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")
    parser.add_argument("--quick", action="store_true", help="tiny specs (a test's run)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    models = QUICK_MODELS if args.quick else MODELS
    results = [measure(model, args.rounds, args.samples) for model in models]
    report = {
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "rounds": args.rounds,
        "samples": args.samples,
        "models": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    before, after = report["load_average"]["before"][0], report["load_average"]["after"][0]
    print(
        f"thread CPU time, torch {report['threads']} thread(s); median [min-max];"
        f" load {before:.1f} -> {after:.1f} on {report['cpus']} CPUs"
    )
    for r in results:
        print_model(r)


if __name__ == "__main__":
    main()
