"""``proofnet demo`` and ``proofnet testnet up|status|down``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli import app
from services.cli.common import fail, print_json, reported_errors, stderr
from services.localnet import LocalTestnet, default_topology

EXAMPLE = Path("examples/digits-mlp.yaml")
testnet_app = typer.Typer(help="A local testnet (chain + solvers + verifiers) left running.")
app.add_typer(testnet_app, name="testnet")
DirOpt = Annotated[Path, typer.Option("--dir", help="The testnet's working directory.")]


def _print_report(report: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="jobs")
    for column in (
        "job",
        "solver",
        "strategy",
        "outcome",
        "dispute rounds",
        "located step",
        "paid",
        "slashed",
    ):
        table.add_column(column)
    for row in report["jobs"]:
        table.add_row(
            row["job_id"][:12] + "…",
            str(row["solver"]),
            str(row["strategy"]),
            row["outcome"],
            str(row["dispute_rounds"]),
            str(row["located_step"]),
            str(row["paid_to_solver"]),
            str(row["slashed"]),
        )
    console.print(table)
    balances = Table(title="balances")
    for column in ("actor", "balance", "stake", "completed", "slashed"):
        balances.add_column(column)
    for name, b in report["balances"].items():
        balances.add_row(
            name,
            str(b["balance"]),
            str(b["stake"]),
            str(b["jobs_completed"]),
            str(b["jobs_slashed"]),
        )
    console.print(balances)
    supply = report["supply"]
    console.print(
        f"supply invariant: {'holds' if supply.get('holds') else 'BROKEN'} "
        f"({ {k: v for k, v in supply.items() if k != 'holds'} })"
    )
    f = report["figures"]
    console.print(
        f"wall time {report['wall_seconds']} s — training {f['training_seconds']} s, "
        f"verification {f['verification_seconds']} s, dispute {f['dispute_seconds']} s; "
        f"verifiers re-executed {f['sample_steps_reexecuted']} of {f['steps_trained']} training "
        f"steps in spot-checks ({100 * f['sample_fraction']:.1f} %) and "
        f"{f['dispute_steps_reexecuted']} more to locate and argue disputes"
    )
    console.print(
        "[bold green]OK[/]: honest solvers paid, cheater slashed"
        if report["ok"]
        else "[bold red]FAILED[/]: see the table above"
    )


@app.command()
def demo(
    spec_file: Annotated[Path, typer.Option("--spec", help="Job spec to submit.")] = EXAMPLE,
    jobs: Annotated[int, typer.Option(min=3, max=8, help="Jobs to submit.")] = 3,
    workdir: Annotated[Path | None, typer.Option("--dir", help="Keep files here.")] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run a local testnet (SQLite, 2 honest solvers, 1 cheater, 2 verifiers), submit jobs over
    REST, and show who was paid and who was slashed. Exits non-zero if an honest party was
    slashed or the cheater was not."""
    from services.demo import run_demo

    with reported_errors():
        try:
            report = run_demo(
                spec_file,
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


@testnet_app.command("up")
def testnet_up(workdir: DirOpt = Path(".proofnet/testnet")) -> None:
    """Start the demo topology as background processes and leave it running."""
    with reported_errors():
        if (workdir / "testnet.json").exists():
            existing = LocalTestnet.load(workdir)
            if any(row.get("alive") for row in existing.status().values()):
                fail(f"a testnet is already running in {workdir} ('proofnet testnet down')")
        net = LocalTestnet(workdir, default_topology())
        try:
            net.start(detach=True)
        except TimeoutError as exc:
            net.stop()
            fail(str(exc), code=1)
    typer.echo(f"chain   {net.topology.chain_url}")
    for actor in net.topology.actors:
        typer.echo(f"{actor.name:16} {actor.url}  {actor.strategy or 'honest'}")
    typer.echo(f"logs in {workdir / 'logs'}; stop with: proofnet testnet down --dir {workdir}")


@testnet_app.command("status")
def testnet_status(
    workdir: DirOpt = Path(".proofnet/testnet"),
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show the testnet's processes and what each agent has done."""
    try:
        net = LocalTestnet.load(workdir)
    except FileNotFoundError as exc:
        fail(str(exc))
    rows = net.status()
    if json_output:
        print_json(rows)
        return
    table = Table(title=f"testnet in {workdir}")
    for column in ("process", "url", "pid", "alive", "strategy"):
        table.add_column(column)
    for name, row in rows.items():
        table.add_row(
            name,
            row["url"],
            str(row["pid"]),
            "yes" if row["alive"] else "no",
            row.get("strategy", "-"),
        )
    Console().print(table)


@testnet_app.command("down")
def testnet_down(workdir: DirOpt = Path(".proofnet/testnet")) -> None:
    """Stop every process of the testnet."""
    try:
        net = LocalTestnet.load(workdir)
    except FileNotFoundError as exc:
        fail(str(exc))
    survivors = net.stop()
    if survivors:
        fail(f"processes still running: {survivors}", code=1)
    typer.echo("testnet stopped")
