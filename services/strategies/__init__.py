"""The strategy catalogue: the honest agents and every cheater ProofNet is attacked with."""

from __future__ import annotations

from services.agents.strategy import SolverStrategy, Strategy, VerifierStrategy
from services.strategies import cheaters, verifiers

HONEST_SOLVER = SolverStrategy
HONEST_VERIFIER = VerifierStrategy


def catalogue() -> list[type[Strategy]]:
    """Every strategy class: honest first, then the cheaters (solver, then verifier)."""
    return [SolverStrategy, VerifierStrategy, *cheaters.CHEATERS, *verifiers.CHEATERS]
