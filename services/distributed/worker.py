"""A worker rank: receive a segment from rank 0, run its shared steps, repeat.

A segment is (spec, start state, start step, stop step, forced errors): every rank decodes
the same start state, runs ``shared_step`` for each step with the others and plants the same
forced errors, so every rank holds rank 0's state after it — rank 0 needs nothing back. The
segment's header (spec, step range, forced errors, state size) is posted on the group's
store (``group.Mailbox``); the state itself is broadcast from rank 0 through the group
(once per segment, not per step), so a worker keeps nothing between segments and a
restarted group resumes from any checkpoint.

Before computing, every rank checks that all hold the same header and segment number (a
digest, all-reduced as MAX of d and of -d): a header injected into the store, or a rank
still in an older segment, is a GroupError, never a mixed sum. Each step repeats the check
on (segment number, step index).

An empty segment payload means "stop". A cheating rank for the adversarial tests
(``tamper_step``): at that step, the worker adds 1 (after rounding) to the first element of
its gradient share before the all-reduce, as a compromised or faulty GPU would.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
    Mailbox,
    Rendezvous,
    TorchCollective,
    broadcast_bytes,
    join_group,
    leave_group,
    rank_device,
)
from services.errors import GroupError

log = logging.getLogger("proofnet.distributed")
MAX_HEADER_BYTES = 1 << 20  # a spec and its forced errors: far below
MAX_STATE_BYTES = 1 << 36  # what a worker agrees to allocate for a start state


@dataclass(frozen=True)
class Segment:
    """Steps ``start``..``stop-1`` of ``spec`` from ``state``; ``traps``: step -> selector."""

    spec: JobSpec
    state: State
    start: int
    stop: int
    traps: dict[int, int]

    def header(self, state_bytes: int) -> bytes:
        """Everything but the state, and the state's size (it follows by broadcast)."""
        meta = {
            "spec": self.spec.to_dict(),
            "start": self.start,
            "stop": self.stop,
            "traps": {str(k): v for k, v in self.traps.items()},
            "state_bytes": state_bytes,
        }
        return json.dumps(meta, sort_keys=True).encode()


def send_segment(
    segment: Segment, mailbox: Mailbox, collective: Collective, device: torch.device
) -> int:
    """Rank 0: post the segment's header, check every rank holds it, broadcast the state.
    The segment's number."""
    blob = encode_state(segment.state)
    header = segment.header(len(blob))
    mailbox.post(header)
    number = mailbox.posted - 1
    check_agreement(collective, _digest(header), number)
    broadcast_bytes(blob, len(blob), device)
    return number


def receive_segment(
    header: bytes, number: int, collective: Collective, device: torch.device
) -> Segment:
    """A worker: check the header against rank 0's (before trusting its sizes), then take
    the start state from rank 0's broadcast."""
    check_agreement(collective, _digest(header), number)
    try:
        meta = json.loads(header) if len(header) <= MAX_HEADER_BYTES else None
        spec = parse_spec(meta["spec"])  # type: ignore[index]
        size = int(meta["state_bytes"])  # type: ignore[index]
        traps = {int(k): int(v) for k, v in meta["traps"].items()}  # type: ignore[index]
        start, stop = int(meta["start"]), int(meta["stop"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise GroupError(f"rank 0 sent a malformed segment header: {exc}") from exc
    if not 0 < size <= MAX_STATE_BYTES:
        raise GroupError(f"rank 0 announced a state of {size} bytes")
    blob = broadcast_bytes(None, size, device)
    return Segment(spec, decode_state_for(spec, blob, device), start, stop, traps)


def check_agreement(collective: Collective, *values: int) -> None:
    """Every rank holds the same ``values`` (else GroupError on every rank): all-reduce MAX
    of each v and of -v; equal on all ranks iff max(v) == -max(-v)."""
    pairs = [x for v in values for x in (v, -v)]
    t = torch.tensor(pairs, dtype=torch.int64, device=_device_of(collective))
    collective.max_(t)
    got = t.tolist()
    if any(got[k] != -got[k + 1] for k in range(0, len(got), 2)):
        raise GroupError("the ranks disagree on the segment or step (a stale or foreign rank)")


def _device_of(collective: Collective) -> torch.device | None:
    return getattr(collective, "device", None)


def _digest(header: bytes) -> int:
    """62 bits of the header's hash (so that -d fits an int64 too)."""
    return int.from_bytes(hashlib.blake2b(header, digest_size=8).digest(), "little") >> 2


class TamperingCollective:
    """A cheating rank's collective: at its step, +2^16 on element 0 of the row sums it
    contributes (one unit of the first parameter's gradient after rounding)."""

    def __init__(self, inner: TorchCollective) -> None:
        self.inner = inner
        self.device = inner.device
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
    number: int = 0,
) -> State:
    """The segment's shared steps on this rank (and its forced errors): the end state.
    ``number``: the segment's number in the group (checked with every step's index)."""
    spec, state = segment.spec, segment.state
    plan = FactorPlan()  # every rank starts each segment with the same (empty) plan
    for i in range(segment.start, segment.stop):
        check_agreement(collective, number, i)
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
        base = TorchCollective(dev)
        collective: Collective = base if tamper_step is None else TamperingCollective(base)
        share = Share(rank, world)
        while True:
            header = mailbox.next()
            if not header:
                mailbox.stopped()
                return
            number = mailbox.read - 1
            segment = receive_segment(header, number, base, dev)
            run_segment(segment, share, collective, tamper_step, number=number)
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
