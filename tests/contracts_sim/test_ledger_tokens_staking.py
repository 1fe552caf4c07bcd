"""faucet, transfer, stake, unstake, withdraw: each success, each error (which changes nothing)."""

from __future__ import annotations

import pytest

from contracts_sim.exceptions import (
    FaucetCapExceededError,
    FaucetDisabledError,
    InsufficientBalanceError,
    InsufficientStakeError,
    NothingToWithdrawError,
    StakeReservedError,
    TooManyUnbondingEntriesError,
)
from contracts_sim.params import TEST, TESTNET, get_preset
from contracts_sim.records import UnbondingEntry
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    BidBody,
    FaucetBody,
    StakeBody,
    TransferBody,
    UnstakeBody,
    WithdrawBody,
)
from protocol.types import Amount, Height
from tests.ledger_helpers import JOB_TERMS, funded_harness, post_job


@pytest.fixture
def h() -> LedgerHarness:
    return LedgerHarness({"alice": 1_000, "bob": 0})


def test_presets_are_valid_and_named() -> None:
    assert get_preset("test") is TEST and get_preset("testnet") is TESTNET
    operator = get_preset("testnet-operator")
    assert operator.operator_disputes and operator.forced_error_bps == 0
    assert operator.move_timeout > TESTNET.move_timeout  # a move may run a step's trace
    assert TEST.challenge_window < TESTNET.challenge_window
    with pytest.raises(ValueError):
        get_preset("mainnet")
    with pytest.raises(ValueError):
        TEST.with_changes(score_weight_price=1)  # weights no longer sum to 10_000
    with pytest.raises(ValueError):
        TEST.with_changes(challenge_window=1)
    assert type(TEST).from_json(TEST.to_json()) == TEST


# --- faucet ---------------------------------------------------------------------------------


def test_faucet_mints_and_counts_supply(h: LedgerHarness) -> None:
    receipt = h.send("bob", FaucetBody(Amount(500)))
    assert receipt.kinds() == ["minted"]
    assert h.account("bob").balance == 500
    assert h.state.get_supply().minted == 500


def test_faucet_disabled() -> None:
    h = LedgerHarness({"alice": 10}, params=TEST.with_changes(faucet_enabled=False))
    err = h.expect_error("alice", FaucetBody(Amount(1)), error=FaucetDisabledError)
    assert err.http_status == 403


def test_faucet_tops_up_to_the_cap_only(h: LedgerHarness) -> None:
    h.send("bob", FaucetBody(Amount(TEST.faucet_max)))
    err = h.expect_error("bob", FaucetBody(Amount(1)), error=FaucetCapExceededError)
    assert err.cap == TEST.faucet_max  # type: ignore[attr-defined]


# --- transfer -------------------------------------------------------------------------------


def test_transfer_to_self_is_a_no_op_on_balance(h: LedgerHarness) -> None:
    h.send("alice", TransferBody(h.address("alice"), Amount(10)))
    assert h.account("alice").balance == 1_000


def test_transfer_overspend(h: LedgerHarness) -> None:
    h.expect_error(
        "alice", TransferBody(h.address("bob"), Amount(1_001)), error=InsufficientBalanceError
    )


# --- stake / unstake / withdraw -------------------------------------------------------------


def test_stake_moves_balance_to_free_stake(h: LedgerHarness) -> None:
    receipt = h.send("alice", StakeBody(Amount(300)))
    assert receipt.event("staked").data == {"address": h.address("alice"), "amount": 300}
    account = h.account("alice")
    assert (account.balance, account.bonded) == (700, 300)


def test_stake_more_than_balance(h: LedgerHarness) -> None:
    h.expect_error("alice", StakeBody(Amount(1_001)), error=InsufficientBalanceError)


def test_unstake_starts_unbonding(h: LedgerHarness) -> None:
    h.send("alice", StakeBody(Amount(300)))
    receipt = h.send("alice", UnstakeBody(Amount(100)))
    release = h.height + TEST.unbonding_delay
    assert receipt.event("unstaked").data["release_height"] == release
    account = h.account("alice")
    assert account.bonded == 200
    assert account.unbonding == (UnbondingEntry(Amount(100), Height(release)),)
    assert account.total_stake == 300


def test_unstake_more_than_free_stake(h: LedgerHarness) -> None:
    h.send("alice", StakeBody(Amount(300)))
    err = h.expect_error("alice", UnstakeBody(Amount(301)), error=InsufficientStakeError)
    assert (err.needed, err.available) == (301, 300)  # type: ignore[attr-defined]


def test_unstake_cannot_take_stake_a_bid_reserves() -> None:
    h = funded_harness()  # the solver has 1000 free stake
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(800), 8))
    before = h.account("solver")
    err = h.expect_error("solver", UnstakeBody(Amount(801)), error=StakeReservedError)
    assert (err.needed, err.available, err.reserved) == (801, 800, 200)  # type: ignore[attr-defined]
    assert h.account("solver") == before
    h.send("solver", UnstakeBody(Amount(800)))
    assert h.account("solver").bonded == JOB_TERMS["min_stake"]


def test_unbonding_queue_is_bounded(h: LedgerHarness) -> None:
    h.send("alice", StakeBody(Amount(300)))
    for _ in range(TEST.max_unbonding_entries):
        h.send("alice", UnstakeBody(Amount(1)))
    h.expect_error("alice", UnstakeBody(Amount(1)), error=TooManyUnbondingEntriesError)


def test_withdraw_after_the_delay_only(h: LedgerHarness) -> None:
    h.send("alice", StakeBody(Amount(300)))
    h.send("alice", UnstakeBody(Amount(100)))
    first_release = h.height + TEST.unbonding_delay
    h.advance(1)
    h.send("alice", UnstakeBody(Amount(50)))
    err = h.expect_error("alice", WithdrawBody(), error=NothingToWithdrawError)
    assert err.next_release == first_release  # type: ignore[attr-defined]
    h.advance_to(first_release)
    receipt = h.send("alice", WithdrawBody())
    assert receipt.event("withdrawn").data["amount"] == 100
    account = h.account("alice")
    assert account.balance == 800 and len(account.unbonding) == 1
    h.advance(1)
    h.send("alice", WithdrawBody())
    assert h.account("alice").balance == 850 and h.account("alice").unbonding == ()


def test_withdraw_with_nothing_unbonding(h: LedgerHarness) -> None:
    err = h.expect_error("alice", WithdrawBody(), error=NothingToWithdrawError)
    assert err.next_release is None  # type: ignore[attr-defined]
