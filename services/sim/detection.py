"""Measuring the detection rate of a partial cheat against the detection formula
(docs/protocol.md, "Sampling").

An ``AdaptiveCheater`` flips one bit at the last step of c of the m segments and is honest
elsewhere; each of V honest verifiers re-executes k segments drawn from the block hash after the
commitment. Theory: P(detect) = 1 − (C(m − c, k) / C(m, k))^V. ``run_detection_trials`` plays
independent seeded games (each trial changes the job seed, so the cheated segments, the root and
the sample all change, and the actors' keys) and checks every one of them:

* detected (some sample meets a cheated segment) → the solver is slashed and the dispute locates
  the cheater's *first* tampered step, whichever cheated segment was sampled — the verifier
  re-executes from the start once it has seen a mismatch;
* missed → the job settles and the cheater is paid: that is what the rate measures.

The measured rate must fall inside a 99% interval: ``binomial_acceptance`` gives the exact
two-sided region for the count under the theoretical p, ``wilson_interval`` the interval around
the measured rate (both reported).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

from contracts_sim.records import JobStatus
from protocol.economics import detection_with_verifiers
from services.sim import scenarios
from services.sim.scenarios import Expected, Scenario, honest_verifier, run_scenario
from services.strategies.cheaters import AdaptiveCheater

Z99 = NormalDist().inv_cdf(0.995)
"""The two-sided 99% normal quantile (≈ 2.5758)."""

STATS_SPEC = {"steps": 16, "checkpoint_interval": 2}
"""16 steps, C = 2: m = 8 segments, quick enough for hundreds of games."""

CONFIGS: list[dict[str, Any]] = [
    {"fraction": 0.25, "sample_count": 2, "verifiers": 1, "first_seed": 1000},
    {"fraction": 0.125, "sample_count": 2, "verifiers": 2, "first_seed": 5000},
]
"""The measured configurations: c = 2, k = 2, one verifier; c = 1, k = 2, two verifiers."""


def wilson_interval(successes: int, trials: int, z: float = Z99) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion."""
    if trials <= 0:
        raise ValueError("trials must be positive")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_acceptance(trials: int, p: float, alpha: float = 0.01) -> tuple[int, int]:
    """The counts [lo, hi] that X ~ Binomial(trials, p) falls in with probability >= 1 − alpha
    (at most alpha / 2 cut from each tail, computed exactly)."""
    pmf = [math.comb(trials, x) * p**x * (1 - p) ** (trials - x) for x in range(trials + 1)]
    lo, tail = 0, 0.0
    while lo < trials and tail + pmf[lo] <= alpha / 2:
        tail += pmf[lo]
        lo += 1
    hi, tail = trials, 0.0
    while hi > 0 and tail + pmf[hi] <= alpha / 2:
        tail += pmf[hi]
        hi -= 1
    return lo, hi


@dataclass(frozen=True)
class Trial:
    seed: int
    cheated: tuple[int, ...]
    samples: tuple[tuple[int, ...], ...]  # one per verifier
    detected: bool  # some sample meets a cheated segment
    status: JobStatus
    located_step: int | None
    first_tampered_step: int
    solver_paid: int


@dataclass
class DetectionStats:
    segments: int  # m
    cheated: int  # c
    sample_count: int  # k
    verifiers: int  # V
    trials: int
    detected: int
    theoretical: float
    acceptance: tuple[int, int]  # counts inside the exact 99% region
    wilson: tuple[float, float]  # 99% interval around the measured rate
    wall_s: float
    failures: list[str] = field(default_factory=list)  # trials whose outcome was wrong
    records: list[Trial] = field(default_factory=list, repr=False)

    @property
    def measured(self) -> float:
        return self.detected / self.trials

    @property
    def within(self) -> bool:
        """The measured count is inside the 99% region, and theory inside the Wilson interval."""
        lo, hi = self.acceptance
        return lo <= self.detected <= hi and self.wilson[0] <= self.theoretical <= self.wilson[1]


