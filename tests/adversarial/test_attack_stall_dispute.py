"""stall-dispute: perturbs a step, then stops answering after n of its dispute moves.

Stalling at a midpoint loses at that deadline; once every midpoint is answered, the challenger
posts the agreed pre-state itself and the referee locates the step anyway.
"""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize(
    ("step", "moves"), [(None, None), (16, 0), (16, 1), (16, 2), (16, 5), (0, 0), (31, 1)]
)
def test_stalling_loses(step: int | None, moves: int | None) -> None:
    assert_outcome(scenarios.stall_dispute(step, moves))


def test_three_midpoints_to_answer() -> None:
    spec = {"steps": 32, "checkpoint_interval": 8}
    for moves in (2, 3):
        assert_outcome(scenarios.stall_dispute(21, moves, spec=spec))
