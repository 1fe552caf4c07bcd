"""``proofnet demo`` and ``proofnet testnet up|status|down``.

Tables here are borderless and fold long values (``common.plain_table``) so that they fit 80
columns without cutting anything; long strategy strings are shown by class name in the table
and in full in a footnote; ``--json`` has every value in full.
"""

from __future__ import annotations

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
    fail,
    print_json,
    print_table,
    reported_errors,
    resolve_spec_path,
    stderr,
)
from services.localnet import SUBMITTER, LocalTestnet, default_topology

EXAMPLE = Path("examples/digits-mlp.yaml")
"""Found from any directory: ``resolve_spec_path`` falls back to the shipped examples."""
DEFAULT_DIR = Path(".proofnet/testnet")
testnet_app = typer.Typer(
    help="A local testnet (chain + solvers + verifiers) left running.", no_args_is_help=True
)
app.add_typer(testnet_app, name="testnet")
DirOpt = Annotated[Path, typer.Option("--dir", help="The testnet's working directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Every value in full, as JSON.")]


def _amount(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _print_strategies(console: Console, rows: list[tuple[str, str | None]]) -> None:
    """Each agent whose strategy is not honest, with its full ``module:Class?knobs``: the
    tables show only ``cheater``, and the string is too long for a column at 80."""
    for name, strategy in rows:
        if strategy and strategy != "honest":
            console.print(f"{name} runs:", highlight=False)
            console.print(f"  {strategy}", highlight=False, soft_wrap=True)


def _label(strategy: str | None) -> str:
    return "honest" if strategy in (None, "honest") else "cheater"


def _print_report(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    rows = [
        [
            row["job_id"][:12],
            str(row["solver"]),
            str(row["outcome"]),
            str(row["dispute_rounds"]),
            "-" if row["located_step"] is None else str(row["located_step"]),
            _amount(row["paid_to_solver"]),
            _amount(row["slashed"]),
        ]
        for row in report["jobs"]
    ]
    print_table(
        console,
        "jobs (ids: their first 12 hex digits; --json has every value in full)",
        ["job", "solver", "outcome", "rounds", "step", "paid", "slashed"],
        rows,
        numeric=("rounds", "step", "paid", "slashed"),
    )
    solvers = {str(r["solver"]): r["strategy"] for r in report["jobs"]}
    _print_strategies(console, sorted(solvers.items()))
    console.print()
    balances = [
        [
            name,
            _amount(b["balance"]),
            _amount(b["stake"]),
            str(b["jobs_completed"]),
            str(b["jobs_slashed"]),
        ]
        for name, b in report["balances"].items()
    ]
    columns = ["actor", "balance", "stake", "completed", "slashed"]
    print_table(console, "balances", columns, balances, numeric=columns[1:])
    console.print()
    supply = report["supply"]
    figures = {k: v for k, v in supply.items() if k != "holds"}
    console.print(
        f"supply invariant: {'holds' if supply.get('holds') else 'BROKEN'} ({figures})",
        highlight=False,
    )
    f = report["figures"]
    console.print(
        f"wall time {report['wall_seconds']} s — training {f['training_seconds']} s, "
        f"verification {f['verification_seconds']} s, dispute {f['dispute_seconds']} s; "
        f"verifiers re-executed {f['sample_steps_reexecuted']} of {f['steps_trained']} training "
        f"steps in spot-checks ({100 * f['sample_fraction']:.1f} %) and "
        f"{f['dispute_steps_reexecuted']} more to locate and argue disputes",
        highlight=False,
    )
    console.print(
        "[bold green]OK[/]: honest solvers paid, cheater slashed"
        if report["ok"]
        else "[bold red]FAILED[/]: see the table above"
    )


DEMO_HELP = (
    "Run a local testnet, submit jobs and show who was paid and who was slashed.\n\n"
    "The testnet is a chain on SQLite, 2 honest solvers, 1 cheater and 2 verifiers as local "
    "processes; jobs go over REST. Exits non-zero if an honest party was slashed or the "
    "cheater was not."
)


@app.command(help=DEMO_HELP)
def demo(
    spec_file: Annotated[
        Path,
        typer.Option(
            "--spec",
            help="Job spec to submit: a file, or the name of a shipped example.",
        ),
    ] = EXAMPLE,
    jobs: Annotated[int, typer.Option(min=3, max=8, help="Jobs to submit.")] = 3,
    workdir: Annotated[Path | None, typer.Option("--dir", help="Keep files here.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """The demo (``DEMO_HELP``): ``services.demo.run_demo`` and its report."""
    from services.demo import run_demo

    with reported_errors():
        spec_path = resolve_spec_path(spec_file)
        try:
            report = run_demo(
                spec_path,
                jobs=jobs,
                workdir=workdir,
                progress=None if json_output else stderr.print,
            )
        except TimeoutError as exc:
            fail(str(exc), code=1)
    if json_output:
        print_json(report)
    else:
        _print_report(report)
    if not report["ok"]:
        raise typer.Exit(1)


class _Stages:
    """Start-up progress on stderr: one line per stage, with the seconds since the start."""

    def __init__(self, enabled: bool = True) -> None:
        self.started = time.monotonic()
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            line = f"[{elapsed:5.1f} s] {message}"
            stderr.print(line, highlight=False, markup=False, soft_wrap=True)


def _refuse_if_running(workdir: Path) -> None:
    if not (workdir / "testnet.json").exists():
        return
    existing = LocalTestnet.load(workdir)
    if any(row.get("alive") for row in existing.status().values()):
        dir_flag = "" if workdir == DEFAULT_DIR else f" --dir {workdir}"
        fail(f"a testnet is already running in {workdir} ('proofnet testnet down{dir_flag}')")


def _announce_database(net: LocalTestnet, reset: bool, say: _Stages) -> bool:
    """Wipe the database on ``--reset``, else say whether it is new or resumed; True if reused."""
    if reset:
        removed = net.reset()
        names = ", ".join(p.name for p in removed) or "nothing to remove"
        say(f"--reset: {names} removed from {net.workdir}; keys kept")
        return False
    if net.has_database():
        say(f"reusing {net.database} (--reset starts a new chain)")
        return True
    say(f"new chain database {net.database}")
    return False


def _start(net: LocalTestnet, say: _Stages, timeout: float) -> None:
    """Start, wait for the stakes, fund the submitter; stop every process on any failure."""
    try:
        net.start(detach=True, progress=say)
        say("waiting for the agents to fund and stake themselves")
        net.wait_staked(timeout)
        say("agents funded and staked")
        net.fund_submitter()
        say("submitter funded from the dev faucet: ready")
    except TimeoutError as exc:
        net.stop()
        fail(str(exc), code=1)
    except BaseException:  # a typed error, Ctrl-C, a closed pipe: leave nothing running
        net.stop()
        raise


def _print_accounts(console: Console, accounts: list[dict[str, Any]]) -> None:
    rows = [[a["name"], a["role"], a["address"] or "-", _amount(a["balance"])] for a in accounts]
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
        [a["name"], _label(a["strategy"]), a["url"], _amount(a["stake"]), str(a["pid"])]
        for a in accounts
        if a["url"]
    ]
    columns = ["name", "strategy", "url", "stake", "pid"]
    print_table(console, "agents", columns, agents, numeric=("stake", "pid"))
    _print_strategies(console, [(a.name, a.strategy) for a in top.actors])
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
) -> None:
    """Start the testnet; see UP_HELP."""
    say = _Stages(enabled=True)
    with reported_errors():
        _refuse_if_running(workdir)
        topology = default_topology()
        topology.chain_port = port
        net = LocalTestnet(workdir, topology)
        reused = _announce_database(net, reset, say)
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
    stake = {a["name"]: _amount(a["stake"]) for a in accounts}
    table = [
        [
            name,
            "-" if name == "chain" else _label(row.get("strategy")),
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
    _print_strategies(console, [(a.name, a.strategy) for a in net.topology.actors])
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
