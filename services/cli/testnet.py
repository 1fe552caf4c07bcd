"""``proofnet testnet up|status|down``: a local testnet left running (``services.ops.testnet``).

Tables here are borderless and fold long values (``common.plain_table``) so that they fit 80
columns without cutting anything.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from services.cli import app
from services.cli.common import (
    CHAIN_ENV,
    DEFAULT_CHAIN,
    JsonOpt,
    LogFormatOpt,
    amount,
    fail,
    print_json,
    print_strategies,
    print_table,
    reported_errors,
    stderr,
    strategy_label,
)
from services.ops.localnet import SUBMITTER, LocalTestnet, default_topology
from services.ops.testnet import DEFAULT_DIR, is_running, prepare_database, start_testnet

testnet_app = typer.Typer(
    help="A local testnet (chain + solvers + verifiers) left running.", no_args_is_help=True
)
app.add_typer(testnet_app, name="testnet")
DirOpt = Annotated[Path, typer.Option("--dir", help="The testnet's working directory.")]


class _Stages:
    """Start-up progress on stderr: one line per stage, with the seconds since the start (a
    JSON log record each with ``--log-format json``)."""

    def __init__(self, enabled: bool = True, log_format: str = "text") -> None:
        self.started = time.monotonic()
        self.enabled = enabled
        self.log_format = log_format

    def __call__(self, message: str) -> None:
        if self.enabled and self.log_format == "json":
            elapsed = round(time.monotonic() - self.started, 1)
            logging.getLogger("proofnet.testnet").info(message, extra={"elapsed": elapsed})
        elif self.enabled:
            elapsed = time.monotonic() - self.started
            line = f"[{elapsed:5.1f} s] {message}"
            stderr.print(line, highlight=False, markup=False, soft_wrap=True)


def _refuse_if_running(workdir: Path) -> None:
    if is_running(workdir):
        dir_flag = "" if workdir == DEFAULT_DIR else f" --dir {workdir}"
        fail(f"a testnet is already running in {workdir} ('proofnet testnet down{dir_flag}')")


def _start(net: LocalTestnet, say: _Stages, timeout: float) -> None:
    """``start_testnet``; a timeout is one line (every process is stopped by then)."""
    try:
        start_testnet(net, say, timeout)
    except TimeoutError as exc:
        fail(str(exc), code=1)


def _print_accounts(console: Console, accounts: list[dict[str, Any]]) -> None:
    rows = [[a["name"], a["role"], a["address"] or "-", amount(a["balance"])] for a in accounts]
    columns = ["name", "role", "address", "balance"]
    print_table(console, "accounts", columns, rows, numeric=("balance",))


def _print_testnet(net: LocalTestnet, accounts: list[dict[str, Any]], reused: bool) -> None:
    console = Console()
    top = net.topology
    database = f"{net.database} ({'reused' if reused else 'new'}, {_height(net)})"
    for label, value in (
        ("chain", f"{top.chain_url}  (API docs at /docs)"),
        ("database", database),
        ("logs", f"{net.workdir / 'logs'}/"),
    ):
        console.print(f"[bold]{label:<9}[/] {escape(value)}", highlight=False, soft_wrap=True)
    console.print()
    _print_accounts(console, accounts)
    console.print()
    agents = [
        [a["name"], strategy_label(a["strategy"]), a["url"], amount(a["stake"]), str(a["pid"])]
        for a in accounts
        if a["url"]
    ]
    columns = ["name", "strategy", "url", "stake", "pid"]
    print_table(console, "agents", columns, agents, numeric=("stake", "pid"))
    print_strategies(console, [(a.name, a.strategy) for a in top.actors])
    console.print()
    console.print("[bold]key files[/]")
    for account in accounts:
        console.print(account["key_file"], highlight=False, soft_wrap=True)
    console.print()
    _print_next_steps(console, net)


def _print_next_steps(console: Console, net: LocalTestnet) -> None:
    url = net.topology.chain_url
    dir_flag = "" if net.workdir == DEFAULT_DIR else f" --dir {net.workdir}"
    console.print("[bold]next[/]")
    lines = [f"export {CHAIN_ENV}={url}"] if url != DEFAULT_CHAIN else []
    lines += [
        "proofnet submit examples/digits-mlp.yaml \\",
        f"    --key {net.key_file(SUBMITTER)}",
        f"proofnet testnet status{dir_flag}",
        f"proofnet testnet down{dir_flag}",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


# One string per paragraph: rich help keeps a docstring's line breaks, mid-sentence.
UP_HELP = (
    "Start a chain, 3 solvers (1 cheating) and 2 verifiers as background processes, wait "
    "until they have staked, and print the accounts, key files and URLs.\n\n"
    "The chain's database stays in --dir: the next 'up' resumes it (and says so); --reset "
    "starts from an empty one. With the default --port, other commands need no --chain "
    f"(else: export {CHAIN_ENV}=URL)."
)


@testnet_app.command("up", help=UP_HELP)
def testnet_up(
    workdir: DirOpt = DEFAULT_DIR,
    port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="The chain's port (0: any free port)."),
    ] = 8545,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Start from an empty chain database (keys are kept)."),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health and stakes.")] = 180.0,
    json_output: JsonOpt = False,
    log_format: LogFormatOpt = "text",
) -> None:
    """Start the testnet; see UP_HELP. ``--log-format`` is every process's too."""
    from services.logs import configure_logging

    say = _Stages(enabled=True, log_format=log_format)
    with reported_errors():
        configure_logging(log_format)
        _refuse_if_running(workdir)
        topology = default_topology()
        topology.chain_port = port
        topology.log_format = log_format
        net = LocalTestnet(workdir, topology)
        reused = prepare_database(net, reset, say)
        _start(net, say, timeout)
        accounts = net.accounts()
    if json_output:
        print_json(
            {
                "chain_url": topology.chain_url,
                "workdir": str(workdir),
                "database": str(net.database),
                "database_reused": reused,
                "height": net.chain_height(),
                "logs": str(workdir / "logs"),
                "accounts": accounts,
            }
        )
    else:
        _print_testnet(net, accounts, reused)


