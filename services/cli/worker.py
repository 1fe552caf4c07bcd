"""``proofnet worker``: this host's ranks of another host's exact data-parallel group."""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli import app
from services.cli.common import LogFormatOpt, LogOpt, fail, reported_errors


@app.command()
def worker(
    rdzv: Annotated[str, typer.Option(help="HOST:PORT of rank 0 (proofnet train/solver).")],
    workers: Annotated[int, typer.Option(min=2, help="Ranks in the whole group.")],
    nnodes: Annotated[int, typer.Option(min=2, help="Hosts sharing the ranks.")],
    node_rank: Annotated[int, typer.Option(min=1, help="This host: 1..nnodes-1.")],
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads per rank.")] = 1,
    log_level: LogOpt = "info",
    log_format: LogFormatOpt = "text",
) -> None:
    """Serve this host's ranks of another host's exact data-parallel group.

    Rank 0 runs on node 0 (proofnet train or solver run --workers N --nnodes K --rdzv
    HOST:PORT); this serves until rank 0 stops the group, rejoining after a failure."""
    from protocol.exact import resolve_device
    from services.distributed.group import Rendezvous
    from services.distributed.pool import PoolConfig
    from services.distributed.worker import serve_forever
    from services.logs import configure_logging

    with reported_errors():
        configure_logging(log_format, log_level)
    if node_rank >= nnodes:
        fail(f"--node-rank must be 1..{nnodes - 1}")
    try:
        address = Rendezvous.parse(rdzv)
        config = PoolConfig(workers, rdzv=address, nnodes=nnodes)
    except ValueError as exc:
        fail(str(exc))
    serve_forever(
        address, config.node_ranks(node_rank), workers, str(resolve_device(device)), threads
    )
