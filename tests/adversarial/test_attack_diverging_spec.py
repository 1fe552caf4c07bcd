"""diverging-spec: a submitter picks a learning rate that drives the weights out of the exact
range, hoping the assigned solver cannot finish and is slashed at the training deadline.

On main the solver's step raised ``OverflowBoundError`` on every retry and the honest solver
lost its stake. The overflow rule makes the VM total: a step whose products could leave the
exact range changes only the step counter, on every device, so the solver finishes, the
verifiers re-execute the same skipped steps, and the job settles.
"""

from __future__ import annotations

import random

import pytest

from services.sim.network import JobTerms, Network
from tests.adversarial.test_honest_soak import diverging_spec, skipped_steps

pytestmark = pytest.mark.adversarial


def test_a_diverging_spec_is_trained_verified_and_settled() -> None:
    spec = diverging_spec(random.Random(5))
    assert skipped_steps(spec) > 0  # the overflow rule really applies to this job

    net = Network(salt="diverging")
    net.add_solver("solver")
    net.add_verifier("verifier-0")
    net.add_verifier("verifier-1")
    net.warm_up()
    job_id = net.post_job(spec, JobTerms(sample_count=8))
    net.run_jobs(job_id, max_rounds=200)

    record = net.job(job_id)
    assert record["status"] == "settled"
    assert len(record["attesters"]) == 2  # both re-executed 8 of 10 segments and agreed
    kinds = {event["kind"] for event in record["history"]}
    assert not kinds & {"challenged", "slashed", "bond_forfeited"}
