"""adaptive: cheats in a fraction of the segments, betting the verifiers look elsewhere.

With the whole trajectory sampled it cannot hide; the verifier locates its first tampered step
(not merely the one it sampled). Its detection rate under partial sampling is measured in
``test_attack_adaptive_statistics.py``.
"""

from __future__ import annotations

import pytest

from services.sim import scenarios
from services.strategies.cheaters import AdaptiveCheater
from tests.adversarial.play import assert_outcome

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize(
    ("fraction", "cheat_seed"), [(None, None), (0.125, 0), (0.125, 5), (0.5, 1), (1.0, 2)]
)
def test_full_sample_catches_the_first_cheat(
    fraction: float | None, cheat_seed: int | None
) -> None:
    scenario = scenarios.adaptive(fraction, cheat_seed)
    result = assert_outcome(scenario)
    knobs = dict(scenario.solver.knobs)
    cheated = AdaptiveCheater(**knobs).cheated_segments(scenario.job_spec())
    assert result.first.located_step == 4 * min(cheated) + 3
    # The verifier saw exactly the cheated segments fail.
    (check,) = result.checks["verifier"].values()
    assert set(check.bad_segments) == cheated
