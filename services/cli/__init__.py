"""The ``proofnet`` command line.

Each command group lives in its own module and registers itself on ``app``.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="proofnet",
    help="ProofNet: verifiable decentralized training — exact training, Merkle commitments, "
    "spot-checks and refereed bisection disputes on a simulated ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """ProofNet: verifiable decentralized training on a simulated ledger."""


COMMAND_MODULES = (
    "adversaries",
    "solver",
    "verifier",
    "chain",
    "keys",
    "demo",
    "testnet",
    "economics",
    "export",
    "train",
    "worker",
    "jobs",
    "strategies",
    "market",
)
"""One module per command or command group, in the order of ``proofnet --help`` (Typer lists
the commands, then the groups, each in the order they registered)."""


def _register() -> None:
    """Import every command module; each registers its commands on ``app``."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"services.cli.{name}")


def main() -> None:
    _register()
    app()
