"""The ledger's accounting invariant, checked after every transaction in tests
(docs/protocol.md, "The accounting invariant").

    Σ balances + Σ stakes (bonded + locked + unbonding) + Σ job escrow + Σ held attest bonds
        + Σ open-dispute bonds + burned  ==  genesis + minted

plus the consistency the invariant relies on: no amount is negative, each account's locked
stake is exactly the stake its active jobs hold, each job's ``open_disputes`` counts its open
disputes, and closed jobs hold no escrow.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from contracts_sim.exceptions import InvariantViolation
from contracts_sim.records import DisputeStatus, JobStatus
from contracts_sim.state import LedgerState
from protocol.types import Address

ACTIVE_JOB_STATUSES = (JobStatus.ASSIGNED, JobStatus.COMMITTED)
ESCROW_STATUSES = (JobStatus.OPEN, *ACTIVE_JOB_STATUSES)


@dataclass(frozen=True)
class SupplyReport:
    balances: int
    stakes: int
    escrow: int
    bonds: int
    burned: int
    genesis: int
    minted: int

    @property
    def held(self) -> int:
        return self.balances + self.stakes + self.escrow + self.bonds + self.burned

    @property
    def issued(self) -> int:
        return self.genesis + self.minted


def compute_supply_report(state: LedgerState) -> SupplyReport:
    supply = state.get_supply()
    balances = stakes = 0
    for _, account in state.accounts():
        balances += account.balance
        stakes += account.total_stake
    escrow = sum(job.escrow + job.held_attest_bonds for job in state.jobs())
    bonds = sum(d.bond for d in state.disputes() if d.status == DisputeStatus.OPEN)
    return SupplyReport(
        balances, stakes, escrow, bonds, supply.burned, supply.genesis, supply.minted
    )


def check_invariant(state: LedgerState) -> SupplyReport:
    """Raise InvariantViolation unless the books balance; return the breakdown."""
    for address, account in state.accounts():
        amounts = [account.balance, account.bonded, account.locked, account.nonce]
        amounts += [e.amount for e in account.unbonding]
        if min(amounts) < 0:
            raise InvariantViolation(f"account {address} has a negative amount: {account}")
    supply = state.get_supply()
    if min(supply.genesis, supply.minted, supply.burned) < 0:
        raise InvariantViolation(f"negative supply counter: {supply}")

    locked: Counter[str] = Counter()
    open_disputes: Counter[str] = Counter()
    for dispute in state.disputes():
        if dispute.status == DisputeStatus.OPEN:
            open_disputes[dispute.job_id] += 1
    for job in state.jobs():
        if job.escrow < 0 or job.locked_stake < 0:
            raise InvariantViolation(f"job {job.job_id} holds a negative amount")
        if job.status not in ESCROW_STATUSES and (job.escrow or job.bonded_attesters):
            raise InvariantViolation(f"closed job {job.job_id} still holds escrow or bonds")
        if job.status in ACTIVE_JOB_STATUSES:
            assert job.solver is not None
            locked[job.solver] += job.locked_stake
        elif job.locked_stake != 0:
            raise InvariantViolation(f"inactive job {job.job_id} still locks stake")
        if job.open_disputes != open_disputes[job.job_id]:
            raise InvariantViolation(
                f"job {job.job_id} counts {job.open_disputes} open disputes, "
                f"has {open_disputes[job.job_id]}"
            )
    holders = set(locked) | {a for a, account in state.accounts() if account.locked}
    for holder in sorted(holders):
        address = Address(holder)
        account = state.get_account(address)
        if account.locked != locked[address]:
            raise InvariantViolation(
                f"{address} has {account.locked} locked, its active jobs hold {locked[address]}"
            )

    report = compute_supply_report(state)
    if report.held != report.issued:
        raise InvariantViolation(f"tokens held {report.held} != issued {report.issued}: {report}")
    return report
