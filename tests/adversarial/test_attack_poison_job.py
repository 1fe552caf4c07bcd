"""poison-job: a solver serves data for one job that makes the verifier's checks raise (a
crafted blob, a bug the bytes trip). Before, the exception aborted the verifier's whole tick, so
that one job stopped it policing every other job. Now each job's work is isolated: the poisoned
job is logged and backed off (exponentially, in blocks) while the verifier judges the others."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from protocol.spec import JobSpec, parse_spec
from services.agents.blobs import LocalBlobSource
from services.sim.network import JobTerms, Network
from tests.conftest import tiny_spec_dict

pytestmark = pytest.mark.adversarial


class PoisonedSource:
    """The network's blobs, except that fetching anything of ``poisoned`` raises."""

    def __init__(self, inner: LocalBlobSource, poisoned: set[str]) -> None:
        self.inner = inner
        self.poisoned = poisoned
        self.raised = 0

    def _check(self, job_id: str) -> None:
        if job_id in self.poisoned:
            self.raised += 1
            raise ValueError("cannot reshape array of size 0 into shape (0,9223372036854775808)")

    def leaves(self, solver: str, job_id: str, count: int) -> list[bytes] | None:
        self._check(job_id)
        return self.inner.leaves(solver, job_id, count)

    def blob(self, solver: str, job_id: str, entry: bytes, max_bytes: int) -> bytes | None:
        self._check(job_id)
        return self.inner.blob(solver, job_id, entry, max_bytes)

    def model(self, solver: str, job_id: str, max_bytes: int) -> bytes | None:
        return self.inner.model(solver, job_id, max_bytes)


def _spec(seed: int) -> JobSpec:
    return parse_spec(tiny_spec_dict(seed=seed))


def test_a_job_whose_checks_raise_does_not_stop_the_verifier_judging_the_others() -> None:
    net = Network()
    net.add_solver("solver")
    verifier = net.add_verifier("verifier")
    net.warm_up()
    terms = JobTerms(sample_count=8)
    poisoned = net.post_job(_spec(3), terms, submitter="alice")
    healthy = net.post_job(_spec(4), terms, submitter="bob")
    source = PoisonedSource(net.blobs, {poisoned})
    verifier.blobs = source

    rounds = net.run_jobs(poisoned, healthy, max_rounds=200)

    assert net.job(healthy)["status"] == "settled"
    assert verifier.address in net.job(healthy)["attesters"]
    assert verifier.checks[healthy].verdict.action == "attest"
    assert verifier.address not in net.job(poisoned)["attesters"]
    assert poisoned not in verifier.checks
    assert verifier.backoffs[poisoned].failures >= 2  # kept failing, kept being retried
    assert source.raised < rounds  # ... but backed off, not retried every block


def test_a_failure_backs_off_exponentially_and_success_clears_it() -> None:
    net = Network()
    verifier = net.add_verifier("verifier")
    attempts: list[int] = []

    def failing_at(height: int) -> None:
        attempts.append(height)
        raise RuntimeError("bad bytes")

    for height in range(1, 40):
        verifier.isolated("job", height, functools.partial(failing_at, height))
    assert attempts == [1, 2, 4, 8, 16, 32]
    verifier.isolated("job", 64, lambda: None)
    assert "job" not in verifier.backoffs


def test_one_job_failing_still_lets_the_tick_reach_the_next_job(caplog: Any) -> None:
    net = Network()
    verifier = net.add_verifier("verifier")
    done: list[str] = []

    def boom() -> None:
        raise KeyError("missing field")

    verifier.isolated("a", 1, boom)
    verifier.isolated("b", 1, lambda: done.append("b"))
    assert done == ["b"]
    assert "job a failed" in caplog.text
