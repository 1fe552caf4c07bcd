"""Ingest: signatures checked before sequencing (in worker processes), one serialization per
transaction, and the same accept/reject decisions as one ``submit`` at a time."""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from contracts_sim import crypto
from contracts_sim.chain import Chain, EnvelopeChecker, admit
from contracts_sim.crypto import (
    forget_verified,
    key_from_seed,
    remember_verified,
    verify_signature,
)
from contracts_sim.exceptions import MalformedTransactionError
from contracts_sim.records import Dispute, DisputeStatus, Party, Phase
from contracts_sim.state import DISPUTES
from contracts_sim.transactions import (
    FaucetBody,
    PostPrestateBody,
    SetEndpointBody,
    Transaction,
    TransferBody,
    WithdrawBody,
    check_envelope,
    sign_transaction,
)
from protocol.errors import ProofNetError
from protocol.hashing import canonical_json, sha256
from protocol.types import Amount, Height

CHAIN_ID = "ingest-test"
T0 = 1_700_000_000
KEYS = [key_from_seed(f"ingest/{i}") for i in range(4)]
GENESIS = {key.address: 1_000 for key in KEYS}


@pytest.fixture(scope="module")
def checker() -> Iterator[EnvelopeChecker]:
    """Two worker processes, used for every batch however small."""
    pool = EnvelopeChecker(workers=2, min_parallel=1)
    yield pool
    pool.close()


def _chain(checker: EnvelopeChecker) -> Chain:
    chain = Chain.open(None, CHAIN_ID, "test", GENESIS, genesis_time=T0, clock=lambda: T0)
    chain.checker = checker
    return chain


def _transfer(sender: int, nonce: int, amount: int = 1) -> dict[str, Any]:
    to = KEYS[(sender + 1) % len(KEYS)].address
    body = TransferBody(to, Amount(amount))
    return sign_transaction(KEYS[sender], CHAIN_ID, nonce, body).to_json()


def _with_bad_signature(tx: dict[str, Any]) -> dict[str, Any]:
    signature = bytearray(bytes.fromhex(tx["signature"]))
    signature[5] ^= 1
    return {**tx, "signature": signature.hex()}


def _mixed_batch() -> list[dict[str, Any]]:
    """Good transfers with, among them, every way a transaction can be refused."""
    batch = [_transfer(0, 0), _transfer(1, 0)]
    batch.append(_with_bad_signature(_transfer(0, 1)))  # bad signature, next nonce
    batch.append(_transfer(0, 1))  # the good one with that nonce, after the bad one
    batch.append({**_transfer(2, 0), "nonce": "zero"})  # malformed envelope
    batch.append(_transfer(2, 5))  # a nonce gap
    batch.append(_transfer(3, 0, amount=10**6))  # more than the balance
    batch.append(_transfer(1, 0))  # a copy of a pending one: its hash again
    batch.append({**_transfer(3, 0), "chain_id": "another-chain"})  # signed for no chain
    batch.extend(_transfer(2, nonce) for nonce in range(3))
    batch.append(_with_bad_signature(_transfer(2, 3)))
    return batch


def _outcome(result: str | ProofNetError) -> str:
    return result if isinstance(result, str) else f"error:{result.code}"


def _serial(chain: Chain, items: list[dict[str, Any]]) -> list[str]:
    outcomes = []
    for item in items:
        try:
            outcomes.append(chain.submit(item))
        except ProofNetError as exc:
            outcomes.append(f"error:{exc.code}")
    return outcomes


def test_tx_hash_is_the_hash_of_the_whole_envelopes_canonical_json() -> None:
    bodies = [
        TransferBody(KEYS[1].address, Amount(5)),
        FaucetBody(Amount(1)),
        SetEndpointBody("https://ünïcode.example/ä"),
        WithdrawBody(),
    ]
    txs = [sign_transaction(KEYS[0], CHAIN_ID, 7, body) for body in bodies]
    # a hand-made body: an explicit null, which a typed body's to_json leaves out
    bid = {"job_id": "ab" * 32, "price": 3, "capacity": 2, "trap_root": None}
    txs.append(sign_transaction(KEYS[0], CHAIN_ID, 7, "bid", bid))
    for tx in txs:
        assert tx.envelope_bytes() == canonical_json(tx.to_json())
        assert tx.tx_hash == sha256(canonical_json(tx.to_json()))
        parsed = Transaction.from_json(tx.to_json())
        assert parsed.tx_hash == tx.tx_hash
        assert parsed.signing_bytes() == tx.signing_bytes()


