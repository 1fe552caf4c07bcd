"""Cheating solvers. Each is an honest ``SolverStrategy`` with one or two hooks overridden.

Use one with ``proofnet solver run --strategy services.strategies.cheaters:PerturbStep?step=37``.
Knobs are keyword arguments (listed in each class's ``knobs``).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from contracts_sim.dispute import bisection_midpoint
from contracts_sim.transactions import PostMidpointBody, PostPrestateBody, PublishDataBody
from protocol.exact import State, init, step
from protocol.hashing import MAX_DIM, TensorRecord, encode_tensors
from protocol.layout import STEP_KEY, state_layout
from protocol.spec import JobSpec
from protocol.state_commitment import blob_root
from protocol.types import Hash32
from services.agents.moves import Move
from services.agents.strategy import DisputeView, JobView, SolverStrategy
from services.agents.truth import Truth


def output_bias(state: State) -> str:
    """The name of the last layer's bias: a parameter every prediction depends on."""
    return max(k for k in state if k.endswith(".bias") and not k.startswith("momentum."))


def flip_low_bit(state: State, bit: int = 0, tensor: str | None = None) -> State:
    """A copy of ``state`` with ``2**bit`` added to the first element of ``tensor``
    (default: the output bias) — a change of one unit in the last place for ``bit=0``.

    Adding rather than XOR-ing keeps repeated perturbations from cancelling each other out.
    """
    name = tensor or output_bias(state)
    tampered = dict(state)
    values = state[name].clone()
    values.view(-1)[0] += 1 << bit
    tampered[name] = values
    return tampered


def frozen_step(state: State) -> State:
    """Advance the step counter only: the weights are not trained."""
    return {**state, "step": state["step"] + 1}


class NoTraining(SolverStrategy):
    name = "no-training"
    description = """Does not train: commits frozen weights (the step counter advances) or, with
    mode=random, weights re-drawn at random every step."""
    knobs = {"mode": "'frozen' (default) or 'random'"}

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        if self.knob("mode", "frozen") == "random":
            fresh = init(
                replace(spec, seed=(spec.seed + 7919 * (i + 1)) % 2**63), state["step"].device
            )
            return {**fresh, "step": state["step"] + 1}
        return frozen_step(state)


class FewerSteps(SolverStrategy):
    name = "fewer-steps"
    description = """Trains only the first fraction of the steps asked for, then stops updating
    the weights (the commitments keep their shape)."""
    knobs = {"fraction": "share of the steps actually trained (default 0.5)"}

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        if i >= int(spec.steps * float(self.knob("fraction", 0.5))):
            return frozen_step(state)
        return step(spec, state, i)


