"""A training step split across workers (data parallelism), bit-identical to one process.

Step i's batch (the same counter-based indices everywhere) is cut into ``world`` contiguous
shares of examples; worker r computes its share's forward and backward. Every computation of
a family is either per row (forward, the per-row softmax and cross-entropy, g @ W^T, attention
within one sequence) — the share's rows are exactly the whole batch's rows — or a sum over
the batch's rows: a weight's x^T g, a bias's, an embedding's or a gain's sum. The single
process rounds such a sum once, *after* summing (grad_W = rshift_round(x^T g, 16)), so a
worker returns its share of the sum unrounded (``RowSum``), the workers add the shares with an
integer all-reduce (order-free and exact), and the one rounding happens after. The optimizer
then runs on every worker on the same gradients, so every worker holds the same next state.

The overflow rule (``program.step``) skips a step when any run-time bound check fails on the
*whole batch*. A worker checks each bound on its share with the whole batch's row counts and
records the check's factors (``protocol.exact.bounds``); the workers take the MAX of each
factor and of a "some check already failed here" flag, then every worker evaluates every
check on the combined factors — the whole batch's values, in the single process's arithmetic
— and all skip, or none. Three collectives (at most) a step, in this order on every worker:

    MAX  [failed, n, -n]               int64, n = the number of check factors recorded
    MAX  the checks' factors           int64 (float64 maxima as their bit patterns)
    SUM  the row sums, flattened       int64, the parameters' sizes in layout order

(skipped when a step is already decided). The first two are one all-reduce when the workers
expect n from the last step (``FactorPlan``): two collectives a step in a steady run. The
all-reduce itself is the caller's (``Collective``: ``torch.distributed`` in ``services``);
this module is pure given it.

Why the decision is the same: the single process skips iff some check fails on the whole
batch (it raises at the first). Every check before the first failing one passes on the whole
batch, so on every share (a share's maxima are at most the whole batch's, its row counts are
the whole batch's), and every worker reaches the failing check with the same values per row
and records it; the combined factors are the whole batch's maxima, so it fails there too.
Conversely when no check fails, none fails on any share and the combined checks are the
single process's. A worker that fails a check on its share stops (its products would not be
exact), but then the whole batch fails it too: its flag decides the skip.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from protocol.errors import OverflowBoundError, StateMismatchError
from protocol.exact import optim
from protocol.exact.bounds import BoundCheck, BoundLog, recording
from protocol.exact.family import RowSum, family_of, rounded
from protocol.exact.fixedpoint import ExactMatmul, check_state_range
from protocol.exact.state import State, state_step
from protocol.layout import STEP_KEY, param_names
from protocol.spec import JobSpec


@dataclass(frozen=True)
class Share:
    """Worker ``rank`` of ``world``: it computes examples ``bounds(B)`` of every batch."""

    rank: int
    world: int

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world - 1}")

    def bounds(self, examples: int) -> tuple[int, int]:
        """The contiguous slice [start, stop) of a batch of ``examples`` this worker takes:
        rank r of W takes r B // W .. (r + 1) B // W (every share non-empty when W <= B)."""
        return self.rank * examples // self.world, (self.rank + 1) * examples // self.world


WHOLE = Share(0, 1)


def check_world(spec: JobSpec, world: int) -> None:
    """Every worker needs at least one example of every batch."""
    if not 1 <= world <= spec.batch_size:
        raise ValueError(f"workers must be 1..{spec.batch_size} (the batch size), not {world}")


def share_row_sums(spec: JobSpec, state: State, i: int, share: Share) -> dict[str, RowSum]:
    """The row sums of step i's gradients over ``share``'s examples; raises
    OverflowBoundError when the state is out of range or a check fails on the share (with the
    whole batch's row counts when a ``BoundLog`` is recording)."""
    tensors = [t for name, t in state.items() if name != STEP_KEY and t.numel()]
    # The range check's exact maxima let the family convert a weight without rescanning it
    # (``ExactMatmul.operand``); this step's matmul only, while the state is unchanged. The
    # state is the same on every worker: so is this check.
    matmul = ExactMatmul(known=zip(tensors, check_state_range(tensors), strict=True))
    family = family_of(spec)
    batch = family.batch(spec, i, state[STEP_KEY].device)
    if share != WHOLE:
        batch = batch.rows(*share.bounds(batch.examples))
    params = {name: state[name] for name in param_names(spec)}
    return family.row_sums(spec, params, batch, matmul)


def apply_row_sums(spec: JobSpec, state: State, i: int, sums: Mapping[str, RowSum]) -> State:
    """State i+1 from the whole batch's row sums: each rounded once, then the optimizer
    (which may raise OverflowBoundError: the same on every worker, its inputs are)."""
    return optim.update(spec, state, i, rounded(sums))


class Collective(Protocol):
    """An all-reduce across the workers of one step, in place, on int64 tensors."""

    def max_(self, t: torch.Tensor) -> None: ...

    def sum_(self, t: torch.Tensor) -> None: ...


