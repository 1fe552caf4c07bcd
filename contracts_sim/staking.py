"""Staking: bond tokens, unbond them with a delay, withdraw the matured ones.

    balance --stake--> bonded (free stake) --unstake--> unbonding (release_height)
            <------------------------- withdraw (once height >= release_height)

Free stake is what bids and verifier checks look at. A bid on an open job reserves the job's
``min_stake`` of it (``reserved_stake``): ``unstake`` cannot take reserved stake, and another bid
needs free stake beyond it. A bid that wins moves the job's ``min_stake`` from ``bonded`` to
``locked`` (jobs.py), out of reach of ``unstake`` until the job settles or is slashed. Only
locked stake is ever slashed; a verifier's stake never is (its claims are backed by bonds). The
unbonding delay stops stake from hopping between accounts faster than once a delay, so one
stake cannot make a row of sybil verifiers eligible within one challenge window
(docs/protocol.md, "Stake").

Every change of an account's stake goes through one of the named mutators below (``bond_stake``,
``unbond_stake``, ``withdraw_unbonded``, ``lock_stake``, ``release_stake``, ``slash_stake``);
the rules never rewrite ``bonded``, ``locked`` or ``unbonding`` themselves.
"""

from __future__ import annotations

from dataclasses import replace

from contracts_sim.env import TxContext
from contracts_sim.events import Event, make_event
from contracts_sim.exceptions import (
    InsufficientStakeError,
    InvariantViolation,
    NothingToWithdrawError,
    StakeReservedError,
    TooManyUnbondingEntriesError,
)
from contracts_sim.params import Params
from contracts_sim.records import JobStatus, UnbondingEntry
from contracts_sim.state import LedgerState, decrease_balance
from contracts_sim.transactions import StakeBody, UnstakeBody, WithdrawBody
from protocol.types import Address, Amount, Height


def reserved_stake(state: LedgerState, address: Address, except_job: str | None = None) -> Amount:
    """The free stake ``address``'s bids reserve: the sum of ``min_stake`` over the open jobs
    (other than ``except_job``) that hold a bid by it.

    Without it a bid would cost nothing: sybils could outbid and evict an honest bid, then
    unstake before ``close_bidding`` so that no eligible bid is left and the job expires, and
    one stake could back bids on every open job at once. A reservation ends when the bid is
    evicted or the job leaves ``open`` (assigned: the winner's ``min_stake`` becomes locked;
    expired or cancelled: released). Computed from the jobs, so it can never drift from them.
    """
    return Amount(
        sum(
            job.min_stake
            for job in state.jobs()
            if job.status == JobStatus.OPEN
            and job.job_id != except_job
            and any(bid.solver == address for bid in job.bids)
        )
    )


# --- the stake mutators ---------------------------------------------------------------------


def _require(holds: bool, mutator: str, address: Address, amount: Amount) -> None:
    """The caller checked the stake was there: a shortfall is a bug in the rules."""
    if not holds:
        raise InvariantViolation(f"{mutator}: {address} has less than {amount} to move")


def bond_stake(state: LedgerState, address: Address, amount: Amount) -> None:
    """Balance -> free stake (``InsufficientBalanceError`` if the balance is short)."""
    decrease_balance(state, address, amount)
    account = state.get_account(address)
    state.set_account(address, replace(account, bonded=Amount(account.bonded + amount)))


def unbond_stake(state: LedgerState, address: Address, amount: Amount, release: Height) -> None:
    """Free stake -> an unbonding entry withdrawable from ``release`` (the caller checks that
    ``amount`` is free and not reserved)."""
    account = state.get_account(address)
    _require(account.bonded >= amount, "unbond_stake", address, amount)
    state.set_account(
        address,
        replace(
            account,
            bonded=Amount(account.bonded - amount),
            unbonding=(*account.unbonding, UnbondingEntry(amount, release)),
        ),
    )


