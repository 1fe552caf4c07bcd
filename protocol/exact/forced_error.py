"""Planting and checking a forced error in an exact state (``protocol.forced_errors``).

A forced error moves one element of one parameter tensor by one unit (2^-16) towards zero
(up from zero) right after the trap step. Towards zero: the element's magnitude never grows, so
a valid state stays valid (every value below ``STATE_LIMIT``) and the overflow rule never sees
the difference; the solver, the referee and every verifier compute the same perturbed state.
"""

from __future__ import annotations

from collections.abc import Mapping

from protocol.exact.program import step
from protocol.exact.state import State
from protocol.layout import param_names
from protocol.spec import JobSpec


def perturbed_element(spec: JobSpec, selector: int) -> tuple[str, int]:
    """(parameter tensor, flat element index) that the trap with ``selector`` moves."""
    names = param_names(spec)
    shapes = spec.model.param_shapes()
    name = names[selector % len(names)]
    numel = 1
    for size in shapes[name]:
        numel *= size
    return name, (selector // len(names)) % numel


def perturb(spec: JobSpec, state: State, selector: int) -> State:
    """``state`` with the trap's element moved by one unit; pure (the input is unchanged)."""
    name, index = perturbed_element(spec, selector)
    tensor = state[name].clone()
    flat = tensor.view(-1)
    value = int(flat[index].item())
    flat[index] = value + 1 if value <= 0 else value - 1
    return {**state, name: tensor}


def step_with_traps(spec: JobSpec, state: State, i: int, traps: Mapping[int, int]) -> State:
    """Step ``i``, then the forced error planted after it, if ``traps`` (step -> selector)
    has one: the honest solver's transition on a job with forced errors."""
    after = step(spec, state, i)
    selector = traps.get(i)
    return after if selector is None else perturb(spec, after, selector)


__all__ = ["perturb", "perturbed_element", "step_with_traps"]
