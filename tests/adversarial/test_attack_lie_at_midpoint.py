"""lie-at-midpoint: perturbs a step, then posts the *true* hash at every bisection midpoint.

The honest challenger agrees with true hashes, so the interval is pushed to the end of the
segment — but the committed leaf there is still the lie, and by the solver's own claims that
last step is where it went wrong. It is slashed all the same.
"""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize(("step", "located"), [(None, 19), (16, 19), (17, 19), (0, 3), (31, 31)])
def test_pushed_to_the_segment_end_and_slashed(step: int | None, located: int) -> None:
    scenario = scenarios.lie_at_midpoint(step)
    assert scenario.expected.located_step == located
    assert_outcome(scenario)


def test_longer_segment() -> None:
    assert_outcome(scenarios.lie_at_midpoint(9, spec={"steps": 32, "checkpoint_interval": 8}))
