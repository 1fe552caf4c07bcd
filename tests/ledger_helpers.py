"""Shared set-ups for the ledger tests: a funded harness, a job in each status, fake leaves."""

from __future__ import annotations

from typing import Any

from contracts_sim.records import Job
from contracts_sim.referee import initial_state_hash
from contracts_sim.testing import LedgerHarness, Receipt
from protocol.hashing import sha256
from protocol.merkle import CommitmentTree
from protocol.spec import JobSpec, parse_spec
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
    h.send("solver", "stake", {"amount": 1_000})
    h.send("solver2", "stake", {"amount": 1_000})
    for v in ("v1", "v2", "v3"):
        h.send(v, "stake", {"amount": 100})
    return h


def post_job_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"spec": tiny_spec_dict(), **JOB_TERMS}
    body.update(overrides)
    return body


def post_job(h: LedgerHarness, who: str = "submitter", **overrides: Any) -> str:
    receipt = h.send(who, "post_job", post_job_body(**overrides))
    return str(receipt.event("job_posted").data["job_id"])


def job(h: LedgerHarness, job_id: str) -> Job:
    return h.state.get_job(job_id)


def assign(h: LedgerHarness, job_id: str, solver: str = "solver", price: int = 800) -> Receipt:
    """Bid as ``solver`` and close bidding once the window has passed."""
    h.send(solver, "bid", {"job_id": job_id, "price": price, "capacity": 8})
    h.advance_to(job(h, job_id).bid_deadline + 1)
    return h.send("outsider", "close_bidding", {"job_id": job_id})


def fake_leaves(n: int = NUM_LEAVES, salt: str = "honest") -> list[bytes]:
    """Leaves for the tiny spec: the true initial state (``commit_final`` checks leaf 0), then
    made-up hashes."""
    return [initial_state_hash(tiny_spec())] + [sha256(f"{salt}/{i}".encode()) for i in range(1, n)]


def final_body(job_id: str, tree: CommitmentTree, progress_size: int = 0) -> dict[str, Any]:
    size = tree.size
    body: dict[str, Any] = {
        "job_id": job_id,
        "root": tree.root().hex(),
        "leaves": size,
        "final_state_hash": tree.entry(size - 1).hex(),
        "final_proof": tree.inclusion_proof(size - 1).to_json(),
        "initial_proof": tree.inclusion_proof(0).to_json(),
    }
    if 0 < progress_size < size:
        body["consistency_proof"] = tree.consistency_proof(progress_size).to_json()
    return body


def committed_job(
    h: LedgerHarness, leaves: list[bytes] | None = None, **terms: Any
) -> tuple[str, CommitmentTree]:
    """A job assigned to ``solver`` with a final commitment over ``leaves`` (fake by default)."""
    job_id = post_job(h, **terms)
    assign(h, job_id)
    tree = CommitmentTree(leaves if leaves is not None else fake_leaves())
    h.send("solver", "commit_final", final_body(job_id, tree))
    return job_id, tree