def withdraw_unbonded(state: LedgerState, address: Address, height: Height) -> Amount:
    """Every unbonding entry matured at ``height`` -> the balance; returns the amount."""
    account = state.get_account(address)
    matured = sum(e.amount for e in account.unbonding if e.release_height <= height)
    pending = tuple(e for e in account.unbonding if e.release_height > height)
    state.set_account(
        address,
        replace(account, balance=Amount(account.balance + matured), unbonding=pending),
    )
    return Amount(matured)


def lock_stake(state: LedgerState, address: Address, amount: Amount) -> None:
    """Free stake -> locked: it backs an assigned job until settlement or a slash."""
    account = state.get_account(address)
    _require(account.bonded >= amount, "lock_stake", address, amount)
    state.set_account(
        address,
        replace(
            account,
            bonded=Amount(account.bonded - amount),
            locked=Amount(account.locked + amount),
        ),
    )


def release_stake(state: LedgerState, address: Address, amount: Amount) -> None:
    """Locked -> free stake: the job it backed settled (counted in ``jobs_completed``)."""
    account = state.get_account(address)
    _require(account.locked >= amount, "release_stake", address, amount)
    state.set_account(
        address,
        replace(
            account,
            locked=Amount(account.locked - amount),
            bonded=Amount(account.bonded + amount),
            jobs_completed=account.jobs_completed + 1,
        ),
    )


def slash_stake(state: LedgerState, address: Address, amount: Amount) -> None:
    """Take ``amount`` of locked stake (the caller pays it out or burns it): the job it backed
    is slashed (counted in ``jobs_slashed``)."""
    account = state.get_account(address)
    _require(account.locked >= amount, "slash_stake", address, amount)
    state.set_account(
        address,
        replace(
            account,
            locked=Amount(account.locked - amount),
            jobs_slashed=account.jobs_slashed + 1,
        ),
    )


# --- transactions ---------------------------------------------------------------------------


def process_stake(
    state: LedgerState, ctx: TxContext, body: StakeBody, params: Params
) -> list[Event]:
    """Move ``amount`` from the balance to free stake."""
    bond_stake(state, ctx.sender, body.amount)  # raises InsufficientBalanceError
    return [make_event("staked", address=ctx.sender, amount=body.amount)]


def process_unstake(
    state: LedgerState, ctx: TxContext, body: UnstakeBody, params: Params
) -> list[Event]:
    """Start unbonding ``amount`` of free stake; withdrawable after ``unbonding_delay``.

    Stake that the sender's bids on open jobs reserve (``reserved_stake``) cannot leave: a
    bidder that may win must still have the stake to lock when bidding closes.
    """
    account = state.get_account(ctx.sender)
    # Only free stake can leave; locked stake backs an assigned job ...
    if account.bonded < body.amount:
        raise InsufficientStakeError(ctx.sender, body.amount, account.bonded)
    # ... and stake reserved by bids on open jobs stays until those bids are resolved.
    reserved = reserved_stake(state, ctx.sender)
    if account.bonded - reserved < body.amount:
        raise StakeReservedError(ctx.sender, body.amount, account.bonded - reserved, reserved)
    # The unbonding queue is bounded, so an account record stays small.
    if len(account.unbonding) >= params.max_unbonding_entries:
        raise TooManyUnbondingEntriesError(ctx.sender, params.max_unbonding_entries)

    release = Height(ctx.height + params.unbonding_delay)
    unbond_stake(state, ctx.sender, body.amount, release)
    return [make_event("unstaked", address=ctx.sender, amount=body.amount, release_height=release)]


def process_withdraw(
    state: LedgerState, ctx: TxContext, body: WithdrawBody, params: Params
) -> list[Event]:
    """Move every matured unbonding entry to the balance."""
    account = state.get_account(ctx.sender)
    # Something must have matured.
    if not any(e.release_height <= ctx.height for e in account.unbonding):
        next_release = min((e.release_height for e in account.unbonding), default=None)
        raise NothingToWithdrawError(ctx.sender, next_release)

    amount = withdraw_unbonded(state, ctx.sender, ctx.height)
    return [make_event("withdrawn", address=ctx.sender, amount=amount)]
