"""wrong-learning-rate: trains with 2^lr_log2 instead of the job's rate."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize(("lr_log2", "seed"), [(None, 3), (-2, 3), (-6, 9)])
def test_located_at_step_0(lr_log2: int | None, seed: int) -> None:
    assert_outcome(scenarios.wrong_learning_rate(lr_log2, seed=seed))
