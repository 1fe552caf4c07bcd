"""The process group and its integer all-reduce.

Every rank calls ``join_group`` with the same rendezvous address (rank 0 hosts the
``torch.distributed`` TCP store there) and world size. The backend follows the device: NCCL
for CUDA tensors, gloo for CPU ones. A collective that cannot complete (a rank died, the
network dropped) raises ``GroupError`` after at most ``timeout`` seconds on the ranks left.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 60.0


class GroupError(RuntimeError):
    """The process group failed: a rank died or could not be reached."""


@dataclass(frozen=True)
class Rendezvous:
    """Where rank 0's store listens: ``host:port`` (every rank of the group uses it)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Rendezvous:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--rdzv must be HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    @classmethod
    def local(cls) -> Rendezvous:
        """A free port on loopback, for a group whose ranks all run on this machine."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            return cls("127.0.0.1", int(probe.getsockname()[1]))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def rank_device(device: str, rank: int) -> torch.device:
    """The device of ``rank``: ``cuda`` without an index means one GPU per rank (rank r on
    GPU r mod the GPUs here: NCCL refuses two ranks of a group on one GPU); otherwise
    ``device`` as given."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    return dev


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


class Mailbox:
    """Rank 0's segments to the other ranks, through the group's TCP store (which rank 0
    hosts): rank 0 posts segment n under its own key; a worker waits for it as long as it
    takes — an idle solver's workers wait for the next job without any timeout firing, while
    the steps' collectives keep the group's timeout — and fails at once when the store (rank
    0) is gone."""

    _WAIT = datetime.timedelta(hours=1)  # one wait call; a worker waits again after it

    def __init__(self, store: dist.Store) -> None:
        self.store = store
        self.posted = 0
        self.read = 0

    def post(self, payload: bytes) -> None:
        try:
            # bytes go through as they are (the stub says str; the binding takes either)
            self.store.set(f"segment/{self.posted}", payload)  # type: ignore[arg-type]
            if self.posted >= 2:  # every rank has finished segment n - 2: it ran n - 1
                self.store.delete_key(f"segment/{self.posted - 2}")
        except (RuntimeError, ValueError, OSError) as exc:
            raise GroupError(f"posting a segment failed: {exc}") from exc
        self.posted += 1

    def stop(self, workers: int, patience: float = 10.0) -> None:
        """Post the empty segment (stop) and wait (up to ``patience`` s) until every worker
        has read it, so none finds the store gone first and takes it for a failure."""
        self.post(b"")
        deadline = time.monotonic() + patience
        with contextlib.suppress(RuntimeError, ValueError, OSError):
            while self.store.add("stopped", 0) < workers and time.monotonic() < deadline:
                time.sleep(0.05)

    def stopped(self) -> None:
        """A worker acknowledges the stop segment."""
        with contextlib.suppress(RuntimeError, ValueError, OSError):
            self.store.add("stopped", 1)

    def next(self) -> bytes:
        key = f"segment/{self.read}"
        while True:
            try:
                self.store.wait([key], self._WAIT)
                payload = bytes(self.store.get(key))
                break
            except dist.DistStoreError as exc:
                if "timeout" not in str(exc).lower():
                    raise GroupError(f"rank 0 is gone: {exc}") from exc
            except (RuntimeError, ValueError, OSError) as exc:
                raise GroupError(f"rank 0 is gone: {exc}") from exc
        self.read += 1
        return payload


def host_store(rdzv: Rendezvous, timeout: float = DEFAULT_TIMEOUT_S) -> dist.TCPStore:
    """Rank 0's store at ``rdzv``, for the pool's whole life: every generation of the group
    (a restart is a new one) meets under its own prefix in it, so a restart never binds the
    port again (a failed group's objects may hold the old socket a while)."""
    limit = datetime.timedelta(seconds=timeout)
    try:
        return dist.TCPStore(
            rdzv.host, rdzv.port, None, True, timeout=limit, wait_for_workers=False
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise GroupError(f"cannot listen at {rdzv}: {exc}") from exc


def join_group(
    rdzv: Rendezvous,
    rank: int,
    world: int,
    device: torch.device,
    timeout: float = DEFAULT_TIMEOUT_S,
    hosted: dist.TCPStore | None = None,
) -> Mailbox:
    """Join the default process group of ``world`` ranks; its mailbox. Rank 0 passes the
    store it hosts (``host_store``) and opens a new generation; the others connect to it and
    join the newest generation."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    limit = datetime.timedelta(seconds=timeout)
    try:
        if hosted is not None:
            base = hosted
            generation = base.add("generation", 1)
        else:
            base = dist.TCPStore(rdzv.host, rdzv.port, None, False, timeout=limit)
            generation = _newest_generation(base, timeout)
        store = dist.PrefixStore(f"generation/{generation}/", base)
        dist.init_process_group(
            backend_for(device), store=store, rank=rank, world_size=world, timeout=limit
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise GroupError(f"rank {rank} could not join {rdzv} ({world} ranks): {exc}") from exc
    return Mailbox(store)


def _newest_generation(store: dist.Store, timeout: float) -> int:
    """The generation rank 0 opened last (waiting up to ``timeout`` for its first)."""
    deadline = time.monotonic() + timeout
    while (generation := store.add("generation", 0)) == 0:
        if time.monotonic() > deadline:
            raise GroupError("rank 0 opened no group in time")
        time.sleep(0.1)
    return int(generation)


def leave_group() -> None:
    """Destroy the default group if this process has one (after a failure too)."""
    if dist.is_initialized():
        # a broken group may refuse: nothing left to release then
        with contextlib.suppress(RuntimeError, ValueError):
            dist.destroy_process_group()


class TorchCollective:
    """``protocol.exact.shard.Collective`` over the default group: in-place int64 all-reduce.
    Counts the bytes this rank contributed (``reduced_bytes``) and the calls."""

    def __init__(self) -> None:
        self.reduced_bytes = 0
        self.calls = 0

    def max_(self, t: torch.Tensor) -> None:
        self._all_reduce(t, dist.ReduceOp.MAX)

    def sum_(self, t: torch.Tensor) -> None:
        self._all_reduce(t, dist.ReduceOp.SUM)

    def _all_reduce(self, t: torch.Tensor, op: dist.ReduceOp.RedOpType) -> None:
        self.calls += 1
        self.reduced_bytes += t.numel() * t.element_size()
        try:
            dist.all_reduce(t, op=op)
        except (RuntimeError, ValueError, OSError) as exc:
            raise GroupError(f"all-reduce failed: {exc}") from exc
