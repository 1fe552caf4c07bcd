"""Store format 5: a dispute record carries its ``resolution`` (``contracts_sim.records``).

The field is part of every dispute record's JSON, so every state root from the block that
stored the first dispute on differs from format 4's, and the signed headers commit to those
roots: a format-4 chain that ever held a dispute cannot be carried over (it stays at format 4
and is refused on open, as before: start a new chain). A format-4 chain without a dispute has
exactly the roots format 5 computes, so its format is raised to 5 and nothing else changes.
The schema (tables, columns) is unchanged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DISPUTES_TABLE = "disputes"


def _stored(value: Any) -> str:
    """As the store writes a row (``store._dumps``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _chain(conn: sa.Connection) -> Any:
    value = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'chain'")).scalar_one_or_none()
    return None if value is None else json.loads(value)


def _holds_a_dispute(conn: sa.Connection) -> bool:
    found = conn.execute(
        sa.text("SELECT 1 FROM state_records WHERE table_name = :table LIMIT 1"),
        {"table": DISPUTES_TABLE},
    ).first()
    return found is not None


def _move(found: int, wanted: int) -> None:
    conn = op.get_bind()
    chain = _chain(conn)
    if not isinstance(chain, dict) or chain.get("format") != found or _holds_a_dispute(conn):
        return
    conn.execute(
        sa.text("UPDATE meta SET value = :value WHERE key = 'chain'"),
        {"value": _stored({**chain, "format": wanted})},
    )


def upgrade() -> None:
    _move(4, 5)


def downgrade() -> None:
    _move(5, 4)
