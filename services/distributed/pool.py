"""``WorkerPool``: rank 0 of an exact data-parallel group, and the ranks it drives.

Rank 0 lives in the process that trains (``proofnet train --workers N``) or solves
(``proofnet solver run --workers N``): it commits checkpoints and serves; the other ranks
only compute. On one machine the pool spawns ranks 1..N-1 itself; across machines, each
other host runs ``proofnet worker --rdzv HOST:PORT ...`` for its ranks and the pool spawns
only its own node's.

``advance(spec, state, start, stop, traps)`` runs steps start..stop-1 on every rank and
returns rank 0's state — bit for bit ``program.step`` applied stop - start times (and the
forced errors), whatever the number of ranks. When the group fails (a rank died, a
collective timed out), the pool tears the group down, starts it again (respawning its local
ranks; remote ``proofnet worker``s rejoin by themselves) and runs the segment again from the
same start state: the caller's last checkpoint. Nothing committed is lost; the segment's
steps are recomputed. Any other exception on rank 0 mid-segment (out of memory, a bug) also
tears the group down before it propagates, so no worker is left inside an old segment.

A job whose batch is smaller than the group (fewer examples than ranks) runs on rank 0
alone: the same state bit for bit, since one process is the group of one.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess

import torch
import torch.distributed as dist

from protocol.exact import prepare_exact
from protocol.exact.shard import Collective, Share, check_world
from protocol.exact.state import State
from protocol.spec import JobSpec
from services.distributed.group import (
    DEFAULT_TIMEOUT_S,
    Mailbox,
    Rendezvous,
    TorchCollective,
    host_store,
    join_group,
    leave_group,
    rank_device,
)
from services.distributed.worker import (
    Segment,
    TamperingCollective,
    _start,
    run_segment,
    send_segment,
)
from services.errors import GroupError

log = logging.getLogger("proofnet.distributed")


@dataclass(frozen=True)
class PoolConfig:
    """A group of ``world`` ranks over ``nnodes`` hosts (this one is node 0, with rank 0);
    node k runs ranks k W / n .. (k + 1) W / n - 1. ``rdzv``: where rank 0's store listens
    (None: a file store in a private temporary directory, all ranks here: no port).
    ``tamper``: rank -> step, cheating ranks (adversarial tests only)."""

    world: int
    device: str = "cpu"
    threads: int = 1
    rdzv: Rendezvous | None = None
    nnodes: int = 1
    timeout: float = DEFAULT_TIMEOUT_S
    max_restarts: int = 3
    tamper: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.world < 1:
            raise ValueError("--workers must be at least 1")
        if self.nnodes < 1 or self.world % self.nnodes:
            raise ValueError(f"--nnodes {self.nnodes} must divide --workers {self.world}")
        if self.nnodes > 1 and self.rdzv is None:
            raise ValueError("several hosts need --rdzv HOST:PORT (this host's reachable address)")

    def node_ranks(self, node: int) -> range:
        per_node = self.world // self.nnodes
        return range(node * per_node, (node + 1) * per_node)


class WorkerPool:
    """Rank 0 and its group (module docstring). Use as a context manager, or ``close()``."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.device = rank_device(config.device, 0)
        self.collective = TorchCollective(self.device)
        self.restarts = 0
        self._procs: list[SpawnProcess] = []
        self._rdzv: Rendezvous | None = None
        self._mailbox: Mailbox | None = None
        self._store: dist.Store | None = None  # hosted at the rendezvous
        self._started = False

    @property
    def world(self) -> int:
        return self.config.world

    def worker_pids(self) -> list[int]:
        """The local worker processes' ids (ranks 1.. of this node, in rank order)."""
        return [p.pid for p in self._procs if p.pid is not None]

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Spawn this node's worker ranks and join the group as rank 0."""
        if self._started or self.world == 1:
            return
        prepare_exact(self.device)
        if self._store is None:
            self._rdzv = self.config.rdzv or Rendezvous.local()
            self._store = host_store(self._rdzv, self.config.timeout)
        elif not _store_answers(self._store):  # a failed TCP store: listen afresh
            self._store = None
            self._store = host_store(self._rdzv or Rendezvous.local(), self.config.timeout)
        assert self._rdzv is not None
        ctx = multiprocessing.get_context("spawn")
        self._procs = [
            _start(
                ctx,
                self._rdzv,
                rank,
                self.world,
                self.config.device,
                self.config.threads,
                self.config.timeout,
                self.config.tamper.get(rank, -1),
            )
            for rank in self.config.node_ranks(0)
            if rank != 0
        ]
        self._mailbox = join_group(
            self._rdzv, 0, self.world, self.device, self.config.timeout, self._store
        )
        self._started = True

    def close(self) -> None:
        """Tell the workers to stop, leave the group, reap the local processes."""
        if self._started and self._mailbox is not None:
            with contextlib.suppress(GroupError):
                self._mailbox.stop(self.world - 1)
        self._teardown(graceful=self._started)
        self._drop_store()

    def _drop_store(self) -> None:
        """Forget the hosted store (the port is free again; a file store's directory goes)."""
        self._store = None
        if self._rdzv is not None and self._rdzv.path:
            shutil.rmtree(os.path.dirname(self._rdzv.path), ignore_errors=True)
            self._rdzv = None

    def _teardown(self, *, graceful: bool) -> None:
        leave_group()
        self._mailbox = None
        for proc in self._procs:
            proc.join(timeout=10.0 if graceful else 0.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
        self._procs = []
        self._started = False

    def restart(self) -> None:
        """Tear the group down (killing local workers left) and start it again."""
        self.restarts += 1
        self._teardown(graceful=False)
        if self._rdzv is not None and self._rdzv.path:
            self._drop_store()  # a fresh file: nothing of the failed group is left in it
        time.sleep(0.5)
        self.start()

    def advance(
        self,
        spec: JobSpec,
        state: State,
        start: int,
        stop: int,
        traps: Mapping[int, int] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> State:
        """Steps start..stop-1 from ``state`` on every rank; rank 0's end state. Restarts the
        group and reruns the segment from ``state`` after a failure (up to max_restarts times
        in a row; then GroupError, and the next call starts a fresh group). A batch smaller
        than the group runs on rank 0 alone (the same state)."""
        if start >= stop:  # nothing to run (a segment without steps would sync no rank)
            return state
        segment = Segment(spec, state, start, stop, dict(traps or {}))
        if spec.batch_size < self.world:
            return run_segment(segment, Share(0, 1), _Alone(), on_step=on_step)
        check_world(spec, self.world)
        failures = 0
        while True:
            try:
                self.start()
                return self._run(segment, on_step)
            except BaseException as exc:
                if not isinstance(exc, GroupError):
                    self._teardown(graceful=False)  # no worker stays in this segment
                    raise
                failures += 1
                if failures > self.config.max_restarts:
                    self._teardown(graceful=False)  # the next call starts a fresh group
                    raise
                log.warning(
                    "worker group failed (%s); restarting it, segment %d..%d", exc, start, stop
                )
            self.restart()

    def _run(self, segment: Segment, on_step: Callable[[int], None] | None) -> State:
        if self.world == 1:
            return run_segment(segment, Share(0, 1), _Alone(), on_step=on_step)
        assert self._mailbox is not None
        number = send_segment(segment, self._mailbox, self.collective, self.device)
        tamper = self.config.tamper.get(0)
        collective: Collective = self.collective
        if tamper is not None:
            collective = TamperingCollective(self.collective)
        share = Share(0, self.world)
        return run_segment(segment, share, collective, tamper, on_step, number)


class _Alone:
    """The collective of a group of one: every all-reduce is the identity."""

    def max_(self, t: torch.Tensor) -> None:
        return None

    def sum_(self, t: torch.Tensor) -> None:
        return None


def _store_answers(store: dist.Store) -> bool:
    """Whether the hosted store still serves rank 0's own client (a reset connection stays
    broken: the pool would fail every later job)."""
    try:
        store.add("generation", 0)
    except (RuntimeError, ValueError, OSError):
        return False
    return True
