"""Shared set-ups for the ledger tests: a funded harness, a job in each status, fake leaves.

Transactions are typed bodies (``contracts_sim.transactions``): ``job_posting`` and
``final_commit`` build them; ``post_job_body`` and ``final_body`` are their JSON, for the tests
that malform a body on purpose.
"""

from __future__ import annotations

from typing import Any

from contracts_sim.records import Job
from contracts_sim.referee import initial_state_hash
from contracts_sim.testing import LedgerHarness, Receipt
from contracts_sim.transactions import (
    BidBody,
    CloseBiddingBody,
    CommitFinalBody,
    PostJobBody,
    StakeBody,
)
from protocol.hashing import sha256
from protocol.merkle import CommitmentTree
from protocol.spec import JobSpec, parse_spec
from protocol.types import Amount, Hash32
from tests.conftest import tiny_spec_dict

JOB_TERMS: dict[str, Any] = {
    "payment": 1_000,
    "verification_fee": 90,
    "min_stake": 200,
    "sample_count": 2,
    "bid_blocks": 2,
    "train_blocks": 8,
}
NUM_LEAVES = 9  # tiny spec: 32 steps, C = 4


def tiny_spec() -> JobSpec:
    return parse_spec(tiny_spec_dict())


def funded_harness(**kwargs: Any) -> LedgerHarness:
    """Submitter, two solvers, three verifiers (staked) and an outsider."""
    h = LedgerHarness(
        {
            "submitter": 100_000,
            "solver": 10_000,
            "solver2": 10_000,
            "v1": 1_000,
            "v2": 1_000,
            "v3": 1_000,
            "outsider": 1_000,
        },
        **kwargs,
    )
    h.send("solver", StakeBody(Amount(1_000)))
    h.send("solver2", StakeBody(Amount(1_000)))
    for v in ("v1", "v2", "v3"):
        h.send(v, StakeBody(Amount(100)))
    return h


def job_posting(spec: JobSpec | dict[str, Any] | None = None, **terms: int) -> PostJobBody:
    """A ``post_job`` of the tiny spec (or ``spec``, parsed if a dict) on ``JOB_TERMS``."""
    if spec is None:
        spec = tiny_spec()
    elif isinstance(spec, dict):
        spec = parse_spec(spec)
    t = {**JOB_TERMS, **terms}
    return PostJobBody(
        spec=spec,
        payment=Amount(t["payment"]),
        verification_fee=Amount(t["verification_fee"]),
        min_stake=Amount(t["min_stake"]),
        sample_count=t["sample_count"],
        bid_blocks=t["bid_blocks"],
        train_blocks=t["train_blocks"],
    )


def post_job_body(**overrides: Any) -> dict[str, Any]:
    """The JSON of ``job_posting()`` with ``overrides`` (any value, to malform it)."""
    return {**job_posting().to_json(), **overrides}


def post_job(h: LedgerHarness, who: str = "submitter", **overrides: Any) -> str:
    receipt = h.send(who, job_posting(**overrides))
    return str(receipt.event("job_posted").data["job_id"])


def job(h: LedgerHarness, job_id: str) -> Job:
    return h.state.get_job(job_id)


def assign(h: LedgerHarness, job_id: str, solver: str = "solver", price: int = 800) -> Receipt:
    """Bid as ``solver`` and close bidding once the window has passed."""
    h.send(solver, BidBody(job_id, Amount(price), 8))
    h.advance_to(job(h, job_id).bid_deadline + 1)
    return h.send("outsider", CloseBiddingBody(job_id))


def fake_leaves(n: int = NUM_LEAVES, salt: str = "honest") -> list[bytes]:
    """Leaves for the tiny spec: the true initial state (``commit_final`` checks leaf 0), then
    made-up hashes."""
    made_up: list[bytes] = [sha256(f"{salt}/{i}".encode()) for i in range(1, n)]
    return [initial_state_hash(tiny_spec()), *made_up]


def final_commit(job_id: str, tree: CommitmentTree, progress_size: int = 0) -> CommitFinalBody:
    """The ``commit_final`` of ``tree`` (consistent with a progress commit of
    ``progress_size`` leaves, if any)."""
    size = tree.size
    consistency = tree.consistency_proof(progress_size) if 0 < progress_size < size else None
    return CommitFinalBody(
        job_id=job_id,
        root=Hash32(tree.root()),
        leaves=size,
        final_state_hash=Hash32(tree.entry(size - 1)),
        consistency_proof=consistency,
        final_proof=tree.inclusion_proof(size - 1),
        initial_proof=tree.inclusion_proof(0),
    )


def final_body(job_id: str, tree: CommitmentTree, progress_size: int = 0) -> dict[str, Any]:
    """The JSON of ``final_commit`` (for the tests that malform it)."""
    return final_commit(job_id, tree, progress_size).to_json()


def committed_job(
    h: LedgerHarness, leaves: list[bytes] | None = None, **terms: Any
) -> tuple[str, CommitmentTree]:
    """A job assigned to ``solver`` with a final commitment over ``leaves`` (fake by default)."""
    job_id = post_job(h, **terms)
    assign(h, job_id)
    tree = CommitmentTree(leaves if leaves is not None else fake_leaves())
    h.send("solver", final_commit(job_id, tree))
    return job_id, tree
