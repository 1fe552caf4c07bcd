"""Jobs: post, bid, close, cancel, commit, attest, settle, training timeout — each rule's errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts_sim.exceptions import (
    AlreadyAttestedError,
    AlreadyChallengedError,
    BidAboveBudgetError,
    BidCapacityTooLowError,
    DeadlineNotReachedError,
    DeadlinePassedError,
    DisputesOpenError,
    InsufficientBalanceError,
    InsufficientStakeError,
    InvalidProofError,
    JobExistsError,
    JobHasBidsError,
    JobNotFoundError,
    LeafCountMismatchError,
    MalformedBodyError,
    NotAuthorizedError,
    ProgressNotIncreasingError,
    SampleSeedNotReadyError,
    StakeReservedError,
    TooManyBidsError,
    TreeTooLargeError,
    UntrainableSpecError,
    WrongJobStatusError,
)
from contracts_sim.jobs import compute_job_id, get_verifier_sample, require_trainable
from contracts_sim.params import TEST, TESTNET
from contracts_sim.records import Job, JobStatus
from contracts_sim.scoring import score_bid
from contracts_sim.staking import reserved_stake
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    AttestBody,
    BidBody,
    CancelJobBody,
    ChallengeBody,
    ClaimTimeoutBody,
    CloseBiddingBody,
    CommitProgressBody,
    SettleBody,
    StakeBody,
    TxBody,
    UnstakeBody,
)
from protocol.datasets import load_dataset
from protocol.merkle import CommitmentTree
from protocol.spec import parse_spec
from protocol.types import Amount, Hash32, Height
from tests.conftest import tiny_spec_dict
from tests.ledger_helpers import (
    JOB_TERMS,
    assign,
    committed_job,
    fake_leaves,
    final_body,
    final_commit,
    funded_harness,
    job,
    job_posting,
    post_job,
    post_job_body,
)

MISSING_JOB = "ab" * 32


def train_deadline(h: LedgerHarness, job_id: str) -> Height:
    deadline = job(h, job_id).train_deadline
    assert deadline is not None  # set when the job is assigned
    return deadline


def challenge_deadline(h: LedgerHarness, job_id: str) -> Height:
    deadline = job(h, job_id).challenge_deadline
    assert deadline is not None  # set by the final commit
    return deadline


@pytest.fixture
def h() -> LedgerHarness:
    return funded_harness()


# --- post_job -------------------------------------------------------------------------------


def test_post_job_escrows_payment_and_fee(h: LedgerHarness) -> None:
    before = h.account("submitter").balance
    nonce = h.account("submitter").nonce
    job_id = post_job(h)
    j = job(h, job_id)
    assert job_id == compute_job_id(parse_spec(tiny_spec_dict()), h.address("submitter"), nonce)
    assert j.status is JobStatus.OPEN and j.escrow == 1_090
    assert j.bid_deadline == h.height + JOB_TERMS["bid_blocks"]
    assert j.num_leaves == 9
    assert h.account("submitter").balance == before - 1_090


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"payment": 0}, "payment"),
        ({"min_stake": TEST.min_solver_stake - 1}, "min_stake"),
        ({"sample_count": 9}, "sample_count"),  # the tiny spec has 8 segments
        ({"bid_blocks": TEST.max_bid_blocks + 1}, "bid_blocks"),
        ({"train_blocks": TEST.max_train_blocks + 1}, "train_blocks"),
    ],
)
def test_post_job_bad_terms(h: LedgerHarness, overrides: dict[str, int], field: str) -> None:
    err = h.expect_error("submitter", job_posting(None, **overrides), error=MalformedBodyError)
    assert err.field == field  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"sample_count": 0}, "sample_count"),
        ({"train_blocks": 0}, "train_blocks"),
        ({"verification_fee": -1}, "verification_fee"),
    ],
)
def test_post_job_out_of_range_terms(
    h: LedgerHarness, overrides: dict[str, int], field: str
) -> None:
    # a hand-made body: values below the reader's range, which no parsed PostJobBody holds
    body = post_job_body(**overrides)
    err = h.expect_error("submitter", "post_job", body, MalformedBodyError)
    assert err.field == field  # type: ignore[attr-defined]


BLOBS_V1_HASH = load_dataset("synthetic-blobs-v1").content_hash_hex


@pytest.mark.parametrize(
    ("spec_overrides", "field"),
    [
        ({"dataset": {"id": "synthetic-blobs-v1", "hash": "00" * 32}}, "spec.dataset"),
        ({"dataset": {"id": "mnist", "hash": BLOBS_V1_HASH}}, "spec.dataset"),
        ({"dataset": {"id": "blobs-f0-c2-n64-s1", "hash": BLOBS_V1_HASH}}, "spec.dataset"),
        ({"dataset": {"id": "blobs-f64-c2-n4096-s1", "hash": BLOBS_V1_HASH}}, "spec.dataset.id"),
        ({"dataset": {"id": "blobs-f4-c2-n64-s" + "9" * 200, "hash": BLOBS_V1_HASH}},
         "spec.dataset"),
        ({"model": {"family": "mlp", "input_dim": 8, "hidden": [16], "classes": 4}},
         "spec.model.input_dim"),
        ({"model": {"family": "mlp", "input_dim": 16, "hidden": [16], "classes": 5}},
         "spec.model.classes"),
        ({"model": {"family": "mlp", "input_dim": 16, "hidden": [300, 300], "classes": 4}},
         "spec.model"),
        ({"steps": 2_048, "checkpoint_interval": 1}, "spec.steps"),
    ],
)  # fmt: skip
def test_post_job_untrainable_spec(
    h: LedgerHarness, spec_overrides: dict[str, Any], field: str
) -> None:
    body = job_posting(tiny_spec_dict(**spec_overrides))
    err = h.expect_error("submitter", body, error=UntrainableSpecError)
    assert err.field == field and err.code == "untrainable_spec"  # type: ignore[attr-defined]


def test_post_job_limits_admit_the_example_and_digits() -> None:
    example = yaml.safe_load(Path("examples/digits-mlp.yaml").read_text(encoding="utf-8"))
    spec = parse_spec(example)
    require_trainable(spec, TEST)
    require_trainable(spec, TESTNET)


def test_post_job_insufficient_balance(h: LedgerHarness) -> None:
    h.expect_error("outsider", job_posting(), error=InsufficientBalanceError)


def test_post_job_id_collision_is_refused(h: LedgerHarness) -> None:
    nonce = h.account("submitter").nonce
    job_id = compute_job_id(parse_spec(tiny_spec_dict()), h.address("submitter"), nonce)
    squatter = Job(
        job_id=job_id, submitter=h.address("outsider"), spec={}, spec_hash=Hash32(b"\x00" * 32),
        payment=Amount(0), verification_fee=Amount(0), min_stake=Amount(0), sample_count=1,
        bid_blocks=1, train_blocks=1, num_leaves=2, posted_height=Height(0),
        bid_deadline=Height(0), status=JobStatus.CANCELLED, escrow=Amount(0),
    )  # fmt: skip
    h.state.set_job(squatter)
    h.expect_error("submitter", job_posting(), error=JobExistsError)


# --- bid ------------------------------------------------------------------------------------


def test_bid_and_rebid_replaces(h: LedgerHarness) -> None:
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(900), 8))
    receipt = h.send("solver", BidBody(job_id, Amount(850), 8))
    assert receipt.event("bid_placed").data["replaced"] is True
    (bid,) = job(h, job_id).bids
    assert (bid.solver, bid.price) == (h.address("solver"), 850)


def test_bid_unknown_job(h: LedgerHarness) -> None:
    h.expect_error("solver", BidBody(MISSING_JOB, Amount(1), 8), error=JobNotFoundError)


def test_bid_after_window(h: LedgerHarness) -> None:
    job_id = post_job(h)
    h.advance_to(job(h, job_id).bid_deadline + 1)
    h.expect_error("solver", BidBody(job_id, Amount(1), 8), error=DeadlinePassedError)


def test_bid_on_assigned_job(h: LedgerHarness) -> None:
    job_id = post_job(h)
    assign(h, job_id)
    err = h.expect_error("solver2", BidBody(job_id, Amount(1), 8), error=WrongJobStatusError)
    assert err.status == "assigned" and err.expected == ("open",)  # type: ignore[attr-defined]


def test_bid_above_payment(h: LedgerHarness) -> None:
    job_id = post_job(h)
    h.expect_error("solver", BidBody(job_id, Amount(1_001), 8), error=BidAboveBudgetError)


def test_bid_capacity_cannot_meet_deadline(h: LedgerHarness) -> None:
    job_id = post_job(h)  # 32 steps in 8 blocks: 4 steps/block needed
    err = h.expect_error("solver", BidBody(job_id, Amount(1), 3), error=BidCapacityTooLowError)
    assert err.required == 4  # type: ignore[attr-defined]


def test_bid_without_stake(h: LedgerHarness) -> None:
    job_id = post_job(h)
    h.expect_error("outsider", BidBody(job_id, Amount(1), 8), error=InsufficientStakeError)


def test_bid_count_is_bounded() -> None:
    h = funded_harness(params=TEST.with_changes(max_bids_per_job=1))
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(900), 8))
    h.send("solver", BidBody(job_id, Amount(800), 8))  # replacing is fine
    h.expect_error("solver2", BidBody(job_id, Amount(900), 8), error=TooManyBidsError)


def test_full_bid_list_a_tie_keeps_the_earlier_bid() -> None:
    h = funded_harness(params=TEST.with_changes(max_bids_per_job=1))
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(800), 8))
    h.advance(1)
    h.expect_error("solver2", BidBody(job_id, Amount(800), 8), error=TooManyBidsError)


def test_full_bid_list_a_better_bid_evicts_the_worst() -> None:
    h = funded_harness(params=TEST.with_changes(max_bids_per_job=1))
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(800), 8))
    receipt = h.send("solver2", BidBody(job_id, Amount(700), 8))
    assert receipt.kinds() == ["bid_placed", "bid_evicted"]
    assert receipt.event("bid_evicted").data == {"job_id": job_id, "solver": h.address("solver")}
    assert [b.solver for b in job(h, job_id).bids] == [h.address("solver2")]


# --- a bid reserves min_stake of the bidder's free stake -------------------------------------


def test_bids_reserve_min_stake_each(h: LedgerHarness) -> None:
    min_stake = JOB_TERMS["min_stake"]  # the solver's 1000 free stake backs five bids
    job_ids = [post_job(h) for _ in range(6)]
    for job_id in job_ids[:5]:
        h.send("solver", BidBody(job_id, Amount(900), 8))
    assert reserved_stake(h.state, h.address("solver")) == 5 * min_stake
    assert reserved_stake(h.state, h.address("solver"), except_job=job_ids[0]) == 4 * min_stake

    bid = BidBody(job_ids[5], Amount(900), 8)
    err = h.expect_error("solver", bid, error=InsufficientStakeError)
    assert (err.needed, err.available, err.reserved) == (min_stake, 0, 5 * min_stake)  # type: ignore[attr-defined]
    # Replacing a bid needs no more stake: its own reservation is not counted twice.
    h.send("solver", BidBody(job_ids[0], Amount(800), 8))
    assert reserved_stake(h.state, h.address("solver")) == 5 * min_stake


def test_an_evicted_bid_releases_its_reservation() -> None:
    h = funded_harness(params=TEST.with_changes(max_bids_per_job=1))
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(800), 8))
    h.send("solver2", BidBody(job_id, Amount(700), 8))  # evicts it
    assert reserved_stake(h.state, h.address("solver")) == 0
    assert reserved_stake(h.state, h.address("solver2")) == JOB_TERMS["min_stake"]
    h.send("solver", UnstakeBody(Amount(1_000)))


def test_close_bidding_turns_the_winners_reservation_into_locked_stake(h: LedgerHarness) -> None:
    first, second = post_job(h), post_job(h)
    h.send("solver", BidBody(first, Amount(800), 8))
    h.send("solver", BidBody(second, Amount(800), 8))
    h.advance_to(job(h, first).bid_deadline + 1)
    h.send("outsider", CloseBiddingBody(first))
    account = h.account("solver")
    assert (account.bonded, account.locked) == (800, 200)
    # The other bid's reservation is still covered, and only the rest of the free stake leaves.
    assert reserved_stake(h.state, h.address("solver")) == 200
    h.expect_error("solver", UnstakeBody(Amount(601)), error=StakeReservedError)
    h.send("solver", UnstakeBody(Amount(600)))
    h.send("outsider", CloseBiddingBody(second))
    assert job(h, second).solver == h.address("solver")
    assert h.account("solver").locked == 400


def test_only_open_jobs_reserve_stake(h: LedgerHarness) -> None:
    """Assigned, expired or cancelled: the job's bids reserve nothing any more."""
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(800), 8))
    state = h.state.copy()
    for status in JobStatus:
        state.set_job(replace(job(h, job_id), status=status))
        expected = JOB_TERMS["min_stake"] if status is JobStatus.OPEN else 0
        assert reserved_stake(state, h.address("solver")) == expected


