"""adaptive, under partial sampling: the measured detection rate against the detection
formula (docs/protocol.md, "Sampling").

m = 8 segments (16 steps, C = 2), the cheater tampers with c = 2 of them, one honest verifier
samples k = 2: P(detect) = 1 − C(6, 2) / C(8, 2) = 13/28 ≈ 0.464. 200 seeded trials; the count
must lie in the exact 99% region under that p (and p in the 99% Wilson interval of the rate).
Every detected trial must slash and locate the cheater's first tampered step; every missed one
must settle with the cheater paid. A second run checks the formula for two verifiers.
"""

from __future__ import annotations

import math

import pytest

from services.sim.detection import (
    CONFIGS,
    DetectionStats,
    binomial_acceptance,
    run_detection_trials,
    wilson_interval,
)

pytestmark = pytest.mark.adversarial

TRIALS = 200


@pytest.fixture(scope="module")
def stats() -> DetectionStats:
    config = CONFIGS[0]
    assert config == {"fraction": 0.25, "sample_count": 2, "verifiers": 1, "first_seed": 1000}
    return run_detection_trials(TRIALS, **config)


def test_the_formula_for_this_cheat(stats: DetectionStats) -> None:
    assert (stats.segments, stats.cheated, stats.sample_count) == (8, 2, 2)
    assert stats.theoretical == pytest.approx(1 - math.comb(6, 2) / math.comb(8, 2))


def test_every_trial_ends_as_its_sample_says(stats: DetectionStats) -> None:
    assert stats.failures == []
    assert len(stats.records) == TRIALS
    # The trials really are different games: cheated sets and samples vary.
    assert len({t.cheated for t in stats.records}) > 10
    assert len({t.samples for t in stats.records}) > 10


def test_detected_trials_locate_the_first_tampered_step(stats: DetectionStats) -> None:
    detected = [t for t in stats.records if t.detected]
    assert detected
    for trial in detected:
        assert trial.status == "slashed"
        assert trial.located_step == trial.first_tampered_step
    # Including games where the sampled cheated segment was not the first one.
    assert any(min(t.cheated) not in t.samples[0] for t in detected)


def test_missed_trials_settle_and_pay_the_cheater(stats: DetectionStats) -> None:
    missed = [t for t in stats.records if not t.detected]
    assert missed
    assert all(t.status == "settled" and t.solver_paid == 1000 for t in missed)


def test_measured_rate_is_inside_the_99_percent_interval(stats: DetectionStats) -> None:
    lo, hi = stats.acceptance
    assert lo <= stats.detected <= hi, (stats.detected, stats.acceptance, stats.theoretical)
    assert stats.wilson[0] <= stats.theoretical <= stats.wilson[1]
    assert stats.within


def test_interval_helpers() -> None:
    # Exact region: symmetric for p = 1/2, and each cut tail holds at most 0.5%.
    lo, hi = binomial_acceptance(200, 0.5)
    assert lo + hi == 200
    assert sum(math.comb(200, x) for x in range(lo)) / 2**200 <= 0.005
    assert sum(math.comb(200, x) for x in range(lo + 1)) / 2**200 > 0.005
    assert binomial_acceptance(50, 1.0) == (50, 50)
    assert binomial_acceptance(50, 0.0) == (0, 0)
    # Wilson: contains the rate, stays in [0, 1], narrows with more trials.
    w_lo, w_hi = wilson_interval(93, 200)
    assert w_lo < 93 / 200 < w_hi
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(930, 2000)[1] - wilson_interval(930, 2000)[0] < w_hi - w_lo


@pytest.fixture(scope="module")
def two_verifiers() -> DetectionStats:
    config = CONFIGS[1]
    assert config == {"fraction": 0.125, "sample_count": 2, "verifiers": 2, "first_seed": 5000}
    return run_detection_trials(TRIALS, **config)


def test_two_independent_verifiers(two_verifiers: DetectionStats) -> None:
    """c = 1, k = 2, V = 2: P = 1 − (C(7, 2) / C(8, 2))² = 1 − (3/4)² = 7/16, per §5's
    independence of the verifiers' samples (each is seeded with the verifier's address)."""
    stats = two_verifiers
    assert (stats.segments, stats.cheated, stats.sample_count, stats.verifiers) == (8, 1, 2, 2)
    assert stats.theoretical == pytest.approx(7 / 16)
    assert stats.failures == []
    assert all(len(t.samples) == 2 for t in stats.records)
    assert any(t.samples[0] != t.samples[1] for t in stats.records)
    lo, hi = stats.acceptance
    assert lo <= stats.detected <= hi, (stats.detected, stats.acceptance, stats.theoretical)
    assert stats.within
