"""Does cheating pay on this job? The catalogue's threats priced with ``protocol.economics``.

For a job (spec + terms) on a chain (``Params`` preset) and V verifiers, each catalogue cheat
gets: P(detect), the expected loss P · (stake − reward) against the work it saves s · payment,
whether it is deterred, the smallest sample count k and the smallest stake that would deter it,
and what verifying costs (k / m of the solver's re-execution per verifier).

Every figure is the worst case: the cheater has an accomplice that collects the whole reward
for catching it (``slash_reward_bps`` of the stake; the ledger never pays the challengers more,
``contracts_sim.dispute``), so a caught cheater loses the stake less that reward
(``protocol.economics.loss_with_accomplice``), not the whole stake.

The chain shapes the terms: a job cannot lock less than ``min_solver_stake`` nor ask for more
than ``max_sample_count`` samples (or more than m), so those bounds are applied first.

Cheating challengers are priced the same way with the bond as their stake: the referee (or the
move deadline) takes it with certainty and they gain nothing; in the worst case the solver is
their accomplice and recovers the reward share of the bond. A lazy verifier is priced by the
chain's forced errors (``protocol.forced_errors``): on each job its sample holds one with
probability 1 - (1 - f)^k, and then it forfeits its attestation bond and its fee share; with
forced errors off it is reported as undetected (one honest verifier among the V is enough).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from contracts_sim.params import Params
from protocol import economics
from protocol.forced_errors import catch_probability, lazy_attest_bond
from protocol.spec import JobSpec
from services.sim.threats import (
    BOND,
    FORCED_ERRORS,
    LEDGER,
    SAMPLING,
    Threat,
    catalogue_threats,
)


@dataclass(frozen=True)
class JobEconomics:
    """The job's economic terms as the chain will enforce them."""

    steps: int
    checkpoint_interval: int
    segments: int  # m
    payment: int
    verification_fee: int
    stake: int  # the solver's locked stake
    sample_count: int  # k per verifier
    verifiers: int  # V
    challenge_bond: int
    slash_reward_bps: int  # the share of a slash paid out, which an accomplice may collect
    loss_with_accomplice: int  # the stake less that reward: what a caught cheater surely loses
    verifier_cost_fraction: float  # k / m: one verifier's re-execution vs the solver's training
    forced_error_bps: int = 0  # the chain's forced-error rate per segment
    attest_bond: int = 0  # what an attestation locks on this job (0: forced errors off)

    @classmethod
    def from_terms(
        cls, spec: JobSpec, terms: dict[str, Any], params: Params, verifiers: int = 1
    ) -> JobEconomics:
        m = spec.num_segments
        k = min(int(terms.get("sample_count", 2)), params.max_sample_count, m)
        stake = max(int(terms.get("min_stake", 0)), params.min_solver_stake)
        return cls(
            steps=spec.steps,
            checkpoint_interval=spec.checkpoint_interval,
            segments=m,
            payment=int(terms.get("payment", 1_000)),
            verification_fee=int(terms.get("verification_fee", 0)),
            stake=stake,
            sample_count=k,
            verifiers=verifiers,
            challenge_bond=params.challenge_bond,
            slash_reward_bps=params.slash_reward_bps,
            loss_with_accomplice=economics.loss_with_accomplice(stake, params.slash_reward_bps),
            verifier_cost_fraction=k / m,
            forced_error_bps=params.forced_error_bps,
            attest_bond=lazy_attest_bond(
                int(terms.get("verification_fee", 0)),
                k,
                params.forced_error_bps,
                params.attest_bond_margin_bps,
            ),
        )