# --- close_bidding and scoring --------------------------------------------------------------


def test_close_bidding_assigns_locks_stake_and_refunds_change(h: LedgerHarness) -> None:
    job_id = post_job(h)
    before = h.account("submitter").balance
    receipt = assign(h, job_id, price=800)
    j = job(h, job_id)
    assert j.status is JobStatus.ASSIGNED and j.solver == h.address("solver")
    assert j.price == 800 and j.escrow == 800 + 90 and j.locked_stake == 200
    assert j.train_deadline == h.height + JOB_TERMS["train_blocks"]
    assert h.account("submitter").balance == before + 200
    assert (h.account("solver").bonded, h.account("solver").locked) == (800, 200)
    assert receipt.event("job_assigned").data["score"] == j.score > 0


def test_close_bidding_before_window_ends(h: LedgerHarness) -> None:
    job_id = post_job(h)
    h.advance_to(job(h, job_id).bid_deadline)
    h.expect_error("outsider", CloseBiddingBody(job_id), error=DeadlineNotReachedError)


def test_close_bidding_twice(h: LedgerHarness) -> None:
    job_id = post_job(h)
    assign(h, job_id)
    h.expect_error("outsider", CloseBiddingBody(job_id), error=WrongJobStatusError)


def test_close_bidding_unknown_job(h: LedgerHarness) -> None:
    h.expect_error("outsider", CloseBiddingBody(MISSING_JOB), error=JobNotFoundError)