def trial_scenario(seed: int, fraction: float, sample_count: int, verifiers: int) -> Scenario:
    """One trial: an adaptive cheater against ``verifiers`` honest verifiers sampling k."""
    spec = scenarios.spec_for(STATS_SPEC)
    return Scenario(
        name=f"detection/{fraction}/{sample_count}/{verifiers}/{seed}",
        attack="adaptive",
        solver=scenarios.cheater("AdaptiveCheater", fraction=fraction),
        verifiers=tuple(honest_verifier(f"verifier-{i + 1}") for i in range(verifiers)),
        expected=Expected(solver_slashed=False),  # not used: a trial is judged by its sample
        spec=STATS_SPEC,
        terms=replace(scenarios.DEFAULT_TERMS, sample_count=sample_count),
        seed=seed,
        deterministic=False,
        note=f"m = {spec.num_segments}",
    )


def _judge(scenario: Scenario, seed: int, fraction: float) -> tuple[Trial, list[str]]:
    result = run_scenario(scenario, solver_options={"segments_per_tick": 4})
    spec = scenario.job_spec()
    cheated = AdaptiveCheater(fraction=fraction).cheated_segments(spec)
    first = min(cheated) * spec.checkpoint_interval + spec.checkpoint_interval - 1
    samples = tuple(
        tuple(check.sample) for checks in result.checks.values() for check in checks.values()
    )
    job = result.first
    detected = any(cheated & set(sample) for sample in samples)
    trial = Trial(
        seed,
        tuple(sorted(cheated)),
        samples,
        detected,
        job.status,
        job.located_step,
        first,
        job.solver_paid,
    )
    problems = []
    if len(samples) != len(scenario.verifiers):
        problems.append(f"{len(samples)} verifiers judged the job")
    if not result.supply_ok or result.honest_losses or result.timed_out:
        problems.append(f"{result.supply_error or ''} {result.honest_losses} {result.timed_out}")
    if detected:
        if job.status != JobStatus.SLASHED or job.located_step != first:
            problems.append(f"detected but {job.status}, located {job.located_step} != {first}")
        if job.caught_by != scenarios.ONE_STEP:
            problems.append(f"detected but caught by {job.caught_by}")
    elif job.status != JobStatus.SETTLED or job.solver_paid != scenario.job_terms().payment:
        problems.append(f"missed but {job.status}, paid {job.solver_paid}")
    if job.bonds_lost:
        problems.append(f"bonds lost: {job.bonds_lost}")
    return trial, [f"seed {seed}: {p}" for p in problems]


def run_detection_trials(
    trials: int = 200,
    *,
    fraction: float = 0.25,
    sample_count: int = 2,
    verifiers: int = 1,
    first_seed: int = 1000,
) -> DetectionStats:
    """Play ``trials`` seeded games and compare the detection rate with the formula."""
    spec = scenarios.spec_for(STATS_SPEC)
    m = spec.num_segments
    c = len(AdaptiveCheater(fraction=fraction).cheated_segments(spec))
    p = detection_with_verifiers(m, c, sample_count, verifiers)
    started = time.perf_counter()
    records, failures = [], []
    for seed in range(first_seed, first_seed + trials):
        scenario = trial_scenario(seed, fraction, sample_count, verifiers)
        trial, problems = _judge(scenario, seed, fraction)
        records.append(trial)
        failures += problems
    detected = sum(t.detected for t in records)
    return DetectionStats(
        segments=m,
        cheated=c,
        sample_count=sample_count,
        verifiers=verifiers,
        trials=trials,
        detected=detected,
        theoretical=p,
        acceptance=binomial_acceptance(trials, p),
        wilson=wilson_interval(detected, trials),
        wall_s=time.perf_counter() - started,
        failures=failures,
        records=records,
    )
