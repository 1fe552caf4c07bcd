"""stalling-challenger: opens a false challenge and never moves; its deadline takes its bond."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize("seed", [3, 9])
def test_stalling_challenger_loses_its_bond(seed: int) -> None:
    result = assert_outcome(scenarios.stalling_challenger(seed=seed))
    assert result.first.status == "settled"
    assert result.first.solver_paid == 1000


@pytest.mark.parametrize(
    ("segment", "spec", "caught_by"),
    [
        (2, None, "respond_midpoint deadline"),
        (5, {"steps": 8, "checkpoint_interval": 1}, "one-step adjudication"),
    ],
)
def test_stalling_after_naming_a_segment(
    segment: int, spec: dict[str, int] | None, caught_by: str
) -> None:
    scenario = scenarios.stalling_challenger(segment, spec=spec)
    assert scenario.expected.caught_by == caught_by
    assert_outcome(scenario)