def test_close_bidding_without_bids_expires_and_refunds(h: LedgerHarness) -> None:
    before = h.account("submitter").balance
    job_id = post_job(h)
    h.advance(3)
    receipt = h.send("outsider", CloseBiddingBody(job_id))
    assert receipt.kinds() == ["job_expired", "job_refunded"]
    assert job(h, job_id).status is JobStatus.EXPIRED
    assert h.account("submitter").balance == before


def test_a_bidder_cannot_unstake_its_bid_away_before_close(h: LedgerHarness) -> None:
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(100), 8))
    h.expect_error("solver", UnstakeBody(Amount(900)), error=StakeReservedError)
    h.send("solver", UnstakeBody(Amount(800)))  # the unreserved rest may leave
    h.advance(3)
    h.send("outsider", CloseBiddingBody(job_id))
    assert job(h, job_id).status is JobStatus.ASSIGNED


def test_assignment_is_not_lowest_price_wins(h: LedgerHarness) -> None:
    h.send("solver2", StakeBody(Amount(5_000)))  # 6000 staked vs 1000
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(880), 4))
    h.send("solver2", BidBody(job_id, Amount(900), 8))
    h.advance(3)
    receipt = h.send("outsider", CloseBiddingBody(job_id))
    scores = receipt.event("job_assigned").data["scores"]
    assert job(h, job_id).solver == h.address("solver2")
    assert scores[h.address("solver2")] > scores[h.address("solver")]


