"""Random sequences of valid and invalid transactions never break the books.

A hypothesis state machine drives four accounts through transfers, the faucet, staking, jobs,
bids, commitments, attestations, challenges, timeouts and settlement, with random (often
invalid) amounts and random block advances. After every step: the supply invariant holds, no
amount is negative, and a rejected transaction changed nothing (same state root, same JSON).
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from contracts_sim.exceptions import LedgerError
from contracts_sim.invariants import check_invariant
from contracts_sim.records import DisputeStatus, JobStatus
from contracts_sim.staking import reserved_stake
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import StakeBody, TransferBody
from protocol.merkle import CommitmentTree, NodeRef, children
from protocol.types import Amount
from tests.ledger_helpers import fake_leaves, final_body, post_job_body

NAMES = ("a", "b", "c", "d")
names = st.sampled_from(NAMES)
amounts = st.integers(min_value=0, max_value=3_000)
indices = st.integers(min_value=0, max_value=20)
MISSING = "ee" * 32
JOB_KINDS = ("bid", "close_bidding", "cancel_job", "attest", "challenge", "settle")


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.h = LedgerHarness({"a": 50_000, "b": 20_000, "c": 1_000, "d": 0})
        for name, amount in (("a", 1_000), ("b", 500), ("c", 200)):
            self.h.send(name, StakeBody(Amount(amount)))
        self.jobs: list[str] = []
        self.disputes: list[str] = []
        self.accepted = 0
        self.rejected = 0

    # --- helpers ----------------------------------------------------------------------------

    def attempt(self, name: str, kind: str, body: dict[str, Any]) -> bool:
        before_json, before_root = self.h.state.to_json(), self.h.state.state_root()
        try:
            receipt = self.h.send(name, kind, body)
        except LedgerError:
            assert self.h.state.state_root() == before_root
            assert self.h.state.to_json() == before_json
            self.rejected += 1
            return False
        self.accepted += 1
        for event in receipt.events:
            if event.kind == "job_posted":
                self.jobs.append(str(event.data["job_id"]))
            if event.kind == "challenged":
                self.disputes.append(str(event.data["dispute_id"]))
        return True

    def pick(self, items: list[str], index: int) -> str:
        return items[index % len(items)] if items else MISSING

    # --- tokens and staking -----------------------------------------------------------------

    @rule(sender=names, to=names, amount=amounts)
    def transfer(self, sender: str, to: str, amount: int) -> None:
        self.attempt(sender, "transfer", {"to": self.h.address(to), "amount": amount})

    @rule(sender=names, amount=st.integers(min_value=0, max_value=2_000_000))
    def faucet(self, sender: str, amount: int) -> None:
        self.attempt(sender, "faucet", {"amount": amount})

    @rule(sender=names, amount=amounts)
    def stake(self, sender: str, amount: int) -> None:
        self.attempt(sender, "stake", {"amount": amount})

    @rule(sender=names, amount=amounts)
    def unstake(self, sender: str, amount: int) -> None:
        self.attempt(sender, "unstake", {"amount": amount})

    @rule(sender=names)
    def withdraw(self, sender: str) -> None:
        self.attempt(sender, "withdraw", {})

    @rule(blocks=st.integers(min_value=1, max_value=4))
    def advance(self, blocks: int) -> None:
        self.h.advance(blocks)

    @rule(sender=names, delta=st.sampled_from([-1, 1, 2]))
    def wrong_nonce(self, sender: str, delta: int) -> None:
        nonce = self.h.account(sender).nonce + delta
        if nonce < 0:
            return
        tx = self.h.sign(sender, TransferBody(self.h.address("a"), Amount(1)), nonce=nonce)
        self.h.expect_rejected(tx)

    # --- jobs -------------------------------------------------------------------------------

    @rule(
        sender=names,
        payment=st.integers(min_value=0, max_value=2_000),
        fee=st.integers(min_value=0, max_value=200),
        min_stake=st.integers(min_value=50, max_value=400),
        bid_blocks=st.integers(min_value=1, max_value=3),
    )
    def post_job(
        self, sender: str, payment: int, fee: int, min_stake: int, bid_blocks: int
    ) -> None:
        body = post_job_body(payment=payment, verification_fee=fee, min_stake=min_stake,
                             bid_blocks=bid_blocks, train_blocks=8, sample_count=2)  # fmt: skip
        self.attempt(sender, "post_job", body)

    @rule(sender=names, job=indices, price=amounts,
          capacity=st.integers(min_value=1, max_value=8))  # fmt: skip
    def bid(self, sender: str, job: int, price: int, capacity: int) -> None:
        body = {"job_id": self.pick(self.jobs, job), "price": price, "capacity": capacity}
        self.attempt(sender, "bid", body)

    @rule(sender=names, percent=st.integers(min_value=0, max_value=110))
    def bid_on_latest(self, sender: str, percent: int) -> None:
        """Steers the machine into assignments: a plausible bid on the newest job."""
        if not self.jobs:
            return
        job = self.h.state.get_job(self.jobs[-1])
        body = {"job_id": job.job_id, "price": job.payment * percent // 100, "capacity": 8}
        self.attempt(sender, "bid", body)

    @rule(sender=names, choice=st.integers(min_value=0, max_value=2))
    def push_job_forward(self, sender: str, choice: int) -> None:
        """Steers the machine through whole lifecycles: the natural next step of a job."""
        # The most advanced live job (the oldest among equals), so lifecycles finish.
        rank = {JobStatus.OPEN: 1, JobStatus.ASSIGNED: 2, JobStatus.COMMITTED: 3}
        live = [self.h.state.get_job(job_id) for job_id in self.jobs]
        live = [j for j in live if j.status in rank]
        if not live:
            return
        j = max(live, key=lambda j: (rank[j.status], -j.posted_height))
        body = {"job_id": j.job_id}
        if j.status is JobStatus.OPEN and not j.bids and self.h.height <= j.bid_deadline:
            bid = {**body, "price": j.payment * 4 // 5, "capacity": 8}
            self.attempt(sender, "bid", bid)
        elif j.status is JobStatus.OPEN:
            self.h.advance_to(max(self.h.height, j.bid_deadline + 1))
            self.attempt(sender, "close_bidding", body)
        elif j.status is JobStatus.ASSIGNED and choice:
            solver = self._solver_name(j.job_id)
            assert solver is not None
            tree = CommitmentTree(fake_leaves(salt=j.job_id))
            self.attempt(solver, "commit_final", final_body(j.job_id, tree))
        elif j.status is JobStatus.ASSIGNED:
            assert j.train_deadline is not None
            self.h.advance_to(max(self.h.height, j.train_deadline + 1))
            self.attempt(sender, "claim_timeout", body)
        elif j.status is JobStatus.COMMITTED:
            assert j.final_height is not None and j.challenge_deadline is not None
            if choice == 2:
                self.h.advance_to(max(self.h.height, j.challenge_deadline + 1))
                self.attempt(sender, "settle", body)
            else:
                self.h.advance_to(max(self.h.height, j.final_height + 2))
                self.attempt(sender, "attest" if choice == 0 else "challenge", body)

    @rule(
        submitter=names,
        solver=names,
        verifier=names,
        outcome=st.sampled_from(
            ["settle", "attest", "train_timeout", "solver_silent", "challenger_silent"]
        ),
        percent=st.integers(min_value=0, max_value=100),
    )
    def whole_job(
        self, submitter: str, solver: str, verifier: str, outcome: str, percent: int
    ) -> None:
        """A whole lifecycle in one step (any transaction of it may be refused)."""
        if not self.attempt(submitter, "post_job", post_job_body(bid_blocks=1)):
            return
        job_id = self.jobs[-1]
        body = {"job_id": job_id}
        self.attempt(solver, "bid", {**body, "price": 10 * percent, "capacity": 8})
        self.h.advance(2)
        if not self.attempt(verifier, "close_bidding", body):
            return
        if self.h.state.get_job(job_id).status is not JobStatus.ASSIGNED:
            return
        if outcome == "train_timeout":
            self.h.advance(9)
            self.attempt(verifier, "claim_timeout", body)
            return
        tree = CommitmentTree(fake_leaves(salt=job_id))
        self.attempt(solver, "commit_final", final_body(job_id, tree))
        self.h.advance(2)
        if outcome == "attest":
            self.attempt(verifier, "attest", body)
        elif outcome in ("solver_silent", "challenger_silent") and self.attempt(
            verifier, "challenge", body
        ):
            dispute_id = self.disputes[-1]
            if outcome == "challenger_silent":
                self.descend(len(self.disputes) - 1, "left")
            self.h.advance(3)
            self.attempt(submitter, "claim_timeout", {"dispute_id": dispute_id})
        self.h.advance(5)
        self.attempt(submitter, "settle", body)

    @rule(sender=names, kind=st.sampled_from(JOB_KINDS))
    def unknown_job(self, sender: str, kind: str) -> None:
        body: dict[str, Any] = {"job_id": MISSING}
        if kind == "bid":
            body.update(price=1, capacity=8)
        self.attempt(sender, kind, body)

    @rule(sender=names, job=indices)
    def close_bidding(self, sender: str, job: int) -> None:
        self.attempt(sender, "close_bidding", {"job_id": self.pick(self.jobs, job)})

    @rule(sender=names, job=indices)
    def cancel_job(self, sender: str, job: int) -> None:
        self.attempt(sender, "cancel_job", {"job_id": self.pick(self.jobs, job)})

    @rule(job=indices, honest=st.booleans(), sender=names)
    def commit_final(self, job: int, honest: bool, sender: str) -> None:
        job_id = self.pick(self.jobs, job)
        solver = self._solver_name(job_id) if honest else sender
        if solver is None:
            return
        tree = CommitmentTree(fake_leaves(salt=job_id))
        self.attempt(solver, "commit_final", final_body(job_id, tree))

    @rule(sender=names, job=indices)
    def attest(self, sender: str, job: int) -> None:
        self.attempt(sender, "attest", {"job_id": self.pick(self.jobs, job)})

    @rule(sender=names, job=indices)
    def challenge(self, sender: str, job: int) -> None:
        self.attempt(sender, "challenge", {"job_id": self.pick(self.jobs, job)})

    @rule(sender=names, job=indices)
    def settle(self, sender: str, job: int) -> None:
        self.attempt(sender, "settle", {"job_id": self.pick(self.jobs, job)})

    @rule(sender=names, job=indices)
    def claim_training_timeout(self, sender: str, job: int) -> None:
        self.attempt(sender, "claim_timeout", {"job_id": self.pick(self.jobs, job)})

    # --- disputes (no VM: the descent and timeouts) -----------------------------------------

    @rule(dispute=indices, side=st.sampled_from(["left", "right"]))
    def descend(self, dispute: int, side: str) -> None:
        dispute_id = self.pick(self.disputes, dispute)
        if dispute_id == MISSING:
            return
        d = self.h.state.get_dispute(dispute_id)
        if d.status is not DisputeStatus.OPEN or d.node_lo is None or d.node_hi is None:
            return
        if d.phase.value == "reveal_children":
            tree = CommitmentTree(fake_leaves(salt=d.job_id))
            left, right = children(NodeRef(d.node_lo, d.node_hi))
            body = {"dispute_id": dispute_id, "left": tree.node_hash(left).hex(),
                    "right": tree.node_hash(right).hex()}  # fmt: skip
            self.attempt(self._name_of(d.solver), "reveal_children", body)
        else:
            body = {"dispute_id": dispute_id, "side": side}
            self.attempt(self._name_of(d.challenger), "choose_child", body)

    @rule(sender=names, dispute=indices)
    def claim_move_timeout(self, sender: str, dispute: int) -> None:
        self.attempt(sender, "claim_timeout", {"dispute_id": self.pick(self.disputes, dispute)})

    def _name_of(self, address: str) -> str:
        return next(n for n in NAMES if self.h.address(n) == address)

    def _solver_name(self, job_id: str) -> str | None:
        if job_id == MISSING:
            return None
        job = self.h.state.get_job(job_id)
        if job.status is not JobStatus.ASSIGNED or job.solver is None:
            return None
        return self._name_of(job.solver)

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        check_invariant(self.h.state)  # also: no negative amounts, locked stake matches jobs

    @invariant()
    def balances_are_non_negative(self) -> None:
        for _, account in self.h.state.accounts():
            assert account.balance >= 0 and account.bonded >= 0 and account.locked >= 0

    @invariant()
    def free_stake_covers_every_bids_reservation(self) -> None:
        """So every bid on an open job can still lock its min_stake when bidding closes."""
        for address, account in self.h.state.accounts():
            assert account.bonded >= reserved_stake(self.h.state, address)


LedgerMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase
