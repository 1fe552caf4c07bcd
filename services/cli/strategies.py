"""``proofnet strategies``: every agent strategy (``services.strategies.catalogue``), honest and
cheating, with its knobs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.padding import Padding
from rich.table import Table

from services.cli import app
from services.cli.common import print_json


@app.command()
def strategies(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every agent strategy (honest and cheating) with its knobs.

    The second column is what '--strategy' takes, in full; knobs are added
    as ?knob=value&knob=value. The descriptions are in --json.
    """
    from services.strategies import catalogue

    described = [cls.describe() for cls in catalogue()]
    if json_output:
        print_json(described)
        return
    console = Console()
    for role in dict.fromkeys(d["role"] for d in described):
        console.print(strategy_table(role, [d for d in described if d["role"] == role]))


def strategy_table(role: str, described: list[dict[str, Any]]) -> Table:
    """One role's strategies: name, the paste-able class path (never cut: it folds rather
    than ends in an ellipsis), and each knob on its own line under it."""
    table = Table(
        title=f"{role} strategies (proofnet {role} run --strategy ...)",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("--strategy", overflow="fold")
    for d in described:
        table.add_row(d["name"], d["class"])
        if d["knobs"]:
            knobs = Table.grid(padding=(0, 1))
            knobs.add_column(no_wrap=True)
            knobs.add_column()
            for knob, meaning in d["knobs"].items():
                knobs.add_row(f"?{knob}=", meaning)
            table.add_row("", Padding(knobs, (0, 0, 0, 2)), style="dim")
    return table
