"""no-training: frozen or re-drawn weights are committed; step 0 is already wrong."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize("seed", [3, 11])
@pytest.mark.parametrize("mode", [None, "random"])
def test_untrained_weights_are_located_at_step_0_and_slashed(mode: str | None, seed: int) -> None:
    result = assert_outcome(scenarios.no_training(mode, seed=seed))
    job = result.first
    assert (job.status, job.located_step) == ("slashed", 0)
    # The locked stake is taken: half to the challenger, half burned.
    assert (job.slashed, job.slash_reward, job.slash_burned) == (200, 100, 100)