def test_score_bid_components() -> None:
    base = dict(price=500, payment=1_000, stake=200, min_stake=200, capacity=4, steps=32,
                train_blocks=8, completed=0, slashed=0)  # fmt: skip

    def scored(**changes: int) -> int:
        return score_bid(**{**base, **changes}, params=TEST)

    score = scored()
    assert 0 < score < 10_000
    assert scored(price=400) > score
    assert scored(stake=800) > score
    assert scored(stake=800) == scored(stake=8_000)
    assert scored(capacity=8) > score
    assert scored(completed=5) > score
    assert scored(slashed=1) < score
    assert scored(price=0, stake=10**9, capacity=10**6, completed=10**6) >= 9_990


def test_ties_go_to_lower_price_then_earlier_bid(h: LedgerHarness) -> None:
    job_id = post_job(h)
    h.send("solver2", BidBody(job_id, Amount(800), 8))
    h.advance(1)
    h.send("solver", BidBody(job_id, Amount(800), 8))
    h.advance(2)
    h.send("outsider", CloseBiddingBody(job_id))
    assert job(h, job_id).solver == h.address("solver2")


# --- cancel_job -----------------------------------------------------------------------------


def test_cancel_open_job_refunds(h: LedgerHarness) -> None:
    before = h.account("submitter").balance
    job_id = post_job(h)
    h.send("submitter", CancelJobBody(job_id))
    assert job(h, job_id).status is JobStatus.CANCELLED and job(h, job_id).escrow == 0
    assert h.account("submitter").balance == before


