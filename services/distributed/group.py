"""The process group and its integer all-reduce.

Every rank calls ``join_group`` with the same rendezvous and world size. A group on one
host meets in a ``torch.distributed`` FileStore in a private (0700) temporary directory: it
opens no network port, so nobody else can reach it. A group across hosts meets in the TCP
store rank 0 hosts at ``--rdzv`` (which listens on every interface: docs/distributed.md says
who must be kept out). The backend follows the device: NCCL
for CUDA tensors, gloo for CPU ones. A collective that cannot complete (a rank died, the
network dropped) raises ``GroupError`` after at most ``timeout`` seconds on the ranks left.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from services.errors import GroupError

DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Rendezvous:
    """Where the group meets: rank 0's TCP store at ``host:port``, or (``path`` set, one
    host) a FileStore at ``path``."""

    host: str
    port: int
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> Rendezvous:
        if text.startswith("file:"):
            return cls("", 0, text.removeprefix("file:"))
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--rdzv must be HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    @classmethod
    def local(cls) -> Rendezvous:
        """A store file in a fresh temporary directory only this user can enter (0700), for
        a group whose ranks all run on this machine: no port, nothing to reach from outside."""
        return cls("", 0, os.path.join(tempfile.mkdtemp(prefix="proofnet-rdzv-"), "store"))

    def __str__(self) -> str:
        return f"file:{self.path}" if self.path else f"{self.host}:{self.port}"


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
    """Rank 0's segment headers to the other ranks, through the group's store: rank 0 posts
    segment n under its own key; a worker waits for it as long as it takes — an idle solver's
    workers wait for the next job without any timeout firing, while the steps' collectives
    keep the group's timeout — and fails when rank 0 is gone (its TCP store closed; for a
    file store, the worker's parent, rank 0, exited)."""

    _WAIT = datetime.timedelta(hours=1)  # one wait call; a worker waits again after it

    def __init__(self, store: dist.Store, parent: int | None = None) -> None:
        self.store = store
        self.posted = 0
        self.read = 0
        self.parent = parent  # a file store's rank 0: nothing closes when it dies
        if parent is not None:
            self._WAIT = datetime.timedelta(seconds=1)

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
            if self.parent is not None and os.getppid() != self.parent:
                raise GroupError("rank 0 is gone: its process exited")
            try:
                self.store.wait([key], self._WAIT)
                payload = bytes(self.store.get(key))
                break
            except (RuntimeError, ValueError, OSError) as exc:
                if "timeout" not in str(exc).lower():
                    raise GroupError(f"rank 0 is gone: {exc}") from exc
        self.read += 1
        return payload


def host_store(rdzv: Rendezvous, timeout: float = DEFAULT_TIMEOUT_S) -> dist.Store:
    """Rank 0's store at ``rdzv``: every generation of the group (a restart is a new one)
    meets under its own prefix in it, so a restart need not bind the port again (a failed
    group's objects may hold the old socket a while)."""
    limit = datetime.timedelta(seconds=timeout)
    try:
        if rdzv.path:
            return dist.FileStore(rdzv.path, -1)  # -1: the pool deletes its directory
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
    hosted: dist.Store | None = None,
) -> Mailbox:
    """Join the default process group of ``world`` ranks; its mailbox. Rank 0 passes the
    store it hosts (``host_store``) and opens a new generation; the others connect to it and
    join the newest generation."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if rdzv.path:  # gloo's pairs too stay on loopback (else: the hostname's address)
        _gloo_on_loopback()
    limit = datetime.timedelta(seconds=timeout)
    base: dist.Store
    try:
        if hosted is not None:
            base = hosted
            generation = base.add("generation", 1)
        else:
            if rdzv.path:
                base = dist.FileStore(rdzv.path, -1)
            else:
                base = dist.TCPStore(rdzv.host, rdzv.port, None, False, timeout=limit)
            generation = _newest_generation(base, timeout)
        store = dist.PrefixStore(f"generation/{generation}/", base)
        dist.init_process_group(
            backend_for(device), store=store, rank=rank, world_size=world, timeout=limit
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise GroupError(f"rank {rank} could not join {rdzv} ({world} ranks): {exc}") from exc
    parent = os.getppid() if rdzv.path and hosted is None else None
    return Mailbox(store, parent)


def _gloo_on_loopback() -> None:
    """Point gloo at the loopback interface, unless the operator chose one."""
    names = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    if names and "GLOO_SOCKET_IFNAME" not in os.environ:
        os.environ["GLOO_SOCKET_IFNAME"] = names[0]


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

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device  # where its small tensors (checks) go: NCCL needs CUDA ones
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


def broadcast_bytes(blob: bytes | None, size: int, device: torch.device) -> bytes:
    """Rank 0's ``blob`` (``size`` bytes) on every rank, through the process group: a state
    may exceed what one store message can carry (8 MiB in torch's TCP store)."""
    if blob is not None:
        t = torch.frombuffer(bytearray(blob), dtype=torch.uint8).to(device)
    else:
        t = torch.empty(size, dtype=torch.uint8, device=device)
    try:
        dist.broadcast(t, src=0)
    except (RuntimeError, ValueError, OSError) as exc:
        raise GroupError(f"broadcast failed: {exc}") from exc
    return bytes(t.cpu().numpy().tobytes())
