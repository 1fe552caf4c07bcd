"""A move is a transaction an agent wants to send: its kind and body.

Agents build every move from a typed body (``Move.of``, ``contracts_sim.transactions``), then
hand the honest one to their strategy, which may return it, another move (a lie: the body is
the JSON the node receives, so a lie may be anything) or ``None`` (stall). The ledger's rules
decide what a move is worth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts_sim.transactions import TxBody, parse_body


@dataclass(frozen=True)
class Move:
    kind: str
    body: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, body: TxBody) -> Move:
        """The move that sends the typed ``body``."""
        return cls(body.kind, body.to_json())

    def decoded(self) -> TxBody:
        """The typed body of this move, as the ledger will read it (a strategy rewrites an
        honest move through it: ``Move.of(replace(move.decoded(), ...))``). Raises
        MalformedBodyError for a body the ledger would refuse."""
        body: TxBody = parse_body(self.kind, self.body)
        return body
