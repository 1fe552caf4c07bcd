"""lazy-verifier: attests without re-executing.

On one job, alone, it lets a cheat through — nothing it does shows on chain — which is why a
job has several verifiers: one honest verifier beside it is enough. Across jobs, forced errors
(``protocol.forced_errors``) make the strategy lose money: every so often its sample holds a
forced error it vouched for, the solver audits it and it forfeits its attestation bond. Here
that is measured on the ledger over 200 seeded jobs and compared with the model.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from contracts_sim.params import TEST
from contracts_sim.testing import LedgerHarness
from protocol.forced_errors import catch_probability, lazy_attest_bond
from services.sim import scenarios
from tests.adversarial.play import assert_outcome
from tests.forced_error_players import MarketTally, play_jobs
from tests.ledger_helpers import JOB_TERMS

pytestmark = pytest.mark.adversarial

FORCED = TEST.with_changes(forced_error_bps=1_000, attest_bond_margin_bps=15_000)
"""The testnet preset's forced-error rate and bond margin, on the test chain's short windows."""
Z_99 = 2.576  # two-sided 99 % normal quantile


def test_alone_it_lets_a_cheat_through() -> None:
    result = assert_outcome(scenarios.lazy_verifier_alone())
    job = result.first
    assert job.status == "settled" and job.solver_paid == 1000
    assert job.attesters == ["lazy-verifier"]


def test_one_honest_verifier_beside_it_is_enough() -> None:
    result = assert_outcome(scenarios.lazy_verifier_with_honest())
    assert result.first.located_step == 16


def market(modes: dict[str, str], rounds: int, seed: str) -> MarketTally:
    rich = 10**7
    names = ("submitter", "solver", "outsider", *modes)
    h = LedgerHarness(dict.fromkeys(names, rich), params=FORCED)
    h.send("solver", "stake", {"amount": 10_000})
    for v in modes:
        h.send(v, "stake", {"amount": 100})
    return play_jobs(h, rounds=rounds, per_round=10, modes=modes, seed=seed)


@pytest.fixture(scope="module")
def two_hundred_jobs() -> MarketTally:
    return market({"honest": "honest", "lazy": "lazy"}, rounds=20, seed="lazy")


def test_a_lazy_verifier_loses_money_as_the_model_says(two_hundred_jobs: MarketTally) -> None:
    tally = two_hundred_jobs
    assert tally.jobs >= 200 and tally.profit is not None
    fee, k = JOB_TERMS["verification_fee"], JOB_TERMS["sample_count"]
    rho = catch_probability(k, FORCED.forced_error_bps)
    bond = lazy_attest_bond(fee, k, FORCED.forced_error_bps, FORCED.attest_bond_margin_bps)
    share = fee // 2  # the honest verifier is always paid too: it attests or finds the trap
    # Per job: +share, or -bond with probability rho (the audit it cannot answer).
    mean = tally.jobs * (share - rho * (share + bond))
    sd = math.sqrt(tally.jobs * rho * (1 - rho)) * (share + bond)
    measured = tally.profit["lazy"]
    assert measured < 0
    assert abs(measured - mean) <= Z_99 * sd, (measured, float(mean), sd)
    assert tally.caught_lazy > 0 and tally.profit["lazy"] == (
        (tally.jobs - tally.caught_lazy) * share - tally.caught_lazy * bond
    )


def test_an_honest_verifier_earns_and_an_honest_solver_is_never_slashed(
    two_hundred_jobs: MarketTally,
) -> None:
    tally = two_hundred_jobs
    assert tally.profit is not None
    assert tally.slashed_jobs == 0
    assert tally.forced_errors > 0  # the honest verifier met forced errors and lost nothing
    # Paid on every job: half the fee, or all of it where the lazy attester forfeited.
    fee = JOB_TERMS["verification_fee"]
    caught = tally.caught_lazy
    assert tally.profit["honest"] == (tally.jobs - caught) * (fee // 2) + caught * fee
    assert tally.profit["solver"] >= tally.jobs * 800  # its price, plus audit rewards


def test_a_colluding_solver_and_lazy_verifier_gain_nothing() -> None:
    """The solver tells its accomplice where its traps are. The accomplice re-executes
    nothing, yet the pair ends with exactly the tokens they would have had with an honest
    verifier in its place: a forced error pays no jackpot, so a tip moves no tokens."""
    colluding = market({"honest": "honest", "friend": "colluding"}, rounds=4, seed="pair")
    honest = market({"honest": "honest", "friend": "honest"}, rounds=4, seed="pair")
    assert colluding.profit is not None and honest.profit is not None
    pair = ("solver", "friend")
    assert sum(colluding.profit[n] for n in pair) == sum(honest.profit[n] for n in pair)
    assert colluding.profit == honest.profit
    assert Fraction(colluding.forced_errors) == honest.forced_errors
