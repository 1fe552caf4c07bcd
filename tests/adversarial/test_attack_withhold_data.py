"""withhold-data: trains honestly but serves no leaves, no blobs, not even the referee's
pre-state; the game ends at the move only data could make, and its deadline slashes."""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize("what", [None, "blobs", "leaves"])
def test_slashed_at_the_prestate_deadline(what: str | None) -> None:
    assert_outcome(scenarios.withhold_data(what))


def test_other_seed() -> None:
    assert_outcome(scenarios.withhold_data("blobs", seed=40))
