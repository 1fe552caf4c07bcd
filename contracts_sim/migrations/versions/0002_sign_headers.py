"""Store format 4: every stored block header carries the producer's signature of its hash.

A format-3 header has seven fields. In format 4 the block hash is still SHA-256 of the
canonical JSON of those seven (so parent hashes and stored hashes do not change) and the header
gains ``producer_signature`` = RSASSA-PKCS1-v1_5-SHA256(producer key,
``b"proofnet/header/v1\\x00"`` || block hash), made here with the key the store keeps (meta row
``beacon_key``); the chain meta's ``format`` goes from 3 to 4. About a millisecond and a half
of RSA a block. A database without a chain, or with a chain in another format (refused on open
as before), is left as it is. The rules are spelt out here, not imported: the code moves on,
a migration does not.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEADER_DOMAIN = b"proofnet/header/v1\x00"
SIGNATURE_FIELD = "producer_signature"
PAGE = 1000


def _canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _stored(value: Any) -> str:
    """As the store writes a row (``store._dumps``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _meta(conn: sa.Connection, key: str) -> Any:
    value = conn.execute(
        sa.text("SELECT value FROM meta WHERE key = :key"), {"key": key}
    ).scalar_one_or_none()
    return None if value is None else json.loads(value)


def _set_format(conn: sa.Connection, chain: dict[str, Any], found: int, wanted: int) -> bool:
    if chain.get("format") != found:
        return False
    conn.execute(
        sa.text("UPDATE meta SET value = :value WHERE key = 'chain'"),
        {"value": _stored({**chain, "format": wanted})},
    )
    return True


def _rewrite_headers(conn: sa.Connection, change: Any) -> None:
    """``change(header)`` for every stored header, a page of heights at a time."""
    last = -1
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT height, header FROM blocks WHERE height > :last ORDER BY height LIMIT :page"
            ),
            {"last": last, "page": PAGE},
        ).all()
        if not rows:
            return
        for height, encoded in rows:
            header = change(json.loads(encoded))
            conn.execute(
                sa.text("UPDATE blocks SET header = :header WHERE height = :height"),
                {"header": _stored(header), "height": height},
            )
        last = rows[-1][0]


def upgrade() -> None:
    conn = op.get_bind()
    chain = _meta(conn, "chain")
    key_hex = _meta(conn, "beacon_key")
    if not isinstance(chain, dict) or chain.get("format") != 3 or not isinstance(key_hex, str):
        return
    key = serialization.load_der_private_key(bytes.fromhex(key_hex), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)

    def sign(header: dict[str, Any]) -> dict[str, Any]:
        block_hash = hashlib.sha256(_canonical(header)).digest()
        signature = key.sign(HEADER_DOMAIN + block_hash, padding.PKCS1v15(), hashes.SHA256())
        return {**header, SIGNATURE_FIELD: signature.hex()}

    _rewrite_headers(conn, sign)
    _set_format(conn, chain, 3, 4)


def downgrade() -> None:
    conn = op.get_bind()
    chain = _meta(conn, "chain")
    if not isinstance(chain, dict) or chain.get("format") != 4:
        return

    def unsign(header: dict[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in header.items() if name != SIGNATURE_FIELD}

    _rewrite_headers(conn, unsign)
    _set_format(conn, chain, 4, 3)
