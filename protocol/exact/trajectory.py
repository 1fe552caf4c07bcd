"""Training a whole trajectory and collecting its commitments.

A trajectory is the list of leaf entries (state hashes at steps 0, C, 2C, ..., N) plus the
checkpoint blobs they address. Training can resume from any checkpoint, which is how a solver
restarts after a crash and how a verifier re-executes one segment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from protocol.exact.device import prepare_exact
from protocol.exact.forced_error import step_with_traps
from protocol.exact.program import init
from protocol.exact.state import State, checkpoint, state_step
from protocol.spec import JobSpec

LeafCallback = Callable[[int, bytes, bytes], None]  # (leaf index, state hash, blob)
StepProgress = Callable[[int], None]  # called with the number of steps completed


@dataclass
class Trajectory:
    spec: JobSpec
    leaves: list[bytes] = field(default_factory=list)
    blobs: dict[bytes, bytes] = field(default_factory=dict)
    final_state: State | None = None


def train_trajectory(
    spec: JobSpec,
    device: str | torch.device = "cpu",
    *,
    start_state: State | None = None,
    on_leaf: LeafCallback | None = None,
    on_step: StepProgress | None = None,
    keep_blobs: bool = True,
    stop: int | None = None,
    traps: Mapping[int, int] | None = None,
) -> Trajectory:
    """Train from ``start_state`` (default: ``init``) to step ``stop`` (default: N).

    ``start_state`` must sit on a checkpoint (a multiple of C). Leaves from the start state on
    are reported through ``on_leaf`` and collected in the returned trajectory. ``traps`` (step
    -> selector) are the forced errors the solver plants (``protocol.forced_errors``).
    """
    device = torch.device(device)
    prepare_exact(device)
    state = init(spec, device) if start_state is None else start_state
    start = state_step(state)
    stop = spec.steps if stop is None else stop
    interval = spec.checkpoint_interval
    if start % interval != 0:
        raise ValueError(f"start step {start} is not a checkpoint (C = {interval})")
    trajectory = Trajectory(spec)

    def record(current: State) -> None:
        digest, blob = checkpoint(current)
        trajectory.leaves.append(digest)
        if keep_blobs:
            trajectory.blobs[digest] = blob
        if on_leaf is not None:
            on_leaf(state_step(current) // interval, digest, blob)

    record(state)
    for i in range(start, stop):
        state = step_with_traps(spec, state, i, traps or {})
        if on_step is not None:
            on_step(i + 1 - start)
        if (i + 1) % interval == 0:
            record(state)
    trajectory.final_state = state
    return trajectory
