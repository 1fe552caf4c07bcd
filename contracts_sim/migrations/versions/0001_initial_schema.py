"""The initial schema: the tables ``create_all`` made before migrations.

What ``SqlStore`` created before migrations existed. ``frozen_schema`` spells those tables
out literally (it must never import the models, which move on): ``upgrade`` creates them, and
``contracts_sim.migrations`` compares a database that has the tables but no ``alembic_version``
with it before stamping that database at this revision. Offline (``--sql``) mode is not
supported (``env.py``).

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def frozen_schema() -> sa.MetaData:
    """The store's tables at this revision (the models of ``contracts_sim.store``, STORE_FORMAT
    2, before migrations)."""
    metadata = sa.MetaData()
    sa.Table(
        "meta",
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    sa.Table(
        "blocks",
        metadata,
        sa.Column("height", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("header", sa.Text(), nullable=False),
        sa.Column("tx_count", sa.Integer(), nullable=False),
    )
    sa.Table(
        "transactions",
        metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("block_height", sa.BigInteger(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Index("ix_transactions_block", "block_height", "idx"),
    )
    sa.Table(
        "events",
        metadata,
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("height", sa.BigInteger(), nullable=False, index=True),
        sa.Column("tx_hash", sa.String(64), nullable=True, index=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True, index=True),
        sa.Column("dispute_id", sa.String(64), nullable=True, index=True),
        sa.Column("data", sa.Text(), nullable=False),
    )
    sa.Table(
        "state_records",
        metadata,
        sa.Column("table_name", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    return metadata


def upgrade() -> None:
    frozen_schema().create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    frozen_schema().drop_all(op.get_bind(), checkfirst=False)