def test_a_worker_hands_back_the_transaction_its_hash_and_the_verdict() -> None:
    good = _transfer(0, 0)
    checked = check_envelope(good)
    assert checked.tx is not None and checked.signature_valid
    assert checked.tx.tx_hash == Transaction.from_json(good).tx_hash
    bad = check_envelope(_with_bad_signature(good))
    assert bad.tx is not None and not bad.signature_valid
    assert check_envelope({"kind": "transfer"}) == type(checked)(None, False)


def test_only_what_verified_is_remembered() -> None:
    forget_verified()
    tx = Transaction.from_json(_transfer(0, 0))
    bad = Transaction.from_json(_with_bad_signature(_transfer(0, 0)))
    assert not verify_signature(bad.public_key, bad.signing_bytes(), bad.signature)
    assert not verify_signature(bad.public_key, bad.signing_bytes(), bad.signature)
    assert verify_signature(tx.public_key, tx.signing_bytes(), tx.signature)
    remember_verified(tx.public_key, tx.signing_bytes(), tx.signature)  # idempotent
    assert verify_signature(tx.public_key, tx.signing_bytes(), tx.signature)
    assert not verify_signature(tx.public_key, tx.signing_bytes() + b" ", tx.signature)


def test_parallel_checking_decides_as_one_submit_at_a_time(checker: EnvelopeChecker) -> None:
    batch = _mixed_batch()
    forget_verified()
    serial_chain = _chain(checker)
    serial = _serial(serial_chain, batch)
    forget_verified()  # the parallel chain must verify in its workers, not find a memo
    parallel_chain = _chain(checker)
    parallel = [_outcome(result) for result in parallel_chain.submit_many(batch)]
    assert parallel == serial
    assert serial.count("error:invalid_signature") == 2
    assert {"error:malformed_transaction", "error:nonce_too_high"} <= set(serial)
    assert {"error:insufficient_balance", "error:wrong_chain_id"} <= set(serial)
    assert parallel[7] == parallel[1]  # the copy: the pending transaction's hash
    assert parallel_chain.pending_hashes() == serial_chain.pending_hashes()
    serial_block = serial_chain.produce_block()
    parallel_block = parallel_chain.produce_block()
    assert parallel_block.header.tx_root == serial_block.header.tx_root
    assert parallel_chain.state.to_json()["accounts"] == serial_chain.state.to_json()["accounts"]


def test_a_refused_item_changes_nothing(checker: EnvelopeChecker) -> None:
    chain = _chain(checker)
    before = [chain.next_nonce(key.address) for key in KEYS], chain.state.to_json()
    results = chain.submit_many([_with_bad_signature(_transfer(0, 0)), _transfer(3, 0, 10**6)])
    assert [_outcome(r) for r in results] == [
        "error:invalid_signature",
        "error:insufficient_balance",
    ]
    assert chain.pending_hashes() == []
    assert ([chain.next_nonce(key.address) for key in KEYS], chain.state.to_json()) == before


def test_small_batches_are_checked_in_this_process() -> None:
    local = EnvelopeChecker(workers=2, min_parallel=16)
    chain = _chain(local)
    results = chain.submit_many([_transfer(0, 0), _with_bad_signature(_transfer(1, 0))])
    assert [_outcome(r) for r in results][1] == "error:invalid_signature"
    assert local._pool is None  # no worker was started for two items


def test_a_dead_worker_costs_time_not_answers(checker: EnvelopeChecker) -> None:
    fresh = EnvelopeChecker(workers=1, min_parallel=1)
    try:
        list(fresh.check_in_chunks([_transfer(0, 0)]))  # start the pool
        assert fresh._pool is not None
        for pid in list(fresh._pool._processes):  # the workers this test started
            os.kill(pid, signal.SIGKILL)
        chain = _chain(fresh)
        batch = [_transfer(0, 0), _with_bad_signature(_transfer(1, 0)), _transfer(2, 0)]
        outcomes = [_outcome(r) for r in chain.submit_many(batch)]
        assert outcomes[1] == "error:invalid_signature"
        assert outcomes[0] != outcomes[2] and not outcomes[0].startswith("error")
    finally:
        fresh.close()


def _chain_with_a_dispute_waiting_for_a_prestate(checker: EnvelopeChecker) -> Chain:
    """A chain whose head holds an open dispute in ``post_prestate`` (put there directly: the
    game that reaches it is tests/contracts_sim/test_ledger_dispute_game.py's)."""
    chain = _chain(checker)
    dispute = Dispute(
        dispute_id=DISPUTE_ID,
        job_id="cd" * 32,
        solver=KEYS[2].address,
        challenger=KEYS[3].address,
        bond=Amount(1),
        opened_height=Height(0),
        status=DisputeStatus.OPEN,
        phase=Phase.POST_PRESTATE,
        turn=Party.SOLVER,
        deadline=Height(100),
    )
    chain.state.put(DISPUTES, DISPUTE_ID, dispute)
    return chain


