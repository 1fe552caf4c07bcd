"""The envelope: keys, signatures, nonces, chain ids, kinds, bodies — and the state journal."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TypeVar

import pytest

from contracts_sim import TX_KINDS, apply_transaction, begin_block, genesis_state
from contracts_sim.crypto import (
    PrivateKey,
    address_of,
    generate_key,
    key_from_seed,
    verify_signature,
)
from contracts_sim.env import BlockEnv
from contracts_sim.exceptions import (
    CorruptStateError,
    InsufficientBalanceError,
    InvalidBlockError,
    InvalidSignatureError,
    InvalidSpecError,
    MalformedBodyError,
    MalformedTransactionError,
    NonceTooHighError,
    NonceTooLowError,
    SenderMismatchError,
    UnknownTransactionKindError,
    WrongChainError,
)
from contracts_sim.fork import PROCESSORS
from contracts_sim.params import TEST
from contracts_sim.records import Account
from contracts_sim.state import ACCOUNTS, LedgerState
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    StakeBody,
    Transaction,
    TransferBody,
    WithdrawBody,
    parse_body,
    sign_transaction,
)
from protocol.types import Address, Amount, Hash32, Height
from tests.ledger_helpers import job_posting, post_job_body


@pytest.fixture
def h() -> LedgerHarness:
    return LedgerHarness({"alice": 10_000, "bob": 100})


# --- keys -----------------------------------------------------------------------------------


def test_address_is_sha256_of_public_key_prefix() -> None:
    key = key_from_seed("x")
    assert key.address == address_of(key.public_key)
    assert key.address.startswith("0x") and len(key.address) == 42
    assert key.address == key.address.lower()


def test_key_json_round_trip_and_consistency_checks() -> None:
    key = generate_key()
    data = key.to_json()
    assert PrivateKey.from_json(data).address == key.address
    with pytest.raises(ValueError):
        PrivateKey.from_json({**data, "address": "0x" + "0" * 40})
    assert "seed" not in repr(key) and key.seed_hex() not in repr(key)


def test_signatures_verify_only_for_the_signed_message() -> None:
    key = key_from_seed("signer")
    sig = key.sign(b"hello")
    assert verify_signature(key.public_key, b"hello", sig)
    assert not verify_signature(key.public_key, b"hellp", sig)
    assert not verify_signature(key_from_seed("other").public_key, b"hello", sig)
    assert not verify_signature(key.public_key, b"hello", sig[:-1])


# --- transaction encoding -------------------------------------------------------------------


def test_transaction_json_round_trip_and_hash(h: LedgerHarness) -> None:
    tx = h.sign("alice", TransferBody(h.address("bob"), Amount(5)))
    again = Transaction.from_json(tx.to_json())
    assert again == tx
    assert again.tx_hash == tx.tx_hash
    assert tx.signing_bytes().startswith(b"proofnet/tx/v1\x00")
    assert b'"chain_id":"proofnet-test"' in tx.signing_bytes()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("signature"),
        lambda d: d.update(extra=1),
        lambda d: d.update(nonce=True),
        lambda d: d.update(nonce=-1),
        lambda d: d.update(nonce="1"),
        lambda d: d.update(sender="0xABC"),
        lambda d: d.update(sender=d["sender"].upper().replace("0X", "0x")),
        lambda d: d.update(public_key="zz" * 32),
        lambda d: d.update(public_key="ab" * 31),
        lambda d: d.update(signature="AB" * 64),
        lambda d: d.update(body=[1, 2]),
        lambda d: d.update(body={"x": float("nan")}),
        lambda d: d.update(kind=""),
        lambda d: d.update(chain_id=7),
    ],
)
def test_malformed_envelopes_are_rejected(h: LedgerHarness, mutate: object) -> None:
    data = h.sign("alice", TransferBody(h.address("bob"), Amount(5))).to_json()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(MalformedTransactionError):
        Transaction.from_json(data)


def test_from_json_rejects_non_objects() -> None:
    with pytest.raises(MalformedTransactionError):
        Transaction.from_json([1, 2, 3])


def test_every_kind_has_a_body_and_a_processor() -> None:
    assert set(TX_KINDS) == set(PROCESSORS)
    assert len(TX_KINDS) == 32


# --- envelope errors change nothing ---------------------------------------------------------


def test_transfer_success(h: LedgerHarness) -> None:
    receipt = h.send("alice", TransferBody(h.address("bob"), Amount(30)))
    assert receipt.kinds() == ["transfer"]
    assert h.account("alice").balance == 9_970 and h.account("alice").nonce == 1
    assert h.account("bob").balance == 130


def test_wrong_chain_id(h: LedgerHarness) -> None:
    tx = sign_transaction(
        h.key("alice"), "other-chain", 0, TransferBody(h.address("bob"), Amount(1))
    )
    err = h.expect_rejected(tx, WrongChainError)
    assert err.code == "wrong_chain_id" and err.http_status == 400


def test_tampered_body_fails_signature(h: LedgerHarness) -> None:
    tx = h.sign("alice", TransferBody(h.address("bob"), Amount(1)))
    forged = replace(tx, body=TransferBody(h.address("bob"), Amount(999)).to_json())
    h.expect_rejected(forged, InvalidSignatureError)


def test_signature_by_another_key(h: LedgerHarness) -> None:
    tx = h.sign("alice", TransferBody(h.address("bob"), Amount(1)))
    bob_sig = h.key("bob").sign(tx.signing_bytes())
    h.expect_rejected(replace(tx, signature=bob_sig), InvalidSignatureError)


def test_sender_must_match_public_key(h: LedgerHarness) -> None:
    tx = h.sign("alice", TransferBody(h.address("bob"), Amount(1)))
    h.expect_rejected(replace(tx, sender=h.address("bob")), SenderMismatchError)


def test_replayed_transaction_is_rejected(h: LedgerHarness) -> None:
    tx = h.sign("alice", TransferBody(h.address("bob"), Amount(1)))
    h.apply(tx)
    err = h.expect_rejected(tx, NonceTooLowError)
    assert (err.expected, err.got) == (1, 0)  # type: ignore[attr-defined]


def test_nonce_gap_is_rejected(h: LedgerHarness) -> None:
    tx = h.sign("alice", TransferBody(h.address("bob"), Amount(1)), nonce=5)
    err = h.expect_rejected(tx, NonceTooHighError)
    assert err.code == "nonce_too_high" and err.http_status == 409


def test_unknown_kind(h: LedgerHarness) -> None:
    # a hand-made body: a kind no body class has
    err = h.expect_error("alice", "mint_everything", {}, UnknownTransactionKindError)
    assert err.code == "unknown_transaction_kind"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "0xnothex", "amount": 1}, "to"),
        ({"amount": 1}, "to"),
        ({"to": None, "amount": 1}, "to"),
        ({"to": "ADDR", "amount": 0}, "amount"),
        ({"to": "ADDR", "amount": -5}, "amount"),
        ({"to": "ADDR", "amount": True}, "amount"),
        ({"to": "ADDR", "amount": 1.0}, "amount"),
        ({"to": "ADDR", "amount": "1"}, "amount"),
        ({"to": "ADDR", "amount": 2**63}, "amount"),
        ({"to": "ADDR", "amount": 1, "memo": "hi"}, "memo"),
    ],
)
def test_malformed_transfer_body(h: LedgerHarness, body: dict[str, object], field: str) -> None:
    body = {k: (h.address("bob") if v == "ADDR" else v) for k, v in body.items()}
    # a hand-made body: each is one a TransferBody cannot hold
    err = h.expect_error("alice", "transfer", body, MalformedBodyError)
    assert err.field == field  # type: ignore[attr-defined]
    assert err.code == "malformed_body"


def test_overspend_is_rejected(h: LedgerHarness) -> None:
    err = h.expect_error(
        "bob", TransferBody(h.address("alice"), Amount(101)), error=InsufficientBalanceError
    )
    assert (err.address, err.needed, err.available) == (h.address("bob"), 101, 100)  # type: ignore[attr-defined]
    assert err.http_status == 402


def test_account_without_funds_cannot_send_but_nonce_unused() -> None:
    h = LedgerHarness({"alice": 10})
    h.add_key("newcomer")
    h.expect_error(
        "newcomer", TransferBody(h.address("alice"), Amount(1)), error=InsufficientBalanceError
    )
    assert h.account("newcomer") == Account()
    assert h.state.get(ACCOUNTS, h.address("newcomer")) is None


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("bid", {"job_id": "ab" * 31, "price": 1, "capacity": 1}, "job_id"),
        ("bid", {"job_id": "zz" * 32, "price": 1, "capacity": 1}, "job_id"),
        ("bid", {"job_id": "ab" * 32, "price": 1, "capacity": 0}, "capacity"),
        ("withdraw", {"anything": 1}, "anything"),
        ("choose_child", {"dispute_id": "ab" * 32, "side": "middle"}, "side"),
        ("respond_midpoint", {"dispute_id": "ab" * 32, "agree": 1}, "agree"),
        ("claim_timeout", {}, "job_id"),
        ("claim_timeout", {"job_id": "ab" * 32, "dispute_id": "ab" * 32}, "job_id"),
        (
            "commit_progress",
            {"job_id": "ab" * 32, "size": 1, "root": "ab" * 32, "consistency_proof": {"bad": 1}},
            "consistency_proof",
        ),
        ("challenge", {"job_id": "ab" * 32, "segment": 1}, "pre_entry"),
        ("post_prestate", {"dispute_id": "ab" * 32, "blob": "abc"}, "blob"),
    ],
)
def test_parse_body_names_the_field(kind: str, body: dict[str, object], field: str) -> None:
    with pytest.raises(MalformedBodyError) as info:
        parse_body(kind, body)  # a hand-made body: malformed JSON, no typed body holds it
    assert info.value.field == field


def test_ids_are_normalised_to_lowercase_hex() -> None:
    body = parse_body("settle", {"job_id": "0x" + "AB" * 32})  # a hand-made body: 0x, uppercase
    assert body.job_id == "ab" * 32


def test_invalid_spec_names_the_spec_field(h: LedgerHarness) -> None:
    body = post_job_body()
    body["spec"] = copy.deepcopy(body["spec"])
    body["spec"]["steps"] = 30  # not a multiple of C = 4
    # a hand-made body: an invalid spec, which no JobSpec (so no PostJobBody) holds
    err = h.expect_error("alice", "post_job", body, InvalidSpecError)
    assert err.field == "spec.checkpoint_interval"  # type: ignore[attr-defined]
    assert err.code == "invalid_spec"


# --- the state and the journal --------------------------------------------------------------


A1 = Address("0x" + "1" * 40)
A2 = Address("0x" + "2" * 40)


def test_rollback_restores_exactly_and_forgets_dirty_keys() -> None:
    state = LedgerState()
    state.set_account(A1, Account(balance=Amount(5)))
    state.clear_dirty()
    before = state.to_json()
    state.begin()
    state.set_account(A1, Account(balance=Amount(7)))
    state.set_account(A2, Account(balance=Amount(1)))
    state.begin()
    state.delete(ACCOUNTS, A1)
    state.commit()
    assert len(state.dirty_keys()) == 2
    state.rollback()
    assert state.to_json() == before
    assert state.dirty_keys() == set()


def test_commit_keeps_writes_and_marks_them_dirty() -> None:
    state = LedgerState()
    state.begin()
    state.set_account(A1, Account(balance=Amount(5)))
    state.commit()
    assert state.get_account(A1).balance == 5
    assert state.dirty_keys() == {(ACCOUNTS, A1)}
    state.clear_dirty()
    assert state.dirty_keys() == set()


def test_put_checks_table_types() -> None:
    state = LedgerState()
    with pytest.raises(TypeError):
        state.put(ACCOUNTS, "0x" + "1" * 40, {"balance": 1})
    with pytest.raises(TypeError):
        state.put("block_hashes", "1", b"\x00" * 32)


def test_snapshot_round_trip_and_root_determinism(h: LedgerHarness) -> None:
    h.send("alice", job_posting())
    h.advance(2)
    data = h.state.to_json()
    restored = LedgerState.from_json(copy.deepcopy(data))
    assert restored.to_json() == data
    assert restored.state_root() == h.state.state_root()
    assert h.state.copy().state_root() == h.state.state_root()


def test_corrupt_snapshots_are_refused(h: LedgerHarness) -> None:
    data = h.state.to_json()
    bad = copy.deepcopy(data)
    address = next(iter(bad["accounts"]))
    bad["accounts"][address]["balance"] = "lots"
    with pytest.raises(CorruptStateError):
        LedgerState.from_json(bad)
    bad = copy.deepcopy(data)
    bad["accounts"][address]["extra"] = 1
    with pytest.raises(CorruptStateError):
        LedgerState.from_json(bad)
    with pytest.raises(CorruptStateError):
        LedgerState.from_json({"accounts": {}})


def test_failed_transaction_rolls_back_nonce_increment(h: LedgerHarness) -> None:
    # The nonce is incremented before the processor runs; a processor error undoes it.
    h.expect_error("bob", StakeBody(Amount(10_000)), error=InsufficientBalanceError)
    assert h.account("bob").nonce == 0


def test_unexpected_exceptions_also_roll_back(
    h: LedgerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(state, ctx, body, params):  # type: ignore[no-untyped-def]
        state.set_account(ctx.sender, Account(balance=Amount(10**9)))
        raise RuntimeError("bug")

    monkeypatch.setitem(PROCESSORS, "withdraw", broken)
    before = h.state.to_json()
    with pytest.raises(RuntimeError):
        apply_transaction(h.state, h.sign("alice", WithdrawBody()), h.env, h.params)
    assert h.state.to_json() == before


# --- genesis and blocks ---------------------------------------------------------------------


def test_genesis_counts_supply_and_rejects_bad_allocations() -> None:
    key = key_from_seed("g")
    state = genesis_state({key.address: 50}, TEST)
    assert state.get_supply().genesis == 50
    with pytest.raises(ValueError):
        genesis_state({Address("0xnope"): 1}, TEST)  # not a canonical address
    with pytest.raises(ValueError):
        genesis_state({key.address: -1}, TEST)


def _block(height: int) -> BlockEnv:
    return BlockEnv(Height(height), 0, "c")


def test_begin_block_records_parent_hash_and_beacon_in_order() -> None:
    state = genesis_state({}, TEST)
    beacon = Hash32(b"\xbb" * 32)
    begin_block(state, _block(1), Hash32(b"\x01" * 32), beacon)
    assert state.get_block_hash(Height(0)) == b"\x01" * 32
    assert state.get_beacon_output(Height(0)) == beacon
    with pytest.raises(InvalidBlockError):
        begin_block(state, _block(1), Hash32(b"\x02" * 32), beacon)  # already begun
    with pytest.raises(InvalidBlockError):
        begin_block(state, _block(3), Hash32(b"\x02" * 32), beacon)  # skips block 2
    with pytest.raises(InvalidBlockError):
        begin_block(state, _block(2), Hash32(b"\x02" * 31), beacon)  # not a hash
    with pytest.raises(InvalidBlockError):
        begin_block(state, _block(2), Hash32(b"\x02" * 32), Hash32(beacon[:31]))  # not an output
    with pytest.raises(InvalidBlockError):
        begin_block(state, _block(0), Hash32(b"\x02" * 32), beacon)  # genesis has no parent
    begin_block(state, _block(2), Hash32(b"\x02" * 32), Hash32(b"\xcc" * 32))
    assert state.get_block_hash(Height(1)) == b"\x02" * 32
    assert state.get_beacon_output(Height(1)) == b"\xcc" * 32


# --- the error tree -------------------------------------------------------------------------


E = TypeVar("E")


def _subclasses(cls: type[E]) -> list[type[E]]:
    found: list[type[E]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_ledger_error_has_a_stable_code_and_a_4xx_status() -> None:
    from contracts_sim import exceptions

    errors = [c for c in _subclasses(exceptions.LedgerError) if c.__module__ == exceptions.__name__]
    assert len(errors) > 30
    leaf_codes = [c.code for c in errors if not c.__subclasses__()]
    assert len(leaf_codes) == len(set(leaf_codes)), "leaf error codes are unique"
    for cls in errors:
        assert cls.code.islower() and " " not in cls.code
        assert 400 <= cls.http_status < 500, cls
    assert exceptions.InvariantViolation.http_status == 500
