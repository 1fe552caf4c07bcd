"""``proofnet chain serve``: a chain node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from contracts_sim.chain import DEFAULT_CHAIN_ID
from services.cli import app
from services.cli.common import fail, reported_errors

chain_app = typer.Typer(help="Run a chain node.", no_args_is_help=True)
app.add_typer(chain_app, name="chain")


@chain_app.command("serve")
def serve(
    db: Annotated[
        str, typer.Option("--db", help="sqlite:///path.db, postgresql+psycopg://…, or memory://")
    ] = "sqlite:///.proofnet/chain.db",
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8545,
    block_time: Annotated[
        float, typer.Option("--block-time", help="seconds between blocks (0: on demand, dev)")
    ] = 2.0,
    dev: Annotated[
        bool, typer.Option("--dev", help="dev mode: faucet, POST /dev/blocks, checks")
    ] = False,
    preset: Annotated[
        str, typer.Option(help="params preset: test, testnet, testnet-operator or demo")
    ] = "testnet",
    chain_id: Annotated[str, typer.Option("--chain-id", help="chain id")] = DEFAULT_CHAIN_ID,
    genesis: Annotated[
        Path | None, typer.Option(help="JSON file {address: balance} for a new chain")
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error or critical")
    ] = "info",
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            envvar="PROOFNET_LOG_FORMAT",
            help="text (for people) or json (one object a line, for log shippers)",
        ),
    ] = "text",
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log",
            help="log every HTTP request but the polled ones (/events, /health, /metrics)",
        ),
    ] = False,
) -> None:
    """Serve the chain node's REST API and produce blocks. API docs at /docs (offline),
    Prometheus metrics at /metrics."""
    import uvicorn
    from pydantic import ValidationError

    from services.logs import configure_logging
    from services.node import NodeSettings, create_app
    from services.node.access_log import quiet_polling_access_log

    allocations: dict[str, int] = {}
    if genesis is not None:
        try:
            allocations = json.loads(genesis.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"cannot read the genesis file {genesis}: {exc}")
    overrides = {
        "db_url": db,
        "block_time": block_time,
        "dev": dev,
        "preset": preset,
        "chain_id": chain_id,
    }
    if allocations:
        overrides["genesis"] = allocations
    try:
        settings = NodeSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        fail(f"invalid settings: {exc.errors()[0]['msg']} ({exc.errors()[0]['loc']})")
    with reported_errors():
        configure_logging(log_format, log_level, access_log=access_log)
        node = create_app(settings)
    quiet_polling_access_log()
    typer.echo(
        f"proofnet chain {settings.chain_id} ({settings.preset}) on http://{host}:{port} "
        f"db={db} block_time={block_time}s dev={dev}",
        err=True,
    )
    base = f"http://{host}:{port}"
    typer.echo(f"explorer {base}/explorer  API docs {base}/docs  metrics {base}/metrics", err=True)
    # log_config=None: uvicorn keeps the handler configure_logging installed (its format).
    uvicorn.run(
        node,
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=None,
        access_log=access_log,
    )
