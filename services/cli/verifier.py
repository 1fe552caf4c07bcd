"""``proofnet verifier run``: a verifier as a long-running process."""

from __future__ import annotations

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
    PollOpt,
    PrivateEndpointsOpt,
    StrategyOpt,
    ThreadsOpt,
    load_key_file,
    reported_errors,
    setup_agent,
)

verifier_app = typer.Typer(help="Run a verifier: sample, re-execute, attest or challenge.")
app.add_typer(verifier_app, name="verifier")


@verifier_app.command("run")
def verifier_run(
    chain: ChainOpt,
    key: KeyOpt,
    strategy: StrategyOpt = None,
    device: DeviceOpt = "cpu",
    host: HostOpt = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port of the /health, /metrics and /stats endpoint.")
    ] = 8701,
    poll: PollOpt = 0.2,
    threads: ThreadsOpt = 1,
    log_level: LogOpt = "info",
    log_format: LogFormatOpt = "text",
    access_log: AccessLogOpt = False,
    allow_private_endpoints: PrivateEndpointsOpt = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where its sealed verdicts are kept [default: .proofnet/verifier/ADDR]."),
    ] = None,
) -> None:
    """Run a verifier until interrupted."""
    from protocol.exact import resolve_device
    from services.agents.blobs import BoundedFetcher, HttpBlobSource
    from services.agents.runner import connect, serve_agent
    from services.agents.server import create_verifier_app
    from services.agents.strategy import load_verifier_strategy
    from services.agents.verifier import VerifierAgent

    setup_agent(log_level, log_format, threads, access_log)
    with reported_errors():
        chosen = load_verifier_strategy(strategy)
        dev = resolve_device(device)
        load_key_file(key)  # one-line error for a bad key file
        client, private_key, stop = connect(chain, key)

        agent = VerifierAgent(
            client,
            private_key,
            HttpBlobSource.from_chain(
                client, BoundedFetcher(allow_private_endpoints=allow_private_endpoints)
            ),
            strategy=chosen,
            device=dev,
            name=f"verifier-{private_key.address[2:8]}",
            data_dir=data_dir or Path(".proofnet/verifier") / private_key.address[2:10],
        )
        serve_agent(agent, create_verifier_app, host, port, poll, stop, access_log)