@dataclass(frozen=True)
class DeterrenceRow:
    cheat: str
    role: str
    caught: str  # threats.SAMPLING, LEDGER, BOND or UNDETECTED
    cheated_segments: int | None  # c
    saved_fraction: float  # s
    detection: float  # P(detect) (P(loses its bond) for a challenger)
    at_stake: int  # the stake (or bond) it risks
    expected_slash: float  # P · at_stake
    loss_with_accomplice: int  # at_stake less the reward an accomplice may collect
    expected_loss: float  # P · loss_with_accomplice: the worst case, which decides `deterred`
    work_saved: int  # s · payment (what cheating gains)
    deterred: bool  # expected_loss > work_saved
    min_sample_count: int | None  # smallest k that deters it (None: none does / not sampling)
    min_stake: int | None  # smallest stake that deters it at this k (None: not applicable)
    note: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def assess_threat(threat: Threat, job: JobEconomics) -> DeterrenceRow:
    m, k, v, r = job.segments, job.sample_count, job.verifiers, job.slash_reward_bps
    s = threat.saved_fraction
    if threat.caught == SAMPLING:
        c = threat.cheated_segments
        assert c is not None
        d = economics.assess(m, c, k, v, job.stake, job.payment, s, r)
        return DeterrenceRow(
            threat.name,
            threat.role,
            threat.caught,
            c,
            s,
            d.detection,
            job.stake,
            d.expected_slash,
            d.loss_with_accomplice,
            d.expected_loss,
            d.work_saved,
            d.deterred,
            economics.min_sample_count(m, c, v, job.stake, job.payment, s, r),
            economics.min_stake(m, c, k, v, job.payment, s, r),
            threat.note,
        )
    if threat.caught in (LEDGER, BOND):
        # Caught for certain; the reward for catching it (to the submitter, or to the solver
        # for a forfeited bond) may go to an accomplice all the same.
        at_stake = job.stake if threat.caught == LEDGER else job.challenge_bond
        loss = economics.loss_with_accomplice(at_stake, r)
        saved = int(s * job.payment)
        return DeterrenceRow(
            threat.name,
            threat.role,
            threat.caught,
            None,
            s,
            1.0,
            at_stake,
            float(at_stake),
            loss,
            float(loss),
            saved,
            loss > saved,
            None,
            economics.stake_to_deter(Fraction(1), saved, r),
            threat.note,
        )
    if threat.caught == FORCED_ERRORS and job.attest_bond:
        return _assess_lazy_attester(threat, job)
    return DeterrenceRow(
        threat.name,
        threat.role,
        threat.caught,
        None,
        s,
        0.0,
        0,
        0.0,
        0,
        0.0,
        0,
        False,
        None,
        None,
        threat.note,
    )


def _assess_lazy_attester(threat: Threat, job: JobEconomics) -> DeterrenceRow:
    """A lazy attester keeps its fee share F (what laziness gains: the share without the work)
    unless its sample holds a forced error, with probability ρ = 1 - (1 - f)^k: then it
    forfeits its attestation bond B and F. Deterred when ρ·(B + F) > F: its expected profit,
    F - ρ·(B + F), is negative."""
    rho = catch_probability(job.sample_count, job.forced_error_bps)
    share = job.verification_fee // max(job.verifiers, 1)
    loss = job.attest_bond + share
    expected = rho * loss
    return DeterrenceRow(
        threat.name,
        threat.role,
        threat.caught,
        None,
        threat.saved_fraction,
        float(rho),
        job.attest_bond,
        float(rho * job.attest_bond),
        loss,
        float(expected),
        share,
        expected > share,
        None,
        None,
        threat.note,
    )


def deterrence_table(spec: JobSpec, job: JobEconomics) -> list[DeterrenceRow]:
    """One row per catalogue cheat (default knobs) on this job."""
    return [assess_threat(threat, job) for threat in catalogue_threats(spec)]


def detection_curve(
    segments: int, sample_counts: list[int], verifiers: int
) -> dict[int, list[tuple[float, float]]]:
    """k -> [(φ, P(detect))] for every c = 0..m (φ = c / m)."""
    return {
        k: [
            (c / segments, economics.detection_with_verifiers(segments, c, k, verifiers))
            for c in range(segments + 1)
        ]
        for k in sample_counts
    }
