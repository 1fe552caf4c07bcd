"""Concurrent submissions never double-apply, on SQLite and on PostgreSQL.

* one node, 50 threads sending copies of one signed transaction: exactly one is applied;
* two nodes (two engines) on one database, both holding the transaction and sealing at once:
  the store lets exactly one block at that height in, the other node reloads and goes on.

The PostgreSQL tests run in a fresh schema each (dropped afterwards) on the server at
``PROOFNET_TEST_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and are
skipped only when that server cannot be reached.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError

from contracts_sim.chain import Chain, replay
from contracts_sim.crypto import key_from_seed
from contracts_sim.exceptions import BlockConflictError
from contracts_sim.store import BlockCommit, SqlStore, TxRow
from contracts_sim.transactions import StakeBody, TransferBody, UnstakeBody, sign_transaction
from protocol.types import Amount

PG_URL = os.environ.get("PROOFNET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CHAIN_ID = "concurrency-test"
ALICE = key_from_seed("concurrency/alice")
BOB = key_from_seed("concurrency/bob")
GENESIS = {ALICE.address: 1_000}
COPIES = 50


@pytest.fixture(scope="module")
def pg_server() -> str:
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc.orig}")
    finally:
        engine.dispose()
    return PG_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose connections live in a fresh schema (search_path), dropped afterwards."""
    schema = f"pn_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in pg_server else "?"
    yield f"{pg_server}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chain.db'}"


def open_chain(url: str) -> Chain:
    return Chain.open(url, CHAIN_ID, "test", GENESIS, genesis_time=1_700_000_000)


def run_together(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Call ``fn(i)`` from ``n`` threads released at the same moment; results or exceptions."""
    barrier = threading.Barrier(n)

    def call(i: int) -> Any:
        barrier.wait()
        try:
            return fn(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(call, range(n)))


def applied_rows(url: str, tx_hash: str) -> int:
    store = SqlStore(url)
    try:
        with store.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(TxRow.hash == tx_hash, TxRow.status == "applied")
                ).scalar_one()
            )
    finally:
        store.close()


def check_one_node(url: str) -> None:
    chain = open_chain(url)
    tx = sign_transaction(ALICE, CHAIN_ID, 0, TransferBody(BOB.address, Amount(10)))
    results = run_together(COPIES, lambda _: chain.submit(tx.to_json()))
    assert results == [tx.tx_hash.hex()] * COPIES
    chain.produce_block()
    chain.produce_block()
    assert applied_rows(url, tx.tx_hash.hex()) == 1
    assert chain.get_account(BOB.address).balance == 10
    assert chain.get_account(ALICE.address).nonce == 1
    assert replay(chain.store).state_root() == chain.state.state_root()
    chain.close()


def check_two_nodes(url: str) -> None:
    first = open_chain(url)
    second = Chain.open(url)  # its own engine and connection pool on the same database
    nodes = [first, second]
    tx = sign_transaction(ALICE, CHAIN_ID, 0, TransferBody(BOB.address, Amount(10)))
    submitted = run_together(COPIES, lambda i: nodes[i % 2].submit(tx))
    assert submitted == [tx.tx_hash.hex()] * COPIES

    sealed = run_together(2, lambda i: nodes[i].produce_block())
    conflicts = [r for r in sealed if isinstance(r, BlockConflictError)]
    blocks = [r for r in sealed if not isinstance(r, Exception)]
    assert len(blocks) == 1 and len(conflicts) == 1, sealed
    assert blocks[0].transactions == (tx,)

    loser = nodes[sealed.index(conflicts[0])]
    assert loser.head == blocks[0].header  # reloaded from the store
    assert loser.pending_hashes() == []  # the copy it held was applied by the other node
    assert loser.produce_block().transactions == ()
    assert applied_rows(url, tx.tx_hash.hex()) == 1
    assert replay(loser.store).state_root() == loser.state.state_root()
    assert loser.get_account(BOB.address).balance == 10
    for node in nodes:
        node.close()


def check_same_height_twice(url: str) -> None:
    chain = open_chain(url)
    chain.produce_block()
    store = chain.store
    assert isinstance(store, SqlStore)
    other = SqlStore(url)
    # Re-sending block 1 through another connection: the height is taken.
    block = chain.get_block(1)
    with pytest.raises(BlockConflictError):
        other.commit_block(BlockCommit(block, ()))
    other.close()
    chain.close()


def test_copies_from_50_threads_apply_once_sqlite(sqlite_url: str) -> None:
    check_one_node(sqlite_url)


def test_two_nodes_sealing_at_once_commit_one_block_sqlite(sqlite_url: str) -> None:
    check_two_nodes(sqlite_url)


def test_a_height_cannot_be_committed_twice_sqlite(sqlite_url: str) -> None:
    check_same_height_twice(sqlite_url)


@pytest.mark.postgres
def test_copies_from_50_threads_apply_once_postgres(pg_url: str) -> None:
    check_one_node(pg_url)


@pytest.mark.postgres
def test_two_nodes_sealing_at_once_commit_one_block_postgres(pg_url: str) -> None:
    check_two_nodes(pg_url)


@pytest.mark.postgres
def test_a_height_cannot_be_committed_twice_postgres(pg_url: str) -> None:
    check_same_height_twice(pg_url)


@pytest.mark.postgres
def test_restart_and_replay_postgres(pg_url: str) -> None:
    chain = open_chain(pg_url)
    chain.submit(sign_transaction(ALICE, CHAIN_ID, 0, StakeBody(Amount(400))))
    chain.submit(sign_transaction(ALICE, CHAIN_ID, 1, UnstakeBody(Amount(100))))
    chain.produce_block()
    chain.produce_block()
    root, head = chain.state.state_root(), chain.head
    chain.close()
    again = Chain.open(pg_url)
    assert again.state.state_root() == root and again.head == head
    assert again.beacon_public_key == chain.beacon_public_key  # the producer key was stored
    assert replay(again.store, check_invariants=True).state_root() == root  # beacons verified
    again.close()
