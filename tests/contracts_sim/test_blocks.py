"""Blocks, receipts and events: hashes, tx roots and strict JSON round trips."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from contracts_sim.beacon import (
    BEACON_SIZE,
    beacon_message,
    beacon_output,
    generate_beacon_key,
    header_message,
    shared_beacon_key,
    verify_beacon,
    verify_header_signature,
)
from contracts_sim.blocks import (
    GENESIS_PARENT_HASH,
    Block,
    BlockHeader,
    ChainEvent,
    ErrorInfo,
    Receipt,
    check_beacon,
    check_header,
    check_producer_signature,
    compute_tx_root,
)
from contracts_sim.crypto import key_from_seed
from contracts_sim.exceptions import (
    InvalidBeaconError,
    InvalidHeaderSignatureError,
    MalformedBlockError,
)
from contracts_sim.transactions import Transaction, TransferBody, sign_transaction
from protocol.hashing import canonical_json, sha256
from protocol.merkle import root_of
from protocol.types import Amount, Height

ALICE = key_from_seed("blocks/alice")
BOB = key_from_seed("blocks/bob")


def transfers(n: int) -> tuple[Transaction, ...]:
    return tuple(
        sign_transaction(ALICE, "c", i, TransferBody(BOB.address, Amount(i + 1))) for i in range(n)
    )


def header(**overrides: Any) -> BlockHeader:
    values: dict[str, Any] = {
        "height": Height(3),
        "parent_hash": sha256(b"parent"),
        "time": 1_700_000_000,
        "tx_root": compute_tx_root(()),
        "state_root": sha256(b"state"),
        "chain_id": "c",
        "beacon": shared_beacon_key().sign("c", 3),
    }
    values.update(overrides)
    return BlockHeader(**values).signed(shared_beacon_key())


def test_block_hash_is_sha256_of_the_canonical_header_json_without_its_signature() -> None:
    h = header()
    unsigned = {k: v for k, v in h.to_json().items() if k != "producer_signature"}
    assert h.hash == sha256(canonical_json(unsigned)) == sha256(canonical_json(h.unsigned_json()))
    assert Block(h).hash == h.hash
    assert dataclasses.replace(h, producer_signature=b"").hash == h.hash


@pytest.mark.parametrize(
    "field, value",
    [
        ("height", Height(4)),
        ("parent_hash", sha256(b"other parent")),
        ("time", 1_700_000_001),
        ("tx_root", sha256(b"other txs")),
        ("state_root", sha256(b"other state")),
        ("chain_id", "d"),
        ("beacon", shared_beacon_key().sign("c", 4)),
    ],
)
def test_every_header_field_changes_the_hash(field: str, value: Any) -> None:
    assert dataclasses.replace(header(), **{field: value}).hash != header().hash


def test_tx_root_is_the_rfc9162_root_of_the_tx_hashes_in_order() -> None:
    txs = transfers(5)
    assert compute_tx_root(txs) == root_of([tx.tx_hash for tx in txs])
    assert compute_tx_root(txs) != compute_tx_root(txs[::-1])
    assert compute_tx_root(()) == sha256(b"")


def test_header_and_block_json_round_trip() -> None:
    txs = transfers(3)
    block = Block(header(tx_root=compute_tx_root(txs)), txs)
    assert BlockHeader.from_json(block.header.to_json()) == block.header
    again = Block.from_json(block.to_json())
    assert again == block
    assert again.hash == block.hash
    assert again.tx_hashes() == [tx.tx_hash for tx in txs]


def test_genesis_parent_is_zero_hash() -> None:
    assert bytes(GENESIS_PARENT_HASH) == bytes(32)


def test_block_from_json_rejects_a_tx_root_that_does_not_match() -> None:
    txs = transfers(2)
    data = Block(header(tx_root=compute_tx_root(txs)), txs).to_json()
    data["transactions"] = data["transactions"][:1]
    with pytest.raises(MalformedBlockError, match="tx_root"):
        Block.from_json(data)


def _bad_header(**changes: Any) -> dict[str, Any]:
    data = header().to_json()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"height": 1},
        _bad_header(height=-1),
        _bad_header(height=True),
        _bad_header(height=1.0),
        _bad_header(parent_hash="00" * 31),
        _bad_header(parent_hash="ZZ" * 32),
        _bad_header(state_root="AB" * 32),  # uppercase is not canonical
        _bad_header(chain_id=""),
        _bad_header(beacon="00" * (BEACON_SIZE - 1)),  # one byte short
        _bad_header(beacon="AB" * BEACON_SIZE),  # uppercase is not canonical
        _bad_header(beacon=None),
        {k: v for k, v in header().to_json().items() if k != "beacon"},
        _bad_header(producer_signature="00" * (BEACON_SIZE - 1)),
        _bad_header(producer_signature=""),  # an unsigned header is not a stored one
        {k: v for k, v in header().to_json().items() if k != "producer_signature"},
        {**header().to_json(), "extra": 1},
    ],
)
def test_header_from_json_rejects_malformed_input(data: Any) -> None:
    with pytest.raises(MalformedBlockError):
        BlockHeader.from_json(data)


def test_block_from_json_rejects_malformed_transactions() -> None:
    data = Block(header()).to_json()
    data["transactions"] = [{"kind": "transfer"}]
    with pytest.raises(MalformedBlockError, match="transaction"):
        Block.from_json(data)
    data["transactions"] = "nope"
    with pytest.raises(MalformedBlockError):
        Block.from_json(data)


def test_receipt_and_event_json_round_trip() -> None:
    tx_hash = transfers(1)[0].tx_hash.hex()
    event = ChainEvent(7, Height(2), tx_hash, "transfer", {"amount": 5})
    applied = Receipt(tx_hash, "applied", Height(2), 0, None, (event,))
    failed = Receipt(tx_hash, "failed", Height(3), None, ErrorInfo("nonce_too_low", "replay"))
    pending = Receipt(tx_hash, "pending", Height(4), 2)
    for receipt in (applied, failed, pending):
        assert Receipt.from_json(receipt.to_json()) == receipt
    assert ChainEvent.from_json(event.to_json()) == event
    assert applied.ok and not failed.ok and not pending.ok


@pytest.mark.parametrize(
    "change",
    [
        {"status": "done"},
        {"tx_hash": "xyz"},
        {"height": -2},
        {"events": {}},
        {"error": {"code": "x"}},
    ],
)
def test_receipt_from_json_rejects_malformed_input(change: dict[str, Any]) -> None:
    data = Receipt("ab" * 32, "pending", Height(1), 0).to_json()
    data.update(change)
    with pytest.raises(MalformedBlockError):
        Receipt.from_json(data)


# --- the beacon -----------------------------------------------------------------------------


def test_beacon_is_unique_per_height_and_verifies_with_the_producer_key() -> None:
    key = shared_beacon_key()
    beacon = key.sign("c", 3)
    assert beacon == key.sign("c", 3)  # deterministic: one value per height, nothing to grind
    assert len(beacon) == BEACON_SIZE and beacon_output(beacon) == sha256(beacon)
    assert verify_beacon(key.public_key, "c", 3, beacon)
    check_beacon(header(), key.public_key)  # does not raise


def test_beacon_message_is_domain_chain_id_and_height() -> None:
    assert beacon_message("c", 3) == b"proofnet/beacon/v1" + b"c" + (3).to_bytes(8, "big")
    with pytest.raises(ValueError):
        beacon_message("c", -1)


@pytest.mark.parametrize(
    "changes",
    [
        {"beacon": shared_beacon_key().sign("c", 4)},  # another height's beacon
        {"beacon": shared_beacon_key().sign("d", 3)},  # another chain's beacon
        {"beacon": bytes(BEACON_SIZE)},  # not a signature
        {"height": Height(4)},  # the header moved to a height its beacon is not for
    ],
)
def test_check_beacon_rejects_a_beacon_not_for_this_header(changes: dict[str, Any]) -> None:
    bad = dataclasses.replace(header(), **changes)
    with pytest.raises(InvalidBeaconError) as caught:
        check_beacon(bad, shared_beacon_key().public_key)
    assert caught.value.code == "invalid_beacon" and caught.value.height == bad.height


def test_check_beacon_rejects_another_producer_key_and_non_keys() -> None:
    with pytest.raises(InvalidBeaconError):
        check_beacon(header(), generate_beacon_key().public_key)
    for not_a_key in (b"", b"\x30" * 10, key_from_seed("x").public_key):
        assert not verify_beacon(not_a_key, "c", 3, header().beacon)


# --- the producer's signature of the header -------------------------------------------------


def test_the_producer_signs_the_header_hash() -> None:
    key = shared_beacon_key()
    h = header()
    assert len(h.producer_signature) == BEACON_SIZE
    assert h.producer_signature == key.sign_header(h.hash)  # deterministic
    check_producer_signature(h, key.public_key)  # does not raise
    check_header(h, key.public_key)
    assert BlockHeader.from_json(h.to_json()) == h


@pytest.mark.parametrize(
    "changes",
    [
        {"state_root": sha256(b"an invented state")},  # a node's forged root, beacon copied
        {"tx_root": sha256(b"other txs")},
        {"height": Height(4), "beacon": shared_beacon_key().sign("c", 4)},
        {"producer_signature": shared_beacon_key().sign("c", 3)},  # a beacon is not one
        {"producer_signature": bytes(BEACON_SIZE)},
    ],
)
def test_a_header_the_producer_did_not_sign_is_refused(changes: dict[str, Any]) -> None:
    forged = dataclasses.replace(header(), **changes)
    check_beacon(dataclasses.replace(header(), state_root=sha256(b"x")), KEY.public_key)
    with pytest.raises(InvalidHeaderSignatureError) as caught:
        check_producer_signature(forged, KEY.public_key)
    assert caught.value.code == "invalid_header_signature"
    with pytest.raises(MalformedBlockError):
        check_header(forged, KEY.public_key)


def test_a_header_signed_by_another_key_is_refused() -> None:
    with pytest.raises(InvalidHeaderSignatureError):
        check_producer_signature(header(), generate_beacon_key().public_key)
    assert not verify_header_signature(b"not a key", header().hash, header().producer_signature)


def test_header_and_beacon_messages_are_domain_separated() -> None:
    assert header_message(bytes(32)) == b"proofnet/header/v1\x00" + bytes(32)
    for height in (0, 3, 2**64 - 1):
        beacon = beacon_message("c", height)
        assert not beacon.startswith(b"proofnet/header/v1")
        assert not header_message(bytes(32)).startswith(b"proofnet/beacon/v1")
    with pytest.raises(ValueError):
        header_message(b"short")


KEY = shared_beacon_key()
