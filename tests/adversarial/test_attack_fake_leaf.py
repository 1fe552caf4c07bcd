"""fake-leaf: commits a fabricated hash at leaf L, so the root's leaves do not match the blobs.

The step before the leaf is located (its honest result is not the committed hash). A fabricated
leaf 0 is a wrong initial state, which the referee recomputes from the spec. A verifier that
finds a blob missing must not challenge *from* the fabricated leaf (it would agree to it and
lose): it challenges the first wrong leaf instead.
"""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize(("leaf", "located"), [(None, 15), (1, 3), (4, 15), (8, 31), (0, None)])
def test_fabricated_leaf_is_located(leaf: int | None, located: int | None) -> None:
    scenario = scenarios.fake_leaf(leaf)
    assert scenario.expected.located_step == located
    assert_outcome(scenario)


def test_other_seed() -> None:
    assert_outcome(scenarios.fake_leaf(6, seed=30))
