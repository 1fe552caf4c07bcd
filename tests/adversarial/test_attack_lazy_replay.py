"""lazy-replay: re-commits its last checkpoint for every leaf from L on (no work at all)."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize(("leaf", "first_skipped"), [(None, 12), (1, 0), (2, 4), (8, 28)])
def test_first_skipped_step_is_located(leaf: int | None, first_skipped: int) -> None:
    scenario = scenarios.lazy_replay(leaf)
    assert scenario.expected.located_step == first_skipped
    assert_outcome(scenario)


def test_other_seed_and_interval() -> None:
    assert_outcome(scenarios.lazy_replay(5, seed=2, spec={"steps": 16, "checkpoint_interval": 2}))
