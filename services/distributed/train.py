"""A whole trajectory trained by a worker group (``proofnet train --workers N``).

The same leaves as ``protocol.exact.train_trajectory`` (state 0, then the state after every
C-th step), each segment of C steps run by the pool: rank 0 hashes the leaves, the other
ranks only compute.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from protocol.exact import init, state_hash
from protocol.exact.state import State
from protocol.spec import JobSpec
from services.distributed.pool import WorkerPool


@dataclass
class SharedRun:
    leaves: list[bytes] = field(default_factory=list)
    final_state: State | None = None
    seconds_per_step: list[float] = field(default_factory=list)


def train_shared(
    spec: JobSpec,
    pool: WorkerPool,
    device: torch.device,
    on_step: Callable[[int], None] | None = None,
) -> SharedRun:
    """Steps 0..N-1 of ``spec`` from state 0 on ``pool``; leaves at 0, C, 2C, ..."""
    interval = spec.checkpoint_interval
    state = init(spec, device)
    run = SharedRun(leaves=[state_hash(state)])
    last = time.perf_counter()

    def stepped(done: int) -> None:
        nonlocal last
        now = time.perf_counter()
        run.seconds_per_step.append(now - last)
        last = now
        if on_step is not None:
            on_step(done)

    for start in range(0, spec.steps, interval):
        stop = min(start + interval, spec.steps)
        state = pool.advance(spec, state, start, stop, on_step=stepped)
        if stop % interval == 0:
            run.leaves.append(state_hash(state))
        last = time.perf_counter()
    run.final_state = state
    return run
