"""A worker rank: receive a segment from rank 0, run its shared steps, repeat.

A segment is (spec, start state, start step, stop step, forced errors): every rank decodes
the same start state, runs ``shared_step`` for each step with the others and plants the same
forced errors, so every rank holds rank 0's state after it — rank 0 needs nothing back. The
state travels with every segment (posted once per segment on the group's store, not per
step: ``group.Mailbox``), so a worker keeps nothing between segments and a restarted group
resumes from any checkpoint.

An empty segment payload means "stop". A cheating rank for the adversarial tests
(``tamper_step``): at that step, the worker adds 1 (after rounding) to the first element of
its gradient share before the all-reduce, as a compromised or faulty GPU would.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess

import torch

from protocol.exact import decode_state_for, encode_state, prepare_exact, set_threads
from protocol.exact.forced_error import perturb
from protocol.exact.shard import Collective, FactorPlan, Share, shared_step
from protocol.exact.state import State
from protocol.spec import JobSpec, parse_spec
from services.distributed.group import (
    DEFAULT_TIMEOUT_S,
    GroupError,
    Rendezvous,
    TorchCollective,
    join_group,
    leave_group,
    rank_device,
)

log = logging.getLogger("proofnet.distributed")
_HEADER = struct.Struct("<Q")


@dataclass(frozen=True)
class Segment:
    """Steps ``start``..``stop-1`` of ``spec`` from ``state``; ``traps``: step -> selector."""

    spec: JobSpec
    state: State
    start: int
    stop: int
    traps: dict[int, int]

    def encode(self) -> bytes:
        meta = {
            "spec": self.spec.to_dict(),
            "start": self.start,
            "stop": self.stop,
            "traps": {str(k): v for k, v in self.traps.items()},
        }
        text = json.dumps(meta, sort_keys=True).encode()
        return _HEADER.pack(len(text)) + text + encode_state(self.state)

    @classmethod
    def decode(cls, payload: bytes, device: torch.device) -> Segment:
        (n,) = _HEADER.unpack_from(payload)
        meta = json.loads(payload[_HEADER.size : _HEADER.size + n])
        spec = parse_spec(meta["spec"])
        state = decode_state_for(spec, payload[_HEADER.size + n :], device)
        traps = {int(k): int(v) for k, v in meta["traps"].items()}
        return cls(spec, state, int(meta["start"]), int(meta["stop"]), traps)


class TamperingCollective:
    """A cheating rank's collective: at its step, +2^16 on element 0 of the row sums it
    contributes (one unit of the first parameter's gradient after rounding)."""

    def __init__(self, inner: TorchCollective) -> None:
        self.inner = inner
        self.armed = False

    def max_(self, t: torch.Tensor) -> None:
        self.inner.max_(t)

    def sum_(self, t: torch.Tensor) -> None:
        if self.armed:
            t[0] += 1 << 16
        self.inner.sum_(t)


def run_segment(
    segment: Segment,
    share: Share,
    collective: Collective,
    tamper_step: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> State:
    """The segment's shared steps on this rank (and its forced errors): the end state."""
    spec, state = segment.spec, segment.state
    plan = FactorPlan()  # every rank starts each segment with the same (empty) plan
    for i in range(segment.start, segment.stop):
        if isinstance(collective, TamperingCollective):
            collective.armed = i == tamper_step
        state = shared_step(spec, state, i, share, collective, plan)
        selector = segment.traps.get(i)
        if selector is not None:
            state = perturb(spec, state, selector)
        if on_step is not None:
            on_step(i + 1)
    return state


def serve(
    rdzv: Rendezvous,
    rank: int,
    world: int,
    device: str,
    threads: int,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    tamper_step: int | None = None,
) -> None:
    """Join the group as ``rank`` and run segments until rank 0 says stop. Raises GroupError
    when the group fails (the caller decides whether to rejoin)."""
    set_threads(threads)
    dev = rank_device(device, rank)
    prepare_exact(dev)
    mailbox = join_group(rdzv, rank, world, dev, timeout)
    try:
        base = TorchCollective()
        collective: Collective = base if tamper_step is None else TamperingCollective(base)
        share = Share(rank, world)
        while True:
            payload = mailbox.next()
            if not payload:
                mailbox.stopped()
                return
            run_segment(Segment.decode(payload, dev), share, collective, tamper_step)
    finally:
        leave_group()


def spawned_worker(
    rdzv: str, rank: int, world: int, device: str, threads: int, timeout: float, tamper: int
) -> None:
    """Entry point of a worker process rank 0 spawned on this machine: serve, and exit on a
    group failure (rank 0 respawns the group). ``tamper`` < 0: honest."""
    logging.basicConfig(level=logging.WARNING)
    try:
        serve(
            Rendezvous.parse(rdzv),
            rank,
            world,
            device,
            threads,
            timeout=timeout,
            tamper_step=None if tamper < 0 else tamper,
        )
    except GroupError as exc:
        log.warning("worker rank %d: %s", rank, exc)
        raise SystemExit(1) from exc


def serve_forever(
    rdzv: Rendezvous,
    ranks: range,
    world: int,
    device: str,
    threads: int,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> None:
    """``proofnet worker``: this host's ranks (one process each) serve rank 0's group at
    ``rdzv``, rejoining after a failure, until rank 0 says stop. Runs ranks in child
    processes (spawned, as ``torch.multiprocessing`` does) and restarts each that exits with
    an error."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = {r: _start(ctx, rdzv, r, world, device, threads, timeout) for r in ranks}
    while procs:
        for r, proc in list(procs.items()):
            proc.join(timeout=0.2)
            if proc.exitcode is None:
                continue
            if proc.exitcode == 0:
                del procs[r]
            else:
                log.warning("worker rank %d exited (%s); rejoining", r, proc.exitcode)
                time.sleep(1.0)
                procs[r] = _start(ctx, rdzv, r, world, device, threads, timeout)


def _start(
    ctx: SpawnContext,
    rdzv: Rendezvous,
    rank: int,
    world: int,
    device: str,
    threads: int,
    timeout: float,
    tamper: int = -1,
) -> SpawnProcess:
    """One worker rank in a fresh (spawned) process."""
    proc = ctx.Process(
        target=spawned_worker,
        args=(str(rdzv), rank, world, device, threads, timeout, tamper),
        daemon=True,
    )
    proc.start()
    return proc
