"""perturb-from: a sustained deviation from step s on (a cheaper kernel, say)."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize("step", [None, 0, 13, 31])
def test_first_deviating_step_is_located(step: int | None) -> None:
    assert_outcome(scenarios.perturb_from(step))


def test_other_seed() -> None:
    assert_outcome(scenarios.perturb_from(6, seed=21))
