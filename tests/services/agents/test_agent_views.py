"""Typed views (``services.agents.views``): the chain's answers decode into the ledger's
records, and an answer that is not one raises ``MalformedAnswerError``, never a KeyError."""

from __future__ import annotations

from typing import Any

import pytest

from contracts_sim.blocks import ChainEvent
from contracts_sim.params import TEST
from contracts_sim.records import DisputeStatus, JobStatus, Party, Phase
from protocol.types import Address, Height
from services.agents.views import (
    DisputeResolved,
    JobSettled,
    decode_account,
    decode_dispute,
    decode_event,
    decode_events,
    decode_history,
    decode_job,
    decode_job_detail,
    decode_params,
    event_subject,
)
from services.errors import MalformedAnswerError
from services.sim.network import JobTerms, Network
from services.strategies.verifiers import StallingChallenger
from tests.ledger_helpers import tiny_spec


@pytest.fixture(scope="module")
def disputed() -> tuple[Network, str]:
    """A job a (false, stalling) challenger disputes: a job, a dispute and accounts to read."""
    net = Network()
    net.add_solver("solver")
    net.add_verifier("verifier", StallingChallenger())
    net.warm_up()
    job_id = net.post_job(tiny_spec(), JobTerms(sample_count=8))
    net.run_until(lambda: bool(net.job(job_id)["disputes"]), max_rounds=200)
    return net, job_id


def test_answers_decode_into_the_ledgers_records(disputed: tuple[Network, str]) -> None:
    net, job_id = disputed
    job = decode_job(net.client.get_job(job_id))
    assert job.job_id == job_id and job.status is JobStatus.COMMITTED and job.spec == tiny_spec()
    assert job.solver is not None and job.holds_bid_of(job.solver)
    (answer,) = net.client.list_disputes(job_id)
    dispute = decode_dispute(answer, job)
    assert dispute.status.is_open and dispute.spec == tiny_spec()
    assert isinstance(dispute.phase, Phase) and isinstance(dispute.turn, Party)
    assert any(e.kind == "challenged" for e in decode_history(net.client.get_job(job_id)))
    account = decode_account(net.client.get_account(job.solver))
    assert account.locked > 0
    assert decode_params(net.client.params()) == TEST


def _without(answer: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != key}


@pytest.mark.parametrize(
    "broken",
    [
        lambda job: _without(job, "status"),
        lambda job: {**job, "status": "finished"},
        lambda job: {**job, "payment": "a lot"},
        lambda job: {**job, "spec": {"steps": 3}},
        lambda job: [job],
    ],
    ids=["missing-field", "unknown-status", "mistyped-field", "bad-spec", "not-an-object"],
)
def test_a_malformed_job_is_a_typed_error(disputed: tuple[Network, str], broken: Any) -> None:
    net, job_id = disputed
    with pytest.raises(MalformedAnswerError):
        decode_job(broken(net.client.get_job(job_id)))


def test_malformed_disputes_accounts_and_params_are_typed_errors(
    disputed: tuple[Network, str],
) -> None:
    net, job_id = disputed
    (answer,) = net.client.list_disputes(job_id)
    with pytest.raises(MalformedAnswerError):
        decode_dispute({**answer, "phase": "somewhere"})
    with pytest.raises(MalformedAnswerError):
        decode_account(_without(net.client.get_account(net.agents[0].address), "bonded"))
    with pytest.raises(MalformedAnswerError):
        decode_params(_without(net.client.params(), "move_timeout"))
    with pytest.raises(MalformedAnswerError):
        decode_history({"history": [{"kind": "challenged"}]})


def test_an_agent_leaves_out_a_job_it_cannot_read(disputed: tuple[Network, str]) -> None:
    """One unreadable job costs the agent that job only: the others are still its work."""
    net, job_id = disputed
    solver = net.agents[0]
    good = net.client.get_job(job_id)
    answers = [_without(good, "status"), good]
    solver.watcher.jobs = lambda: answers
    assert [job.job_id for job in solver.jobs()] == [job_id]


def test_a_job_detail_decodes_with_its_disputes_and_typed_events(
    disputed: tuple[Network, str],
) -> None:
    net, job_id = disputed
    answer = net.client.get_job(job_id)
    detail = decode_job_detail(answer)
    assert detail.job.job_id == job_id and detail.job.status is JobStatus.COMMITTED
    (summary,) = detail.dispute_summaries
    assert summary.status is DisputeStatus.OPEN and isinstance(summary.phase, Phase)
    assert detail.history and not detail.events(JobSettled)  # nothing settled yet
    subjects = {event_subject(e).job_id for e in detail.history}
    assert job_id in subjects
    with pytest.raises(MalformedAnswerError):
        decode_job_detail(_without(answer, "history"))
    with pytest.raises(MalformedAnswerError):
        decode_job_detail({**answer, "dispute_summaries": [{"dispute_id": summary.dispute_id}]})


def test_a_malformed_event_is_a_typed_error() -> None:
    settled = ChainEvent(1, Height(3), None, "job_settled", {"job_id": "ab" * 32})
    with pytest.raises(MalformedAnswerError):
        decode_events(JobSettled, [settled])  # no solver, no price
    with pytest.raises(MalformedAnswerError):
        decode_event(DisputeResolved, settled)  # another kind
    data = {"job_id": "ab", "solver": "0x", "price": 5, "fee_share": 0}
    paid = ChainEvent(2, Height(3), None, "job_settled", data)
    assert decode_events(JobSettled, [paid]) == [JobSettled("ab", Address("0x"), 5)]
