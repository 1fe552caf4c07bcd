"""A move is a transaction an agent wants to send: its kind and body.

Agents compute the *honest* move, then hand it to their strategy, which may return it, another
move (a lie) or ``None`` (stall). The ledger's rules decide what a move is worth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Move:
    kind: str
    body: dict[str, Any] = field(default_factory=dict)