@testnet_app.command("status")
def testnet_status(workdir: DirOpt = DEFAULT_DIR, json_output: JsonOpt = False) -> None:
    """Show the testnet's processes, their accounts and what each agent has done."""
    try:
        net = LocalTestnet.load(workdir)
    except FileNotFoundError as exc:
        fail(str(exc))
    rows = net.status()
    accounts = net.accounts()
    if json_output:
        print_json({"processes": rows, "accounts": accounts, "height": net.chain_height()})
        return
    console = Console()
    stake = {a["name"]: amount(a["stake"]) for a in accounts}
    table = [
        [
            name,
            "-" if name == "chain" else strategy_label(row.get("strategy")),
            row["url"],
            str(row["pid"]) if row["alive"] else "exited",
            stake.get(name, "-"),
            _jobs_done(row.get("stats")),
        ]
        for name, row in rows.items()
    ]
    print_table(
        console,
        f"testnet in {workdir} ({_height(net)})",
        ["process", "strategy", "url", "pid", "stake", "jobs"],
        table,
        numeric=("pid", "stake", "jobs"),
    )
    print_strategies(console, [(a.name, a.strategy) for a in net.topology.actors])
    console.print()
    _print_accounts(console, accounts)


def _height(net: LocalTestnet) -> str:
    height = net.chain_height()
    return "the chain does not answer" if height is None else f"height {height}"


def _jobs_done(stats: dict[str, Any] | None) -> str:
    """Jobs a solver has worked on, or a verifier has checked; '-' when it did not answer."""
    if not stats:
        return "-"
    if "jobs_checked" in stats:
        return str(stats["jobs_checked"])
    return str(len(stats.get("jobs", [])))


@testnet_app.command("down")
def testnet_down(workdir: DirOpt = DEFAULT_DIR) -> None:
    """Stop every process of the testnet; its database and keys stay for the next 'up'."""
    try:
        net = LocalTestnet.load(workdir)
    except FileNotFoundError as exc:
        fail(str(exc))
    survivors = net.stop()
    if survivors:
        fail(f"processes still running: {survivors}", code=1)
    typer.echo(f"testnet stopped; its chain database and keys stay in {workdir}")
    typer.echo("'proofnet testnet up' resumes that chain; 'up --reset' starts an empty one")
