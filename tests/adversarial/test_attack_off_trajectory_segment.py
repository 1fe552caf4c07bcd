"""off-trajectory-segment: a cheater whose every segment *starts* off the true trajectory but
whose first step is right relative to that start, hiding from a verifier that plays a fast-path
game against the job's trajectory from step 0.

The cheater flips a bit after the last step of every segment and serves no leaf list (it
publishes segments when asked on chain). A verifier that challenged a sampled segment and then
compared the solver's midpoints with the trajectory from step 0 disputed the segment's first
step, which is right relative to the agreed pre-state: it lost its bond and the cheater was
paid (found by a red team). A fast-path game is now played from the segment's committed
pre-state (``SegmentGame``): the dispute locates the flipped step and the cheater is slashed,
whichever segments the sample holds — also for a verifier that skips the costly location of
the first wrong leaf on a long job.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from protocol.exact import State, step
from protocol.spec import JobSpec
from services.sim.scenarios import (
    DEFAULT_TERMS,
    Expected,
    Scenario,
    StrategyRef,
    honest_verifier,
    run_scenario,
)
from services.strategies.cheaters import WithholdData, flip_low_bit

pytestmark = pytest.mark.adversarial


class FlipSegmentEnds(WithholdData):
    """Withholds the leaf list, publishes on request, flips a bit after each segment's last
    step (so from segment 1 on every segment starts off the true trajectory)."""

    name = "flip-segment-ends"

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        state = step(spec, state, i)
        if i % spec.checkpoint_interval == spec.checkpoint_interval - 1:
            state = flip_low_bit(state, 0)
        return state


@pytest.mark.parametrize("seed", [3, 4, 6, 7])
def test_a_fast_path_game_is_played_from_the_agreed_pre_state(seed: int) -> None:
    path = f"{__name__}:FlipSegmentEnds"
    scenario = Scenario(
        name=f"flip-segment-ends-{seed}",
        attack="flip-segment-ends",
        solver=StrategyRef(path, {"what": "leaves", "publish": True}, actor="solver"),
        verifiers=(honest_verifier(),),
        expected=Expected(
            solver_slashed=True, located_step="any", caught_by="one-step adjudication"
        ),
        terms=replace(DEFAULT_TERMS, sample_count=2),
        seed=seed,
    )
    result = run_scenario(scenario)
    assert result.passed, result.mismatches
    (outcome,) = result.jobs
    assert outcome.status == "slashed" and not outcome.bonds_lost
    c = scenario.job_spec().checkpoint_interval
    assert outcome.located_step is not None and outcome.located_step % c == c - 1


def test_past_the_location_budget_the_sampled_segment_is_challenged_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long honest prefix must not make the verifier re-execute the whole job before it
    challenges (it would miss the window): past ``LOCATE_BUDGET`` it challenges the bad
    sampled segment itself and plays it from its committed pre-state."""
    from services.agents import verifier
    from services.sim import scenarios

    monkeypatch.setattr(verifier, "LOCATE_BUDGET", 0)
    scenario = scenarios.perturb_step(step=29)  # in the last segment of 8
    result = run_scenario(scenario)
    assert result.passed, result.mismatches
    (outcome,) = result.jobs
    assert outcome.located_step == 29
    (by_job,) = result.checks.values()
    (check,) = by_job.values()
    assert check.verdict.challenge_body is not None
    assert check.verdict.challenge_body.evidence is not None
    assert check.verdict.challenge_body.evidence.segment == 7
