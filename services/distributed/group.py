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


def join_group(
    rdzv: Rendezvous,
    rank: int,
    world: int,
    device: torch.device,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Join (rank 0: host) the default process group of ``world`` ranks."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(
            backend_for(device),
            init_method=f"tcp://{rdzv.host}:{rdzv.port}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout),
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise GroupError(f"rank {rank} could not join {rdzv} ({world} ranks): {exc}") from exc


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


def broadcast_bytes(payload: bytes | None, device: torch.device) -> bytes:
    """Rank 0's ``payload`` on every rank (others pass None): a length, then the bytes."""
    try:
        size = torch.tensor([0 if payload is None else len(payload)], dtype=torch.int64)
        size = size.to(device)
        dist.broadcast(size, src=0)
        n = int(size.item())
        if payload is None:
            data = torch.empty(n, dtype=torch.uint8, device=device)
        else:
            data = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
        if n:
            dist.broadcast(data, src=0)
        return bytes(data.cpu().numpy().tobytes())
    except (RuntimeError, ValueError, OSError) as exc:
        raise GroupError(f"broadcast failed: {exc}") from exc
