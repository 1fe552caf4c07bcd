"""false-challenger: challenges a correct solver, then plays honestly — and loses its bond."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize("seed", [3, 4])
def test_false_challenger_loses_its_bond(seed: int) -> None:
    result = assert_outcome(scenarios.false_challenger(seed=seed))
    job = result.first
    assert job.status == "settled" and job.solver_paid == 1000
    assert job.bonds_lost == {"false-challenger": 40}


def test_other_interval() -> None:
    assert_outcome(scenarios.false_challenger(spec={"steps": 24, "checkpoint_interval": 3}))


@pytest.mark.parametrize(("segment", "located"), [(0, 3), (4, 19), (7, 31)])
def test_a_named_segment_is_bisected_to_its_last_step(segment: int, located: int) -> None:
    """With inclusion proofs for the segment it names, the game skips the descent."""
    scenario = scenarios.false_challenger(segment)
    assert scenario.expected.located_step == located
    result = assert_outcome(scenario)
    (checks,) = result.checks.values()
    (check,) = checks.values()
    body = check.verdict.challenge_body
    assert body is not None and body.evidence is not None and body.evidence.segment == segment
