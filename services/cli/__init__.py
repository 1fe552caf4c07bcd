"""The ``proofnet`` command line.

Each command group lives in its own module and registers itself on ``app``.
"""

from __future__ import annotations

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


def _register() -> None:
    """Import every command module; each registers its commands on ``app``."""
    from services.cli import (  # noqa: F401
        adversaries,
        agents,
        chain,
        demo,
        economics,
        export,
        jobs,
        market,
        train,
    )


def main() -> None:
    _register()
    app()