@dataclass
class FactorPlan:
    """How many check factors the workers expect at the next step: the count the last step
    agreed on (0: unknown). The same on every worker (each updates it from the same reduced
    header), it lets the header and the factors share one all-reduce; it changes no result,
    only whether a step needs a second MAX (when the count differs from the expected)."""

    expected: int = 0


def shared_step(
    spec: JobSpec,
    state: State,
    i: int,
    share: Share,
    collective: Collective,
    plan: FactorPlan | None = None,
) -> State:
    """Step i computed by ``share`` with the others through ``collective``: every worker
    returns ``program.step(spec, state, i)``, bit for bit (module docstring). ``plan``: kept
    across a run's steps by the caller, it saves one collective a step."""
    if state_step(state) != i:
        raise StateMismatchError(f"state is at step {state_step(state)}, not {i}")
    if not 0 <= i < spec.steps:
        raise StateMismatchError(f"step {i} is outside 0..{spec.steps - 1}")
    check_world(spec, share.world)
    start, stop = share.bounds(spec.batch_size)
    log = BoundLog(spec.batch_size, stop - start)
    sums: dict[str, RowSum] | None
    try:
        with recording(log):
            sums = share_row_sums(spec, state, i, share)
    except OverflowBoundError:
        sums = None
    device = state[STEP_KEY].device
    plan = plan if plan is not None else FactorPlan()
    mine = encode_factors(log.checks, device)
    count = int(mine.numel())
    # [failed, count, -count] then this worker's factors, cut or zero-padded to the expected
    # count: one MAX carries the header and, when every worker recorded the expected count,
    # the whole batch's factors too.
    joined = torch.zeros(3 + plan.expected, dtype=torch.int64, device=device)
    joined[0], joined[1], joined[2] = int(sums is None), count, -count
    joined[3 : 3 + min(count, plan.expected)] = mine[: plan.expected]
    collective.max_(joined)
    failed, most, fewest = (int(v) for v in joined[:3].tolist())
    if failed:
        return skipped(state)
    if most != -fewest:
        raise StateMismatchError(f"workers recorded {-fewest}..{most} check factors; a bug")
    assert sums is not None
    if most == plan.expected:
        combined = joined[3:]
    else:  # the same branch on every worker (the same reduced header); now all hold `most`
        plan.expected = most
        combined = mine
        collective.max_(combined)
    if any_check_fails(log.checks, combined.tolist()):
        return skipped(state)
    flat = flatten(sums)
    collective.sum_(flat)
    try:
        return apply_row_sums(spec, state, i, unflatten(flat, sums))
    except OverflowBoundError:
        return skipped(state)


def skipped(state: State) -> State:
    """The state after a step the overflow rule skipped: only the counter moves on."""
    return {**state, STEP_KEY: state[STEP_KEY] + 1}


_INT64_MAX = (1 << 63) - 1


def _float_bits(value: float) -> int:
    """The IEEE bit pattern of a float64 as a signed integer: for non-negative floats the
    order of the patterns is the order of the values, so MAX over patterns is MAX over values
    (a maximum is >= 0; a -0.0 pattern is negative and loses to any other, and equals 0.0
    in every product)."""
    return int(struct.unpack("<q", struct.pack("<d", value))[0])


def _bits_float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<q", bits))[0])


def encode_factors(checks: list[BoundCheck], device: torch.device) -> torch.Tensor:
    """Every check's factors, in order, as one int64 tensor (MAX-reducible): float64 maxima
    as their bit patterns, integer maxima as they are (capped at 2^63 - 1, which fails every
    check as 2^63 does)."""
    values = [
        _float_bits(float(f)) if check.in_float else min(int(f), _INT64_MAX)
        for check in checks
        for f in check.factors
    ]
    return torch.tensor(values, dtype=torch.int64, device=device)


def any_check_fails(checks: list[BoundCheck], combined: list[int]) -> bool:
    """Whether some check fails on the combined (whole-batch) factors."""
    position = 0
    for check in checks:
        raw = combined[position : position + len(check.factors)]
        position += len(check.factors)
        factors = [_bits_float(b) for b in raw] if check.in_float else raw
        if check.fails(factors):
            return True
    return False


def flatten(sums: Mapping[str, RowSum]) -> torch.Tensor:
    """The row sums' totals joined into one int64 tensor, in the mapping's (layout) order."""
    return torch.cat([s.total.reshape(-1) for s in sums.values()])


def unflatten(flat: torch.Tensor, like: Mapping[str, RowSum]) -> dict[str, RowSum]:
    """``flatten``'s inverse, shaped and shifted as ``like``: views of ``flat`` (which the
    caller gives up: they are rounded in place)."""
    out: dict[str, RowSum] = {}
    offset = 0
    for name, s in like.items():
        n = s.total.numel()
        out[name] = RowSum(flat[offset : offset + n].view(s.total.shape), s.shift)
        offset += n
    return out
