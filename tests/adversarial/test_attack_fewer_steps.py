"""fewer-steps: trains only a fraction of the steps; the first untrained step is located."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize(
    ("fraction", "first_untrained"), [(None, 16), (0.25, 8), (0.5, 16), (0.9, 28), (0.0, 0)]
)
def test_first_untrained_step_is_located(fraction: float | None, first_untrained: int) -> None:
    scenario = scenarios.fewer_steps(fraction)
    assert scenario.expected.located_step == first_untrained  # computed from the knob
    assert_outcome(scenario)


def test_other_seed_and_interval() -> None:
    assert_outcome(scenarios.fewer_steps(0.5, seed=8, spec={"steps": 24, "checkpoint_interval": 3}))
