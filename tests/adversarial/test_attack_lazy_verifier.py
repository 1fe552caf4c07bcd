"""lazy-verifier: attests without re-executing. Alone it lets a cheat through — the protocol
cannot see a lazy attestation — which is why a job has several verifiers: one honest verifier
beside it is enough."""

from __future__ import annotations

import pytest

from services import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


def test_alone_it_lets_a_cheat_through() -> None:
    result = assert_outcome(scenarios.lazy_verifier_alone())
    job = result.first
    assert job.status == "settled" and job.solver_paid == 1000
    assert job.attesters == ["lazy-verifier"]


def test_one_honest_verifier_beside_it_is_enough() -> None:
    result = assert_outcome(scenarios.lazy_verifier_with_honest())
    assert result.first.located_step == 16
