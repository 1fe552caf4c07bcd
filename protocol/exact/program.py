"""The exact training program of every family: ``init``, the pure ``step``, ``run``, ``evaluate``.

A step is: check the state's range, take step i's batch, compute the family's exact gradients
of the summed loss, apply the optimizer. The family (``protocol.exact.family``) owns the model's
arithmetic; the overflow rule, the state layout and the optimizers are the same for all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from protocol.errors import OverflowBoundError, StateMismatchError
from protocol.exact.family import Params, family_of
from protocol.exact.shard import WHOLE, apply_row_sums, share_row_sums, skipped
from protocol.exact.state import State, state_step
from protocol.layout import STEP_KEY, expected_shapes, optimizer_buffer_names, param_names
from protocol.spec import JobSpec

StepCallback = Callable[[int, State], None]


def check_state(spec: JobSpec, state: State) -> None:
    """Raise StateMismatchError unless ``state`` has exactly the tensors ``spec`` implies."""
    shapes = expected_shapes(spec)
    if set(state) != set(shapes):
        missing = sorted(set(shapes) - set(state))
        extra = sorted(set(state) - set(shapes))
        raise StateMismatchError(
            f"state tensors differ from the spec: missing {missing}, unexpected {extra}"
        )
    for name, shape in shapes.items():
        tensor = state[name]
        if tensor.dtype != torch.int64 or tuple(tensor.shape) != shape:
            raise StateMismatchError(
                f"{name}: expected int64 {shape}, got {tensor.dtype} {tuple(tensor.shape)}"
            )


def init(spec: JobSpec, device: str | torch.device = "cpu") -> State:
    """State 0: the family's initial parameters, zero optimizer buffers, step 0."""
    device = torch.device(device)
    params = family_of(spec).init_params(spec, device)
    state: State = {STEP_KEY: torch.tensor(0, dtype=torch.int64, device=device)}
    for name in param_names(spec):
        state[name] = params[name]
        for buffer in optimizer_buffer_names(spec, name):
            state[buffer] = torch.zeros_like(params[name])
    return state


def params_of(spec: JobSpec, state: State) -> Params:
    """The parameters of a state (a view: no copy)."""
    return {name: state[name] for name in param_names(spec)}


def step(spec: JobSpec, state: State, i: int) -> State:
    """Apply training step ``i`` to state ``i``; pure (returns a new state).

    The overflow rule (docs/protocol.md, "The exact VM is total"): a step one of whose
    products could leave the exact range changes nothing but the step counter. Every step of
    every valid spec from every valid state therefore has one defined result, the same on
    every device, so a job the ledger accepted can always be completed — a submitter whose
    learning rate diverges gets a model that stopped updating, and no honest solver is slashed
    for it.

    The same step split across workers is ``shard.shared_step`` (bit for bit; this is its
    one-worker case, without the collectives).
    """
    if state_step(state) != i:
        raise StateMismatchError(f"state is at step {state_step(state)}, not {i}")
    if not 0 <= i < spec.steps:
        raise StateMismatchError(f"step {i} is outside 0..{spec.steps - 1}")
    try:
        return train_step(spec, state, i)
    except OverflowBoundError:
        return skipped_step(state)


def skipped_step(state: State) -> State:
    """The state after a step the overflow rule skipped: only the counter moves on."""
    return skipped(state)


def train_step(spec: JobSpec, state: State, i: int) -> State:
    """One training step; raises OverflowBoundError before any inexact product or any
    elementwise operation that could wrap (a state value past ``STATE_LIMIT``)."""
    return apply_row_sums(spec, state, i, share_row_sums(spec, state, i, WHOLE))


def run(
    spec: JobSpec, state: State, start: int, stop: int, on_step: StepCallback | None = None
) -> State:
    """Steps ``start``..``stop-1`` from state ``start``; ``on_step(i+1, state)`` after each."""
    for i in range(start, stop):
        state = step(spec, state, i)
        if on_step is not None:
            on_step(i + 1, state)
    return state


def evaluate(spec: JobSpec, state: State) -> float:
    """The family's headline metric (``metric_name``) on the held-out split."""
    return family_of(spec).evaluate(spec, params_of(spec, state))


def metric_name(spec: JobSpec) -> str:
    """What ``evaluate`` returns for ``spec``: "test accuracy" or "validation loss"."""
    return family_of(spec).metric