def test_cancel_by_someone_else(h: LedgerHarness) -> None:
    job_id = post_job(h)
    err = h.expect_error("outsider", CancelJobBody(job_id), error=NotAuthorizedError)
    assert err.http_status == 403


def test_cancel_with_bids(h: LedgerHarness) -> None:
    job_id = post_job(h)
    h.send("solver", BidBody(job_id, Amount(1), 8))
    h.expect_error("submitter", CancelJobBody(job_id), error=JobHasBidsError)


def test_cancel_assigned_job(h: LedgerHarness) -> None:
    job_id = post_job(h)
    assign(h, job_id)
    h.expect_error("submitter", CancelJobBody(job_id), error=WrongJobStatusError)


# --- commit_progress ------------------------------------------------------------------------


def _progress(job_id: str, tree: CommitmentTree, size: int, old: int = 0) -> CommitProgressBody:
    proof = tree.consistency_proof(old, size) if old else None
    return CommitProgressBody(job_id, size, Hash32(tree.root(size)), proof)


@pytest.fixture
def training(h: LedgerHarness) -> tuple[LedgerHarness, str, CommitmentTree]:
    job_id = post_job(h)
    assign(h, job_id)
    return h, job_id, CommitmentTree(fake_leaves())


def test_commit_progress_append_only(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    h.send("solver", _progress(job_id, tree, 3))
    h.send("solver", _progress(job_id, tree, 6, old=3))
    j = job(h, job_id)
    assert (j.progress_size, j.progress_root) == (6, tree.root(6))


def test_commit_progress_rewriting_history_is_caught(
    training: tuple[LedgerHarness, str, CommitmentTree],
) -> None:
    h, job_id, tree = training
    h.send("solver", _progress(job_id, tree, 3))
    rewritten = CommitmentTree([*fake_leaves()[:2], *fake_leaves(salt="other")[2:]])
    err = h.expect_error("solver", _progress(job_id, rewritten, 6, old=3), error=InvalidProofError)
    assert err.what == "consistency_proof"  # type: ignore[attr-defined]


def test_commit_progress_requires_proof_after_first(
    training: tuple[LedgerHarness, str, CommitmentTree],
) -> None:
    h, job_id, tree = training
    h.send("solver", _progress(job_id, tree, 3))
    h.expect_error("solver", _progress(job_id, tree, 6), error=InvalidProofError)


def test_commit_progress_must_grow(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    h.send("solver", _progress(job_id, tree, 3))
    h.expect_error("solver", _progress(job_id, tree, 3), error=ProgressNotIncreasingError)


def test_commit_progress_beyond_leaves(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, _ = training
    big = CommitmentTree(fake_leaves(10))
    h.expect_error("solver", _progress(job_id, big, 10), error=TreeTooLargeError)


def test_commit_progress_by_other(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    h.expect_error("solver2", _progress(job_id, tree, 3), error=NotAuthorizedError)


def test_commit_progress_after_deadline(
    training: tuple[LedgerHarness, str, CommitmentTree],
) -> None:
    h, job_id, tree = training
    h.advance_to(train_deadline(h, job_id) + 1)
    h.expect_error("solver", _progress(job_id, tree, 3), error=DeadlinePassedError)


def test_commit_progress_on_open_job(h: LedgerHarness) -> None:
    job_id = post_job(h)
    tree = CommitmentTree(fake_leaves())
    h.expect_error("solver", _progress(job_id, tree, 3), error=WrongJobStatusError)


# --- commit_final ---------------------------------------------------------------------------


def test_commit_final_after_progress(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    h.send("solver", _progress(job_id, tree, 5))
    receipt = h.send("solver", final_commit(job_id, tree, progress_size=5))
    j = job(h, job_id)
    assert j.status is JobStatus.COMMITTED and j.final_root == tree.root()
    assert j.final_height == h.height
    assert j.challenge_deadline == h.height + TEST.challenge_window
    assert receipt.event("final_committed").data["sample_seed_height"] == h.height + 1


def test_commit_final_without_progress(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    h.send("solver", final_commit(job_id, tree))
    assert job(h, job_id).status is JobStatus.COMMITTED


def test_commit_final_when_progress_was_complete(
    training: tuple[LedgerHarness, str, CommitmentTree],
) -> None:
    h, job_id, tree = training
    h.send("solver", _progress(job_id, tree, 9))
    other = CommitmentTree(fake_leaves(salt="other"))
    h.expect_error("solver", final_commit(job_id, other), error=InvalidProofError)
    h.send("solver", final_commit(job_id, tree))


def test_commit_final_wrong_leaf_count(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, _ = training
    short = CommitmentTree(fake_leaves(8))
    err = h.expect_error("solver", final_commit(job_id, short), error=LeafCountMismatchError)
    assert (err.expected, err.got) == (9, 8)  # type: ignore[attr-defined]


def test_commit_final_inconsistent_with_progress(
    training: tuple[LedgerHarness, str, CommitmentTree],
) -> None:
    h, job_id, tree = training
    h.send("solver", _progress(job_id, tree, 5))
    other = CommitmentTree(fake_leaves(salt="other"))
    h.expect_error("solver", final_commit(job_id, other, progress_size=5), error=InvalidProofError)
    h.expect_error("solver", final_commit(job_id, tree), error=InvalidProofError)


def test_commit_final_bad_final_proof(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    not_last = Hash32(tree.entry(3))  # not the last leaf
    body = replace(final_commit(job_id, tree), final_state_hash=not_last)
    err = h.expect_error("solver", body, error=InvalidProofError)
    assert err.what == "final_proof"  # type: ignore[attr-defined]


def test_commit_final_requires_final_proof(
    training: tuple[LedgerHarness, str, CommitmentTree],
) -> None:
    h, job_id, tree = training
    body = final_body(job_id, tree)
    del body["final_proof"]  # a hand-made body: a required field missing
    err = h.expect_error("solver", "commit_final", body, MalformedBodyError)
    assert err.field == "final_proof"  # type: ignore[attr-defined]


def test_commit_final_by_other(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    h.expect_error("outsider", final_commit(job_id, tree), error=NotAuthorizedError)


def test_commit_final_after_deadline(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    h.advance_to(train_deadline(h, job_id) + 1)
    h.expect_error("solver", final_commit(job_id, tree), error=DeadlinePassedError)


def test_commit_final_twice(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    h.send("solver", final_commit(job_id, tree))
    h.expect_error("solver", final_commit(job_id, tree), error=WrongJobStatusError)


# --- the training deadline ------------------------------------------------------------------


def test_missed_training_deadline_slashes_solver(
    training: tuple[LedgerHarness, str, CommitmentTree],
) -> None:
    h, job_id, _ = training
    submitter_before = h.account("submitter").balance
    burned_before = h.state.get_supply().burned
    h.advance_to(train_deadline(h, job_id) + 1)
    receipt = h.send("outsider", ClaimTimeoutBody(job_id, None))
    slashed = receipt.event("slashed").data
    assert slashed["amount"] == 200 and slashed["reward"] == 100 and slashed["burned"] == 100
    assert job(h, job_id).status is JobStatus.SLASHED
    assert h.account("solver").locked == 0 and h.account("solver").jobs_slashed == 1
    assert h.account("submitter").balance == submitter_before + 890 + 100
    assert h.state.get_supply().burned == burned_before + 100


def test_training_timeout_too_early(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, _ = training
    h.advance_to(train_deadline(h, job_id))
    h.expect_error("outsider", ClaimTimeoutBody(job_id, None), error=DeadlineNotReachedError)


def test_training_timeout_after_commit(training: tuple[LedgerHarness, str, CommitmentTree]) -> None:
    h, job_id, tree = training
    h.send("solver", final_commit(job_id, tree))
    h.advance(20)
    h.expect_error("outsider", ClaimTimeoutBody(job_id, None), error=WrongJobStatusError)


# --- attest ---------------------------------------------------------------------------------


def test_attest_records_sample(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance(2)  # block final+1 exists once block final+2 begins
    receipt = h.send("v1", AttestBody(job_id))
    sample = receipt.event("attested").data["sample"]
    assert sample == get_verifier_sample(h.state, job_id, h.address("v1"))
    assert len(sample) == JOB_TERMS["sample_count"] and sample == sorted(set(sample))
    assert job(h, job_id).attesters == (h.address("v1"),)


def test_attest_before_seed_block(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance(1)
    err = h.expect_error("v1", AttestBody(job_id), error=SampleSeedNotReadyError)
    final_height = job(h, job_id).final_height
    assert final_height is not None  # set by the final commit
    assert err.seed_height == final_height + 1  # type: ignore[attr-defined]


def test_attest_after_window(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance_to(challenge_deadline(h, job_id) + 1)
    h.expect_error("v1", AttestBody(job_id), error=DeadlinePassedError)


def test_attest_by_solver(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance(2)
    h.expect_error("solver", AttestBody(job_id), error=NotAuthorizedError)


def test_attest_without_verifier_stake(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance(2)
    h.expect_error("outsider", AttestBody(job_id), error=InsufficientStakeError)


def test_attest_twice(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance(2)
    h.send("v1", AttestBody(job_id))
    h.expect_error("v1", AttestBody(job_id), error=AlreadyAttestedError)
    h.expect_error("v1", ChallengeBody(job_id, None), error=AlreadyAttestedError)


def test_attest_after_challenging(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance(2)
    h.send("v1", ChallengeBody(job_id, None))
    h.expect_error("v1", AttestBody(job_id), error=AlreadyChallengedError)


def test_attest_uncommitted_job(h: LedgerHarness) -> None:
    job_id = post_job(h)
    h.expect_error("v1", AttestBody(job_id), error=WrongJobStatusError)


# --- settle ---------------------------------------------------------------------------------


def test_settle_pays_solver_and_splits_fee(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance(2)
    for v in ("v1", "v2"):
        h.send(v, AttestBody(job_id))
    before = {n: h.account(n).balance for n in ("solver", "submitter", "v1", "v2")}
    h.advance_to(challenge_deadline(h, job_id) + 1)
    receipt = h.send("outsider", SettleBody(job_id))
    data = receipt.event("job_settled").data
    assert (data["fee_share"], data["fee_refund"]) == (45, 0)
    assert h.account("solver").balance == before["solver"] + 800
    assert h.account("v1").balance == before["v1"] + 45
    assert h.account("submitter").balance == before["submitter"]
    solver = h.account("solver")
    assert (solver.locked, solver.bonded, solver.jobs_completed) == (0, 1_000, 1)
    assert job(h, job_id).status is JobStatus.SETTLED and job(h, job_id).escrow == 0


def test_settle_fee_remainder_and_no_attesters(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h, verification_fee=91)
    h.advance(2)
    for v in ("v1", "v2", "v3"):
        h.send(v, AttestBody(job_id))
    h.advance(10)
    data = h.send("outsider", SettleBody(job_id)).event("job_settled").data
    assert (data["fee_share"], data["fee_refund"]) == (30, 1)

    job_id, _ = committed_job(h)
    h.advance(10)
    data = h.send("outsider", SettleBody(job_id)).event("job_settled").data
    assert (data["fee_share"], data["fee_refund"]) == (0, 90)


def test_settle_during_window(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance_to(challenge_deadline(h, job_id))
    h.expect_error("outsider", SettleBody(job_id), error=DeadlineNotReachedError)


def test_settle_with_open_dispute(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.send("v1", ChallengeBody(job_id, None))
    h.state.set_dispute(
        replace(h.state.get_dispute(job(h, job_id).disputes[0]), deadline=Height(10**6))
    )
    h.state.clear_dirty()
    h.advance(10)
    h.expect_error("outsider", SettleBody(job_id), error=DisputesOpenError)


def test_settle_twice(h: LedgerHarness) -> None:
    job_id, _ = committed_job(h)
    h.advance(10)
    h.send("outsider", SettleBody(job_id))
    h.expect_error("outsider", SettleBody(job_id), error=WrongJobStatusError)


def test_settle_unknown_job(h: LedgerHarness) -> None:
    h.expect_error("outsider", SettleBody(MISSING_JOB), error=JobNotFoundError)


@pytest.mark.parametrize(
    "body",
    [
        BidBody(MISSING_JOB, Amount(1), 8),
        CloseBiddingBody(MISSING_JOB),
        CancelJobBody(MISSING_JOB),
        CommitProgressBody(MISSING_JOB, 1, Hash32(b"\x00" * 32), None),
        final_commit(MISSING_JOB, CommitmentTree(fake_leaves())),
        AttestBody(MISSING_JOB),
        ChallengeBody(MISSING_JOB, None),
        SettleBody(MISSING_JOB),
        ClaimTimeoutBody(MISSING_JOB, None),
    ],
    ids=lambda body: body.kind,
)
def test_every_job_kind_refuses_an_unknown_job(h: LedgerHarness, body: TxBody) -> None:
    err = h.expect_error("v1", body, error=JobNotFoundError)
    assert err.http_status == 404 and err.job_id == MISSING_JOB  # type: ignore[attr-defined]
