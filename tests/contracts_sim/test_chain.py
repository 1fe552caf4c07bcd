"""The block producer: blocks, receipts, the open block as mempool, dedupe, restart, replay."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts_sim import fork
from contracts_sim.beacon import beacon_output, generate_beacon_key, verify_beacon
from contracts_sim.blocks import (
    BLOCK_EVENT,
    GENESIS_PARENT_HASH,
    Block,
    check_header,
    compute_tx_root,
)
from contracts_sim.chain import Chain, iter_replay, replay
from contracts_sim.crypto import key_from_seed
from contracts_sim.env import TxContext
from contracts_sim.events import Event, make_event
from contracts_sim.exceptions import (
    BlockConflictError,
    BlockFullError,
    BlockNotFoundError,
    ChainIntegrityError,
    ChainMismatchError,
    InsufficientBalanceError,
    InvalidBlockError,
    InvariantViolation,
    JobNotFoundError,
    MalformedTransactionError,
    NonceTooHighError,
    NonceTooLowError,
    RuleFailureError,
    TransactionNotFoundError,
    WrongChainError,
)
from contracts_sim.params import TEST, TESTNET, Params
from contracts_sim.state import LedgerState, increase_balance
from contracts_sim.store import MemoryStore
from contracts_sim.transactions import (
    FaucetBody,
    StakeBody,
    Transaction,
    TransferBody,
    sign_transaction,
)
from protocol.types import Address, Amount

CHAIN_ID = "chain-test"
ALICE = key_from_seed("chain/alice")
BOB = key_from_seed("chain/bob")
CAROL = key_from_seed("chain/carol")
GENESIS = {ALICE.address: 1_000, BOB.address: 500}
T0 = 1_700_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def open_chain(url: str | None = None, **kwargs: Any) -> Chain:
    kwargs.setdefault("clock", Clock())
    kwargs.setdefault("check_invariants", True)
    return Chain.open(url, CHAIN_ID, "test", GENESIS, genesis_time=T0, **kwargs)


def transfer(key: Any, nonce: int, amount: int, to: Address = BOB.address) -> Transaction:
    return sign_transaction(key, CHAIN_ID, nonce, TransferBody(to, Amount(amount)))


@pytest.fixture
def chain() -> Iterator[Chain]:
    c = open_chain()
    yield c
    c.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chain.db'}"


# --- blocks ---------------------------------------------------------------------------------


def test_genesis_is_block_zero_with_the_genesis_state(chain: Chain) -> None:
    genesis = chain.get_block(0)
    assert chain.height == 0
    assert genesis.header.parent_hash == GENESIS_PARENT_HASH
    assert genesis.header.state_root == fork.genesis_state(GENESIS, TEST).state_root()
    assert genesis.header.tx_root == compute_tx_root(())
    assert chain.get_account(ALICE.address).balance == 1_000


def test_empty_blocks_advance_the_height_and_link_to_their_parent(chain: Chain) -> None:
    blocks = [chain.produce_block() for _ in range(3)]
    assert [b.height for b in blocks] == [1, 2, 3]
    assert blocks[0].header.parent_hash == chain.get_block(0).hash
    assert blocks[2].header.parent_hash == blocks[1].hash
    assert chain.head == blocks[2].header
    # begin_block recorded each parent's hash in the state (the sample seeds)
    assert chain.state.get_block_hash(blocks[1].height) == blocks[1].hash
    assert chain.head_block() == blocks[2]


def test_a_submitted_transaction_is_pending_then_applied_with_its_events(chain: Chain) -> None:
    tx = transfer(ALICE, 0, 10)
    tx_hash = chain.submit(tx)
    assert tx_hash == tx.tx_hash.hex()
    pending = chain.receipt(tx_hash)
    assert (pending.status, pending.height, pending.index) == ("pending", 1, 0)
    assert chain.get_account(ALICE.address).balance == 1_000  # the head has not moved

    block = chain.produce_block()
    assert block.transactions == (tx,)
    assert block.header.tx_root == compute_tx_root([tx])
    assert block.header.state_root == chain.state.state_root()
    receipt = chain.receipt(tx_hash)
    assert (receipt.status, receipt.height, receipt.index, receipt.error) == ("applied", 1, 0, None)
    assert [e.kind for e in receipt.events] == ["transfer"]
    assert receipt.events[0].data == {"sender": ALICE.address, "to": BOB.address, "amount": 10}
    assert chain.get_account(BOB.address).balance == 510
    assert chain.get_block(1) == block


def test_submit_accepts_a_transaction_as_json(chain: Chain) -> None:
    tx = transfer(ALICE, 0, 10)
    assert chain.submit(tx.to_json()) == tx.tx_hash.hex()
    with pytest.raises(MalformedTransactionError):
        chain.submit({"kind": "transfer"})


def test_pending_transactions_count_for_the_next_check(chain: Chain) -> None:
    chain.submit(transfer(ALICE, 0, 600))
    chain.submit(transfer(ALICE, 1, 300))  # nonce 1 is valid on top of the pending one
    assert chain.next_nonce(ALICE.address) == 2
    with pytest.raises(InsufficientBalanceError):  # 100 left after the pending ones
        chain.submit(transfer(ALICE, 2, 101))
    block = chain.produce_block()
    assert len(block.transactions) == 2
    assert chain.get_account(ALICE.address).balance == 100


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: transfer(ALICE, 1, 5_000), InsufficientBalanceError),
        (lambda: transfer(ALICE, 3, 1), NonceTooHighError),
        (lambda: sign_transaction(ALICE, "other", 0, FaucetBody(Amount(1))), WrongChainError),
    ],
)
def test_a_rejected_submission_changes_nothing(chain: Chain, make: Any, error: type) -> None:
    chain.submit(transfer(ALICE, 0, 1))
    head_root, head = chain.state.state_root(), chain.head
    pending, nonce = chain.pending_hashes(), chain.next_nonce(ALICE.address)
    open_root = chain._open.state.state_root()
    with pytest.raises(error):
        chain.submit(make())
    assert chain.state.state_root() == head_root and chain.head == head
    assert chain.pending_hashes() == pending
    assert chain.next_nonce(ALICE.address) == nonce
    assert chain._open.state.state_root() == open_root
    block = chain.produce_block()
    assert len(block.transactions) == 1


def test_a_replay_of_an_applied_transaction_by_another_copy_is_rejected(chain: Chain) -> None:
    chain.submit(transfer(ALICE, 0, 1))
    chain.produce_block()
    with pytest.raises(NonceTooLowError):
        chain.submit(transfer(ALICE, 0, 2))  # same nonce, different transaction


def test_copies_are_deduplicated_by_hash(chain: Chain) -> None:
    tx = transfer(ALICE, 0, 10)
    assert chain.submit(tx) == chain.submit(tx) == chain.submit(tx.to_json())
    assert chain.pending_hashes() == [tx.tx_hash.hex()]
    chain.produce_block()
    assert chain.submit(tx) == tx.tx_hash.hex()  # applied: idempotent, nothing changes
    assert chain.pending_hashes() == []
    assert chain.produce_block().transactions == ()
    assert chain.get_account(BOB.address).balance == 510


def test_unknown_receipt_block_and_job_raise_typed_errors(chain: Chain) -> None:
    with pytest.raises(TransactionNotFoundError):
        chain.receipt("00" * 32)
    with pytest.raises(BlockNotFoundError):
        chain.get_block(5)
    with pytest.raises(BlockNotFoundError):
        chain.get_block(-1)
    with pytest.raises(JobNotFoundError):
        chain.sample("00" * 32, ALICE.address)


def test_the_open_block_has_a_size_limit() -> None:
    chain = open_chain(max_block_txs=2)
    chain.submit(transfer(ALICE, 0, 1))
    chain.submit(transfer(ALICE, 1, 1))
    with pytest.raises(BlockFullError):
        chain.submit(transfer(ALICE, 2, 1))
    chain.produce_block()
    chain.submit(transfer(ALICE, 2, 1))


def test_block_time_comes_from_the_clock_and_never_goes_back() -> None:
    clock = Clock()
    chain = open_chain(clock=clock)
    clock.now = T0 + 6
    assert chain.produce_block().header.time == T0  # block 1 was opened at T0
    assert chain.produce_block().header.time == T0 + 6
    chain.submit(transfer(ALICE, 0, 1))
    block = chain.produce_block(time=T0 + 100)  # another time: the block is rebuilt
    assert block.header.time == T0 + 100 and len(block.transactions) == 1
    assert chain.receipt(block.transactions[0].tx_hash.hex()).status == "applied"
    with pytest.raises(InvalidBlockError):
        chain.produce_block(time=T0 + 99)


def test_events_have_increasing_ids_and_each_block_ends_with_a_block_event(chain: Chain) -> None:
    chain.submit(transfer(ALICE, 0, 1))
    chain.submit(transfer(BOB, 0, 1, to=ALICE.address))
    chain.produce_block()
    chain.produce_block()
    events = chain.events_since(0)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.kind for e in events] == [
        BLOCK_EVENT,
        "transfer",
        "transfer",
        BLOCK_EVENT,
        BLOCK_EVENT,
    ]
    assert [e.height for e in events] == [0, 1, 1, 1, 2]
    assert events[3].data["hash"] == chain.get_block(1).hash.hex()
    assert events[1].tx_hash is not None and events[3].tx_hash is None
    assert chain.events_since(2, limit=2) == events[2:4]
    assert chain.events_since(chain.last_event_id) == []


def test_wait_for_events_wakes_on_the_next_block(chain: Chain) -> None:
    since = chain.last_event_id
    assert chain.wait_for_events(since, timeout=0.01) == []
    timer = threading.Timer(0.05, chain.produce_block)
    timer.start()
    events = chain.wait_for_events(since, timeout=5)
    timer.join()
    assert [e.kind for e in events] == [BLOCK_EVENT]


def test_listeners_see_every_block(chain: Chain) -> None:
    seen: list[Block] = []
    unsubscribe = chain.subscribe(seen.append)
    first = chain.produce_block()
    unsubscribe()
    chain.produce_block()
    assert seen == [first]


def test_a_rule_that_breaks_the_books_is_rejected_in_debug_mode(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    def buggy_faucet(
        state: LedgerState, ctx: TxContext, body: FaucetBody, params: Params
    ) -> list[Event]:
        increase_balance(state, ctx.sender, body.amount)  # creates tokens without minting
        return [make_event("minted", address=ctx.sender, amount=body.amount)]

    monkeypatch.setitem(fork.PROCESSORS, "faucet", buggy_faucet)
    root = chain._open.state.state_root()
    with pytest.raises(InvariantViolation):
        chain.submit(sign_transaction(CAROL, CHAIN_ID, 0, FaucetBody(Amount(5))))
    assert chain._open.state.state_root() == root
    assert chain.pending_hashes() == []


# --- two writers on one store ---------------------------------------------------------------


def test_a_second_writer_at_the_same_height_conflicts_and_drops_what_no_longer_applies() -> None:
    store = MemoryStore()
    a = Chain.from_store(store, CHAIN_ID, "test", GENESIS, genesis_time=T0, clock=Clock())
    b = Chain.from_store(store, clock=Clock())
    mine, theirs = transfer(ALICE, 0, 900), transfer(ALICE, 0, 800, to=CAROL.address)
    a.submit(mine)
    b.submit(theirs)  # also nonce 0: fine on b's view of the chain
    a.produce_block()
    with pytest.raises(BlockConflictError):
        b.produce_block()
    assert b.head == a.head  # b reloaded the stored head ...
    failed = b.receipt(theirs.tx_hash.hex())  # ... and dropped the transaction that now fails
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "nonce_too_low"
    block = b.produce_block()
    assert block.height == 2 and block.transactions == ()
    assert b.receipt(theirs.tx_hash.hex()).status == "failed"  # stored with block 2
    assert b.receipt(mine.tx_hash.hex()).status == "applied"
    assert replay(store).state_root() == b.state.state_root()


# --- restart and replay ---------------------------------------------------------------------


def _busy_chain(url: str | None) -> Chain:
    chain = open_chain(url)
    chain.submit(transfer(ALICE, 0, 100))
    chain.submit(sign_transaction(CAROL, CHAIN_ID, 0, FaucetBody(Amount(700))))
    chain.produce_block()
    chain.submit(sign_transaction(CAROL, CHAIN_ID, 1, StakeBody(Amount(300))))
    chain.submit(transfer(BOB, 0, 50, to=CAROL.address))
    chain.produce_block()
    chain.produce_block()
    return chain


def test_reopening_the_database_gives_the_same_chain(sqlite_url: str) -> None:
    chain = _busy_chain(sqlite_url)
    root, head, last_event = chain.state.state_root(), chain.head, chain.last_event_id
    stake_tx = chain.get_block(2).transactions[0].tx_hash.hex()
    chain.close()

    again = Chain.open(sqlite_url, clock=Clock())  # stored chain id and params are used
    assert again.state.state_root() == root and again.head == head
    assert again.last_event_id == last_event
    assert again.chain_id == CHAIN_ID and again.params == TEST and again.preset == "test"
    assert again.receipt(stake_tx).status == "applied"
    assert again.get_account(CAROL.address).bonded == 300
    again.submit(transfer(ALICE, 1, 1))  # nonces continue
    block = again.produce_block()
    assert block.height == head.height + 1 and block.header.parent_hash == head.hash
    assert again.events_since(last_event)[0].id == last_event + 1
    again.close()


def test_reopening_with_other_settings_is_refused(sqlite_url: str) -> None:
    open_chain(sqlite_url).close()
    with pytest.raises(ChainMismatchError):
        Chain.open(sqlite_url, "another-chain")
    with pytest.raises(ChainMismatchError):
        Chain.open(sqlite_url, CHAIN_ID, TESTNET)
    with pytest.raises(ChainMismatchError):
        Chain.open(sqlite_url, CHAIN_ID, "test", {ALICE.address: 1})


def test_a_tampered_state_record_is_detected_on_open(sqlite_url: str) -> None:
    _busy_chain(sqlite_url).close()
    db = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    db.execute(
        "UPDATE state_records SET value = replace(value, '\"balance\":900', '\"balance\":901') "
        "WHERE table_name = 'accounts'"
    )
    db.commit()
    db.close()
    with pytest.raises(ChainIntegrityError):
        Chain.open(sqlite_url)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_replay_from_genesis_reproduces_the_stored_state_root(
    backend: str, sqlite_url: str
) -> None:
    chain = _busy_chain(None if backend == "memory" else sqlite_url)
    state = replay(chain.store, check_invariants=True)
    assert state.state_root() == chain.state.state_root() == chain.head.state_root
    heights = [block.height for block, _ in iter_replay(chain.store)]
    assert heights == list(range(chain.height + 1))


def test_every_block_carries_the_producers_beacon_and_the_state_records_its_output(
    chain: Chain,
) -> None:
    blocks = [chain.get_block(0)] + [chain.produce_block() for _ in range(3)]
    for block in blocks:
        assert verify_beacon(chain.beacon_public_key, CHAIN_ID, block.height, block.header.beacon)
    assert len({b.header.beacon for b in blocks}) == len(blocks)
    for block in blocks[:-1]:  # recorded when the next block began
        assert chain.state.get_beacon_output(block.height) == beacon_output(block.header.beacon)


def test_replay_verifies_every_beacon_from_genesis(sqlite_url: str) -> None:
    chain = _busy_chain(sqlite_url)
    heights = [block.height for block, _ in iter_replay(chain.store)]  # verifies each beacon
    assert heights == list(range(chain.height + 1))
    chain.close()
    forged = generate_beacon_key().sign(CHAIN_ID, 2)  # the right height, another key
    db = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    header = db.execute("SELECT header FROM blocks WHERE height = 2").fetchone()[0]
    old = json.loads(header)["beacon"]
    db.execute("UPDATE blocks SET header = replace(header, ?, ?)", (old, forged.hex()))
    db.commit()
    db.close()
    again = Chain.open(sqlite_url)  # the head is intact ...
    with pytest.raises(ChainIntegrityError, match="block 2: the beacon"):  # ... block 2 is not
        replay(again.store)


def test_every_header_is_signed_by_the_producer_and_replay_checks_it(sqlite_url: str) -> None:
    chain = _busy_chain(sqlite_url)
    for height in range(chain.height + 1):
        check_header(chain.get_block(height).header, chain.beacon_public_key)
    chain.close()
    db = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    (header,) = db.execute("SELECT header FROM blocks WHERE height = 2").fetchone()
    (other,) = db.execute("SELECT header FROM blocks WHERE height = 1").fetchone()
    old, moved = (json.loads(h)["producer_signature"] for h in (header, other))
    db.execute("UPDATE blocks SET header = replace(header, ?, ?)", (old, moved))
    db.commit()
    db.close()
    again = Chain.open(sqlite_url)  # the head is intact ...
    with pytest.raises(ChainIntegrityError, match="block 2: the header is not signed"):
        replay(again.store)


def test_a_reopened_chain_keeps_its_producer_key(sqlite_url: str) -> None:
    chain = _busy_chain(sqlite_url)
    producer = chain.beacon_public_key
    chain.close()
    again = Chain.open(sqlite_url, clock=Clock())
    assert again.beacon_public_key == producer
    block = again.produce_block()
    assert verify_beacon(producer, CHAIN_ID, block.height, block.header.beacon)
    assert replay(again.store).state_root() == again.state.state_root()
    again.close()
    with pytest.raises(ChainMismatchError, match="beacon key"):
        Chain.open(sqlite_url, beacon_key=generate_beacon_key())


def test_replay_detects_a_block_that_does_not_reproduce(sqlite_url: str) -> None:
    chain = _busy_chain(sqlite_url)
    chain.close()
    db = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    db.execute("DELETE FROM transactions WHERE block_height = 2 AND idx = 1")
    db.commit()
    db.close()
    again = Chain.open(sqlite_url)  # the head state itself is intact ...
    with pytest.raises(ChainIntegrityError, match="block 2"):  # ... but its history is not
        replay(again.store)


@pytest.mark.parametrize("debug", [True, False])
def test_a_rule_that_crashes_rejects_the_transaction_and_changes_nothing(
    debug: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = open_chain(check_invariants=debug)

    def crashing(state: LedgerState, ctx: TxContext, body: Any, params: Params) -> list[Event]:
        increase_balance(state, ctx.sender, 1)
        raise KeyError("oops")

    monkeypatch.setitem(fork.PROCESSORS, "stake", crashing)
    root = chain._open.state.state_root()
    with pytest.raises(RuleFailureError) as info:
        chain.submit(sign_transaction(ALICE, CHAIN_ID, 0, StakeBody(Amount(5))))
    assert info.value.http_status == 422
    assert chain._open.state.state_root() == root and chain.pending_hashes() == []
