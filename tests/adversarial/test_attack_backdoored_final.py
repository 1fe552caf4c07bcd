"""backdoored-final: a solver trains honestly and commits the honest root, but declares the hash
of another model (the one it serves: a backdoored one) as its final state.

The ledger binds the final model to the trajectory: ``commit_final`` needs ``final_proof``, an
inclusion proof of ``final_state_hash`` as the last leaf of the committed root. Without it, or
with a hash that is not the last leaf, the commitment is refused; a solver that keeps declaring
another model never commits, misses its training deadline and is slashed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from contracts_sim.exceptions import InvalidProofError, MalformedBodyError
from contracts_sim.records import JobStatus
from protocol.hashing import sha256
from protocol.merkle import CommitmentTree
from protocol.types import Hash32
from services.agents.moves import Move
from services.agents.solver import SolverAgent
from services.agents.strategy import SolverStrategy
from services.sim.network import JobTerms, Network, key_for
from services.sim.scenarios import spec_for
from tests.ledger_helpers import (
    assign,
    fake_leaves,
    final_body,
    final_commit,
    funded_harness,
    job,
    post_job,
)

pytestmark = pytest.mark.adversarial

BACKDOOR = sha256(b"a backdoored model")


def test_final_hash_without_proof_is_refused() -> None:
    h = funded_harness()
    job_id = post_job(h)
    assign(h, job_id)
    # a hand-made body: no final_proof (CommitFinalBody requires one)
    body = {**final_body(job_id, CommitmentTree(fake_leaves())), "final_state_hash": BACKDOOR.hex()}
    del body["final_proof"]
    err = h.expect_error("solver", "commit_final", body, MalformedBodyError)
    assert err.field == "final_proof"  # type: ignore[attr-defined]


@pytest.mark.parametrize("declared", ["backdoor", "another leaf"])
def test_final_hash_that_is_not_the_last_leaf_is_refused(declared: str) -> None:
    h = funded_harness()
    job_id = post_job(h)
    assign(h, job_id)
    tree = CommitmentTree(fake_leaves())
    body = final_commit(job_id, tree)
    if declared == "backdoor":  # the last leaf's proof, another hash
        body = replace(body, final_state_hash=Hash32(BACKDOOR))
    else:  # a true leaf with its own proof, but not the last one
        body = replace(
            body, final_state_hash=Hash32(tree.entry(3)), final_proof=tree.inclusion_proof(3)
        )
    err = h.expect_error("solver", body, error=InvalidProofError)
    assert err.what == "final_proof"  # type: ignore[attr-defined]
    assert job(h, job_id).status is JobStatus.ASSIGNED


class BackdooredFinalSolver(SolverAgent):
    """Trains and commits honestly, but its final commitment declares ``BACKDOOR``."""

    def __init__(self, *args: Any, with_proof: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.with_proof = with_proof

    def send(self, move: Move, *, key: str | None = None) -> bool:
        if move.kind == "commit_final":
            # a hand-made body: without final_proof unless with_proof (CommitFinalBody needs it)
            body = {**move.body, "final_state_hash": BACKDOOR.hex()}
            if not self.with_proof:
                body.pop("final_proof")
            move = replace(move, body=body)
        return super().send(move, key=key)


@pytest.mark.parametrize("with_proof", [False, True])
def test_a_solver_declaring_another_final_model_is_never_paid(with_proof: bool) -> None:
    net = Network(salt=f"backdoored-final/{with_proof}")
    solver = BackdooredFinalSolver(
        net.client,
        key_for("solver", net.salt),
        strategy=SolverStrategy(),
        name="solver",
        stake=800,
        with_proof=with_proof,
    )
    net.blobs.register(solver)
    net.agents.append(solver)
    net.add_verifier("v1")
    net.add_verifier("v2")
    net.warm_up()

    job_id = net.post_job(spec_for(seed=5), JobTerms(train_blocks=16))
    net.run_jobs(job_id, max_rounds=120)

    record = net.job(job_id)
    kinds = [event["kind"] for event in record["history"]]
    assert record["status"] == "slashed" and "job_settled" not in kinds
    assert "final_committed" not in kinds and record["final_state_hash"] is None
    slashed = next(e["data"] for e in record["history"] if e["kind"] == "slashed")
    assert slashed["address"] == solver.address
    assert slashed["reason"] == "missed the training deadline"
    account = net.client.get_account(solver.address)
    assert int(account["jobs_slashed"]) == 1 and int(account["jobs_completed"]) == 0
