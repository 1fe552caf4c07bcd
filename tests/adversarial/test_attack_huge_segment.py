"""huge-segment: an attacker posts a job whose segments take hours to re-execute (two segments
of millions of steps), wins it with its own solver, and lets verifiers grind on it while the
challenge windows of other jobs — a real cheater's among them — close unchecked.

The ledger bounds what one verifier's sample may cost (``max_verification_work``): such a job is
refused at ``post_job`` with ``unverifiable_job`` and changes nothing. Verifiers also judge the
most urgent jobs first (earliest challenge deadline), so new jobs cannot push an older one past
its window.
"""

from __future__ import annotations

import pytest

from contracts_sim.exceptions import UnverifiableJobError
from contracts_sim.params import TEST, TESTNET
from contracts_sim.records import JobStatus
from protocol.layout import segment_work
from protocol.spec import parse_spec
from services.agents.verifier import _urgency
from tests.agent_views import job_view_for
from tests.conftest import tiny_spec_dict
from tests.ledger_helpers import JOB_TERMS, funded_harness, post_job_body

pytestmark = pytest.mark.adversarial


def huge_segment_spec() -> dict[str, object]:
    spec = tiny_spec_dict()
    spec["steps"] = 10_000_000
    spec["checkpoint_interval"] = 5_000_000  # 3 leaves: every bound on leaves and blobs holds
    return spec


def test_a_job_whose_sample_cannot_be_checked_in_time_is_refused() -> None:
    spec = parse_spec(huge_segment_spec())
    assert JOB_TERMS["sample_count"] * segment_work(spec) > TEST.max_verification_work
    h = funded_harness()
    error = h.expect_error(
        "submitter",
        "post_job",
        post_job_body(spec=huge_segment_spec()),
        UnverifiableJobError,
    )
    assert error.code == "unverifiable_job"


def test_the_example_job_is_far_inside_the_testnet_bound() -> None:
    from services.jobspec import load_spec
    from tests.conftest import EXAMPLE_SPEC

    spec, terms = load_spec(EXAMPLE_SPEC)
    assert int(terms["sample_count"]) * segment_work(spec) * 40 < TESTNET.max_verification_work


def test_verifiers_judge_the_earliest_challenge_deadline_first() -> None:
    spec = parse_spec(tiny_spec_dict())
    jobs = [
        job_view_for(spec, job_id="new", status=JobStatus.COMMITTED, challenge_deadline=90),
        job_view_for(spec, job_id="open", status=JobStatus.OPEN, challenge_deadline=None),
        job_view_for(spec, job_id="old", status=JobStatus.COMMITTED, challenge_deadline=40),
        job_view_for(spec, job_id="flood", status=JobStatus.COMMITTED, challenge_deadline=60),
    ]
    assert [j.job_id for j in sorted(jobs, key=_urgency)] == ["old", "flood", "new", "open"]


TINY_MODELS: dict[str, dict[str, object]] = {
    "mlp": {"family": "mlp", "input_dim": 16, "hidden": [1], "classes": 4},
    "cnn": {
        "family": "cnn",
        "image": [1, 4, 4],
        "conv": [{"channels": 1, "kernel": 1}],
        "classes": 4,
    },
}


@pytest.mark.parametrize("family", sorted(TINY_MODELS))
def test_a_tiny_model_cannot_hide_a_long_segment(family: str) -> None:
    """Red team: a model of a handful of numbers costs almost nothing per example, but every
    step costs its fixed overhead (~0.5 ms here); counted by products alone, a segment of
    hundreds of thousands of such steps (an hour to re-execute) was admitted."""
    spec = tiny_spec_dict(model=TINY_MODELS[family], steps=2_000_000, checkpoint_interval=1_000_000)
    assert segment_work(parse_spec(spec)) > TESTNET.max_segment_work
    h = funded_harness()
    body = post_job_body(spec=spec)
    error = h.expect_error("submitter", "post_job", body, UnverifiableJobError)
    assert error.code == "unverifiable_job"
