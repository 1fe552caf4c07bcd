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
    from services.cli import train  # noqa: F401  (registers its commands)
    from services.cli import chain  # noqa: F401  (proofnet chain serve, proofnet keys new)
    from services.cli import agents, demo, jobs  # noqa: F401  (agents; demo, testnet; submit...)


def main() -> None:
    _register()
    app()
