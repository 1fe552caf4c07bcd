"""wrong-data-order: batches drawn with another seed; the very first step is wrong."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize(("seed_offset", "seed"), [(None, 3), (2, 3), (1, 17)])
def test_located_at_step_0(seed_offset: int | None, seed: int) -> None:
    assert_outcome(scenarios.wrong_data_order(seed_offset, seed=seed))