class PerturbStep(SolverStrategy):
    name = "perturb-step"
    description = """Trains honestly but flips one low bit of one weight right after step s —
    the smallest possible lie; everything after it follows honestly from the lie."""
    knobs = {
        "step": "the step whose result is tampered (default: the middle step)",
        "bit": "the bit flipped (default 0)",
    }

    def tampered_step(self, spec: JobSpec) -> int:
        return int(self.knob("step", spec.steps // 2))

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        state = step(spec, state, i)
        if i == self.tampered_step(spec):
            state = flip_low_bit(state, int(self.knob("bit", 0)))
        return state


class PerturbFrom(SolverStrategy):
    name = "perturb-from"
    description = """Flips a low bit after every step from step s on (a sustained deviation,
    e.g. a cheaper kernel)."""
    knobs = {"step": "first tampered step (default: the middle step)"}

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        state = step(spec, state, i)
        if i >= int(self.knob("step", spec.steps // 2)):
            state = flip_low_bit(state, 0)
        return state


class WrongDataOrder(SolverStrategy):
    name = "wrong-data-order"
    description = """Trains on batches drawn with another seed (the initial weights are right)."""
    knobs = {"seed_offset": "added to the job seed for batch selection (default 1)"}

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        other = replace(spec, seed=spec.seed + int(self.knob("seed_offset", 1)))
        return step(other, state, i)


class WrongLearningRate(SolverStrategy):
    name = "wrong-learning-rate"
    description = """Trains with another learning rate (2^lr_log2)."""
    knobs = {"lr_log2": "the learning rate's log2 used instead (default: the job's - 1)"}

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        lr_log2 = int(self.knob("lr_log2", spec.optimizer.lr_log2 - 1))
        other = replace(spec, optimizer=replace(spec.optimizer, lr_log2=lr_log2))
        return step(other, state, i)


class LazyReplay(SolverStrategy):
    name = "lazy-replay"
    description = """Stops working at leaf L and re-commits the last checkpoint it computed for
    every later leaf (saves the remaining training)."""
    knobs = {"leaf": "first leaf that repeats an earlier checkpoint (default: the middle leaf)"}

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        first = int(self.knob("leaf", spec.num_leaves // 2))
        if i >= (first - 1) * spec.checkpoint_interval:
            return state  # no work at all: not even the step counter moves
        return step(spec, state, i)


class RewriteHistory(SolverStrategy):
    name = "rewrite-history"
    description = """After posting a progress root, commits later roots over a rewritten early
    leaf — a root that is not an extension of the last one."""
    knobs = {
        "leaf": "the early leaf rewritten (default 1)",
        "after": "rewrite once this many leaves exist (default 5)",
    }

    def committed_entries(self, job: JobView, entries: list[bytes]) -> list[bytes]:
        leaf, after = int(self.knob("leaf", 1)), int(self.knob("after", 5))
        if len(entries) <= after or leaf >= len(entries):
            return entries
        rewritten = list(entries)
        rewritten[leaf] = hashlib.sha256(b"rewritten" + entries[leaf]).digest()
        return rewritten


class FakeLeaf(SolverStrategy):
    name = "fake-leaf"
    description = """Trains honestly but commits a fabricated hash at leaf L: the root's leaves
    do not match the blobs it serves."""
    knobs = {"leaf": "the fabricated leaf (default: the middle leaf)"}

    def leaf_entry(self, job: JobView, leaf: int, entry: bytes, past: list[bytes]) -> bytes:
        if leaf == int(self.knob("leaf", job.num_leaves // 2)):
            return hashlib.sha256(b"fabricated" + entry).digest()
        return entry


class WithholdData(SolverStrategy):
    name = "withhold-data"
    description = """Trains honestly but serves no data: neither leaf list nor blobs, not even
    the pre-state the referee needs in a dispute."""
    knobs = {
        "what": "'all' (default), 'blobs' or 'leaves'",
        "publish": "post the pre-state when a dispute or data request asks (default false): "
        "withholds from verifiers only, hoping to win a challenger's bond",
    }

    def serve_leaves(self, job: JobView, entries: list[bytes]) -> list[bytes] | None:
        return None if self.knob("what", "all") in ("all", "leaves") else entries

    def serve_blob(self, job: JobView, entry: bytes, blob: bytes) -> bytes | None:
        return None if self.knob("what", "all") in ("all", "blobs") else blob

    def answer_dispute(self, dispute: DisputeView, honest: Move | None) -> Move | None:
        publish = str(self.knob("publish", False)).lower() in ("1", "true", "yes")
        withheld = (PostPrestateBody.kind, PublishDataBody.kind)
        if honest is not None and honest.kind in withheld and not publish:
            return None
        return honest


def crafted_blob(spec: JobSpec) -> bytes:
    """A blob with a state's tensor names and a well-formed header, except that the step counter
    declares shape ``(0, MAX_DIM)`` and holds no bytes: consistent lengths and within every
    generic limit, so it decodes and has a state root the solver can commit, but it is no state
    of the spec (with ``(0, 2**63)``, no array library could build it: numpy raised
    ``ValueError`` from ``decode_state`` before the hardened decoder; such bytes now have no
    root at all, and the hardened decoder refuses them generically).
    """
    records = [
        TensorRecord(name, t.dtype, t.shape, bytes(t.nbytes))
        for name, t in state_layout(spec).items()
        if name != STEP_KEY
    ]
    return encode_tensors([*records, TensorRecord(STEP_KEY, "int64", (0, MAX_DIM), b"")])


class CraftedBlob(SolverStrategy):
    name = "crafted-blob"
    description = """Trains honestly but commits, at leaf L, the root of ``crafted_blob(spec)``
    and serves those bytes, hoping the verifiers' decoder crashes and the job settles unchecked.
    The solver must hold the blob in its store to serve it (the in-process test puts it there);
    not in ``CHEATERS``: the scenario runner cannot place it."""
    knobs = {
        "leaf": "the crafted leaf (default: the middle leaf)",
        "seed": "only the job whose spec has this seed (default: every job)",
    }

    def leaf_entry(self, job: JobView, leaf: int, entry: bytes, past: list[bytes]) -> bytes:
        target = self.knob("seed", None)
        if target is not None and job.spec.seed != int(target):
            return entry
        if leaf == int(self.knob("leaf", job.num_leaves // 2)):
            return blob_root(crafted_blob(job.spec))
        return entry


class StallDispute(PerturbStep):
    name = "stall-dispute"
    description = """Perturbs one step like perturb-step, then stops answering once challenged
    (after a given number of its own moves)."""
    knobs = {**PerturbStep.knobs, "moves": "dispute moves answered before stalling (default 0)"}

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.answered = 0

    def answer_dispute(self, dispute: DisputeView, honest: Move | None) -> Move | None:
        if self.answered >= int(self.knob("moves", 0)):
            return None
        self.answered += 1
        return honest


class LieAtMidpoint(PerturbStep):
    name = "lie-at-midpoint"
    description = """Perturbs one step, then during bisection posts the *honest* state hash at
    every midpoint, hoping to push the dispute away from its lie."""

    def answer_dispute(self, dispute: DisputeView, honest: Move | None) -> Move | None:
        if honest is None or honest.kind != PostMidpointBody.kind or dispute.spec is None:
            return honest
        d = dispute.record
        assert d.step_lo is not None and d.step_hi is not None
        m = bisection_midpoint(d.step_lo, d.step_hi)
        true_hash = Truth(dispute.spec).hash_at(m)
        body = honest.decoded()
        assert isinstance(body, PostMidpointBody)
        return Move.of(replace(body, state_hash=Hash32(true_hash)))


class AdaptiveCheater(SolverStrategy):
    name = "adaptive"
    description = """Cheats (one flipped bit at a segment's last step) in a fraction of the
    segments, honest elsewhere — betting the verifiers look elsewhere. The sample is drawn from
    a block hash after its commitment, so its guess is no better than chance."""
    knobs = {
        "fraction": "share of segments cheated in (default 0.25)",
        "seed": "its private guess seed (default 0)",
    }

    def cheated_segments(self, spec: JobSpec) -> set[int]:
        m = spec.num_segments
        count = max(1, round(m * float(self.knob("fraction", 0.25))))
        seed = int(self.knob("seed", 0))
        order = sorted(
            range(m), key=lambda j: hashlib.sha256(f"{seed}/{spec.seed}/{j}".encode()).digest()
        )
        return set(order[:count])

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        state = step(spec, state, i)
        interval = spec.checkpoint_interval
        if (i + 1) % interval == 0 and i // interval in self.cheated_segments(spec):
            state = flip_low_bit(state, 0)
        return state


CHEATERS: list[type[SolverStrategy]] = [
    NoTraining,
    FewerSteps,
    PerturbStep,
    PerturbFrom,
    WrongDataOrder,
    WrongLearningRate,
    LazyReplay,
    RewriteHistory,
    FakeLeaf,
    WithholdData,
    StallDispute,
    LieAtMidpoint,
    AdaptiveCheater,
]
