"""``proofnet solver run``: a solver as a long-running process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from services.cli import app
from services.cli.common import (
    AccessLogOpt,
    ChainOpt,
    DeviceOpt,
    HostOpt,
    KeyOpt,
    LogFormatOpt,
    LogOpt,
    NnodesOpt,
    PollOpt,
    PrivateEndpointsOpt,
    RdzvOpt,
    StrategyOpt,
    ThreadsOpt,
    fail,
    load_key_file,
    reported_errors,
    setup_agent,
    worker_config,
)

solver_app = typer.Typer(help="Run a solver: stake, bid, train, commit, serve data, defend.")
app.add_typer(solver_app, name="solver")


def _warn_if_unreachable(public_url: str | None, allow_private: bool) -> None:
    """Say so when the URL this solver announces is one default verifiers refuse to fetch."""
    from services.agents.endpoints import resolve_endpoint
    from services.errors import EndpointRefusedError

    if not public_url:
        return
    try:
        resolve_endpoint(public_url, allow_private=allow_private)
    except EndpointRefusedError as exc:
        logging.getLogger("proofnet.runner").warning(
            "verifiers will not fetch from %s: %s", public_url, exc.message
        )


def _announced_url(url: str) -> str:
    """The URL in the canonical form the ledger stores (so the solver never re-announces an
    equal URL every tick), or a clear error before anything starts if the ledger would refuse
    it (``http://0.0.0.0:…`` when listening on every interface without ``--public-url``)."""
    from contracts_sim.registry import check_endpoint_url
    from protocol.errors import ProofNetError

    try:
        return check_endpoint_url(url)
    except ProofNetError as exc:
        fail(
            f"the chain would refuse {url!r} as this solver's endpoint ({exc.message}); "
            "pass --public-url with an address verifiers can reach"
        )


@solver_app.command("run")
def solver_run(
    chain: ChainOpt,
    key: KeyOpt,
    strategy: StrategyOpt = None,
    device: DeviceOpt = "auto",
    data_dir: Annotated[Path, typer.Option(help="Checkpoint store.")] = Path(".proofnet/solver"),
    host: HostOpt = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port of the blob, /metrics and /stats endpoint.")
    ] = 8601,
    public_url: Annotated[
        str | None, typer.Option(help="URL verifiers reach this solver at (announced on chain).")
    ] = None,
    stake: Annotated[int | None, typer.Option(help="Total stake to keep (free + locked).")] = None,
    train_budget: Annotated[
        float, typer.Option(help="Seconds of training per tick before answering the chain again.")
    ] = 0.5,
    poll: PollOpt = 0.2,
    threads: ThreadsOpt = 1,
    log_level: LogOpt = "info",
    log_format: LogFormatOpt = "text",
    access_log: AccessLogOpt = False,
    allow_private_endpoints: PrivateEndpointsOpt = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train on an exact data-parallel group of N ranks (torch.distributed; this "
            "process is rank 0, commits and serves). Across hosts: --rdzv, --nnodes.",
        ),
    ] = 1,
    rdzv: RdzvOpt = None,
    nnodes: NnodesOpt = 1,
) -> None:
    """Run a solver until interrupted; it resumes its jobs from --data-dir after a restart."""
    from protocol.exact import resolve_device
    from services.agents.checkpoints import CheckpointStore
    from services.agents.runner import connect, serve_agent
    from services.agents.server import create_solver_app
    from services.agents.solver import SolverAgent
    from services.agents.strategy import load_solver_strategy
    from services.distributed.pool import WorkerPool

    setup_agent(log_level, log_format, threads, access_log)
    group = None
    if workers > 1:
        group = WorkerPool(worker_config(workers, device, threads, rdzv, nnodes))
    announced = _announced_url(public_url or f"http://{host}:{port}")
    with reported_errors():
        chosen = load_solver_strategy(strategy)
        dev = resolve_device(device)
        load_key_file(key)  # one-line error for a bad key file
        client, private_key, stop = connect(chain, key)
        agent = SolverAgent(
            client,
            private_key,
            strategy=chosen,
            store=CheckpointStore(data_dir),
            device=dev,
            stake=stake,
            train_budget=train_budget,
            public_url=announced,
            name=f"solver-{private_key.address[2:8]}",
            workers=group,
        )
        _warn_if_unreachable(agent.public_url, allow_private_endpoints)
        try:
            serve_agent(agent, create_solver_app, host, port, poll, stop, access_log)
        finally:
            if group is not None:
                group.close()