DISPUTE_ID = "ab" * 32


class _Unreadable(Mapping[str, Any]):
    """An in-process item whose reading fails with an error no rule expects."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("unreadable")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("unreadable")

    def __len__(self) -> int:
        return 7


def test_one_unreadable_item_is_refused_alone(checker: EnvelopeChecker) -> None:
    """A ``sender`` that is not a string, aimed at a dispute waiting for a blob, was a
    TypeError in ``admit`` that failed the whole batch (HTTP 500)."""
    chain = _chain_with_a_dispute_waiting_for_a_prestate(checker)
    body = PostPrestateBody(DISPUTE_ID, b"\x00").to_json()
    # a hand-made envelope: a sender that is not a string
    prestate = {**_transfer(0, 0), "kind": "post_prestate", "sender": ["x"], "body": body}
    with pytest.raises(MalformedTransactionError):
        admit(chain.state, "post_prestate", body, ["x"], chain.params)
    good = _transfer(0, 0)
    results = chain.submit_many([prestate, _Unreadable(), good])
    assert [_outcome(r) for r in results] == [
        "error:malformed_transaction",
        "error:malformed_transaction",
        sha256(canonical_json(good)).hex(),
    ]
    assert chain.pending_hashes() == [results[2]]


def test_a_signature_that_failed_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """``submit_many`` refuses an item whose signature the checker found invalid without
    verifying it a second time (an attacker's bad items cost one verification each)."""
    calls: list[int] = []
    real = crypto._verify_uncached

    def counting(public_key: bytes, message: bytes, signature: bytes) -> bool:
        calls.append(1)
        return real(public_key, message, signature)

    monkeypatch.setattr(crypto, "_verify_uncached", counting)
    chain = Chain.open(None, CHAIN_ID, "test", GENESIS, genesis_time=T0, clock=lambda: T0)
    chain.checker = EnvelopeChecker(1, min_parallel=10**9)  # in this process: counted
    bad = [_with_bad_signature(_transfer(0, nonce)) for nonce in range(10)]
    results = chain.submit_many([*bad, {**bad[0], "chain_id": "another-chain"}])
    assert [_outcome(r) for r in results] == ["error:invalid_signature"] * 10 + [
        "error:wrong_chain_id"
    ]
    assert len(calls) == 11


def test_a_verified_triple_does_not_make_its_bytes_resplit_verify() -> None:
    """The memo's digest is over ``key || signature || message``: sizes are checked before
    it is read, so a triple that verified lends nothing to another split of those bytes (a
    31-byte key, or a 69-byte signature and a message without the transaction domain)."""
    key = KEYS[0]
    message = b"proofnet/tx/v1\x00hello"
    signature, public_key = key.sign(message), key.public_key
    assert verify_signature(public_key, message, signature)  # now remembered
    resplit_key = (public_key[:31], signature[63:] + message, public_key[31:] + signature[:63])
    assert not verify_signature(*resplit_key)
    assert not verify_signature(public_key, message[5:], signature + message[:5])
    remember_verified(*resplit_key)
    assert not verify_signature(*resplit_key)


def test_a_transactions_body_cannot_change_under_its_signature() -> None:
    """Signing bytes and hash are cached: a body changed afterwards would be applied as
    changed, still verify, and break replay. Bodies are frozen all the way down, still read,
    encoded and pickled as JSON."""
    # a hand-made body: a nested field no TransferBody has, to reach the inner freezing
    body = {"to": KEYS[1].address, "amount": 1, "note": {"tags": ["a"]}}
    tx = sign_transaction(KEYS[0], CHAIN_ID, 0, "transfer", body)
    hashed = tx.tx_hash
    changes: list[Callable[[], object]] = [
        lambda: tx.body.__setitem__("amount", 123_456),
        lambda: tx.body.update(amount=2),
        lambda: tx.body.pop("amount"),
        lambda: tx.body["note"].__setitem__("x", 1),
        lambda: tx.body["note"]["tags"].append("b"),
        lambda: tx.body["note"]["tags"].__setitem__(0, "b"),
    ]
    for change in changes:
        with pytest.raises(TypeError):
            change()
    assert tx.body == body and sha256(tx.envelope_bytes()) == hashed
    assert Transaction.from_json(tx.to_json()) == tx
    assert canonical_json(tx.to_json()) == tx.envelope_bytes()
    assert pickle.loads(pickle.dumps(tx)) == tx
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(tx)).body["note"]["tags"].append("b")
    assert body == {"to": KEYS[1].address, "amount": 1, "note": {"tags": ["a"]}}
    body["amount"] = 2  # the caller's dict is its own
    assert tx.body["amount"] == 1
