"""rewrite-history: a later root that does not extend the last progress root.

The ledger refuses it (the consistency proof fails), so the solver can never commit its final
root and is slashed when its training deadline passes.
"""

from __future__ import annotations

import pytest

from services.sim import scenarios
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize(("leaf", "after"), [(None, None), (0, 4), (3, 8)])
def test_refused_then_slashed_at_the_training_deadline(leaf: int | None, after: int | None) -> None:
    result = assert_outcome(scenarios.rewrite_history(leaf, after))
    refused = {(r.actor, r.kind, r.code) for r in result.rejections}
    assert ("solver", "commit_final", "invalid_proof") in refused
    assert result.first.status == "slashed"
