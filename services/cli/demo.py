"""``proofnet demo``: a local testnet where honest solvers are paid and a cheater is slashed
(``services.ops.demo.run_demo``), and its report.

Tables here are borderless and fold long values (``common.plain_table``) so that they fit 80
columns without cutting anything; long strategy strings are shown by class name in the table
and in full in a footnote; ``--json`` has every value in full.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from services.cli import app
from services.cli.common import (
    JsonOpt,
    LogFormatOpt,
    amount,
    fail,
    print_json,
    print_strategies,
    print_table,
    reported_errors,
    resolve_spec_path,
    stderr,
)

EXAMPLE = Path("examples/digits-mlp.yaml")
"""Found from any directory: ``resolve_spec_path`` falls back to the shipped examples."""


def _print_report(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    rows = [
        [
            row["job_id"][:12],
            str(row["solver"]),
            str(row["outcome"]),
            str(row["dispute_rounds"]),
            "-" if row["located_step"] is None else str(row["located_step"]),
            amount(row["paid_to_solver"]),
            amount(row["slashed"]),
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
    print_strategies(console, sorted(solvers.items()))
    console.print()
    balances = [
        [
            name,
            amount(b["balance"]),
            amount(b["stake"]),
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
    reads = report.get("reads") or {}
    if reads:
        routes = ", ".join(f"{route} {count}" for route, count in reads["by_route"].items())
        console.print(
            f"node reads: {reads['gets']} GETs for {reads['transactions']} transactions "
            f"({reads['per_transaction']} a transaction): {routes}",
            highlight=False,
        )
    console.print(
        f"wall time {report['wall_seconds']} s — start-up {f.get('startup_seconds', '?')} s "
        "(processes up, funded and staked)",
        highlight=False,
    )
    # The jobs run in parallel: a phase's time summed over them is no span of the wall time.
    console.print(
        f"phase times summed over the {len(report['jobs'])} jobs (they ran in parallel): "
        f"training {f['training_seconds']} s, verification {f['verification_seconds']} s, "
        f"dispute {f['dispute_seconds']} s",
        highlight=False,
    )
    console.print(
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
    log_format: LogFormatOpt = "text",
) -> None:
    """The demo (``DEMO_HELP``): ``services.ops.demo.run_demo`` and its report. With
    ``--log-format json`` its progress lines are JSON log records on stderr, and every
    process it starts logs JSON too."""
    import logging

    from services.logs import configure_logging
    from services.ops.demo import run_demo

    with reported_errors():
        # Text: the progress lines say what matters; JSON: they are the INFO records.
        configure_logging(log_format, "INFO" if log_format == "json" else "WARNING")
        spec_path = resolve_spec_path(spec_file)
        progress: Callable[[str], None] | None = None if json_output else stderr.print
        if log_format == "json":
            progress = logging.getLogger("proofnet.demo").info
        try:
            report = run_demo(
                spec_path,
                jobs=jobs,
                workdir=workdir,
                progress=progress,
                log_format=log_format,
            )
        except TimeoutError as exc:
            fail(str(exc), code=1)
    if json_output:
        print_json(report)
    else:
        _print_report(report)
    if not report["ok"]:
        raise typer.Exit(1)
