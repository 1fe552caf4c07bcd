"""The referee: the only place where the ledger executes training (DESIGN §6.3).

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
"""

from __future__ import annotations

import functools

from protocol.spec import JobSpec
from protocol.types import Hash32


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
