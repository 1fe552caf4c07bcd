"""accomplice-challenger: a cheating solver runs a second, staked verifier account and challenges
its own bad segment in the block after ``commit_final`` (the fast path needs no sample), so that
its partner's game is the one that proves it wrong and collects the slash reward.

The rule that stops it (``contracts_sim.dispute``): the challenger reward is shared equally by
the challengers of every dispute open when the solver loses, so an honest verifier that caught
the cheat shares it, and the coalition never recovers more than ``slash_reward_bps`` of the
stake — exactly the worst case ``protocol.economics`` prices (``loss_with_accomplice``).
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts_sim.params import BPS, TEST
from contracts_sim.records import DisputeStatus, JobStatus
from contracts_sim.testing import LedgerHarness
from protocol.economics import assess, loss_with_accomplice
from services.sim import scenarios
from tests.dispute_agents import Run, make_run, play
from tests.ledger_helpers import committed_job, funded_harness, job

pytestmark = pytest.mark.adversarial

STAKE = 200  # JOB_TERMS["min_stake"]
BOND = TEST.challenge_bond
REWARD = STAKE * TEST.slash_reward_bps // BPS
CHEAT_STEP = 21  # in segment 5 (steps 20..24, C = 4)
SOLVER_RUN = make_run(cheat_step=CHEAT_STEP)
HONEST_RUN = make_run()


def fast_path_evidence(job_id: str, run: Run, segment: int) -> dict[str, Any]:
    """A fast-path challenge of ``segment``: both of its leaves proved against the root."""
    tree = run.tree
    return {
        "job_id": job_id,
        "segment": segment,
        "pre_entry": run.leaves[segment].hex(),
        "post_entry": run.leaves[segment + 1].hex(),
        "pre_proof": tree.inclusion_proof(segment).to_json(),
        "post_proof": tree.inclusion_proof(segment + 1).to_json(),
    }


def accomplice_challenges(h: LedgerHarness, accomplice: str = "v2") -> tuple[str, str]:
    """The cheater commits; its accomplice challenges the bad segment in the very next block."""
    job_id, _ = committed_job(h, leaves=list(SOLVER_RUN.leaves))
    h.advance(1)  # the block after commit_final: no verifier's sample is known yet
    body = fast_path_evidence(job_id, SOLVER_RUN, CHEAT_STEP // 4)
    receipt = h.send(accomplice, "challenge", body)
    return job_id, str(receipt.event("challenged").data["dispute_id"])


def challenge(h: LedgerHarness, verifier: str, job_id: str) -> str:
    receipt = h.send(verifier, "challenge", {"job_id": job_id})
    return str(receipt.event("challenged").data["dispute_id"])


def holdings(h: LedgerHarness, *names: str) -> int:
    """Everything ``names`` own together: balances, free and locked stake."""
    return sum(h.account(n).balance + h.account(n).bonded + h.account(n).locked for n in names)


def test_the_honest_verifier_shares_the_reward_its_accomplice_raced_for() -> None:
    h = funded_harness()
    before = {"coalition": holdings(h, "solver", "v2"), "v1": holdings(h, "v1")}
    burned = h.state.get_supply().burned
    job_id, accomplice_id = accomplice_challenges(h, "v2")
    h.advance(1)  # the honest verifier's sample is known: it re-executes and challenges
    honest_id = challenge(h, "v1", job_id)

    # The cheater concedes its partner's game at once (all in one block).
    receipt = play(
        h, accomplice_id, SOLVER_RUN, HONEST_RUN, names=("solver", "v2"), blocks_per_move=0
    )

    assert h.state.get_dispute(accomplice_id).status is DisputeStatus.CHALLENGER_WON
    assert h.state.get_dispute(honest_id).status is DisputeStatus.VOID
    assert job(h, job_id).status is JobStatus.SLASHED
    share = REWARD // 2
    slashed = receipt.event("slashed").data
    assert slashed["rewards"] == {h.address("v2"): share, h.address("v1"): share}
    assert (slashed["amount"], slashed["reward"], slashed["burned"]) == (
        STAKE,
        2 * share,
        STAKE - 2 * share,
    )
    # Exact books: the honest verifier has its bond back and half the reward ...
    assert holdings(h, "v1") == before["v1"] + share
    # ... the coalition lost the stake less the accomplice's half of the reward ...
    coalition_loss = before["coalition"] - holdings(h, "solver", "v2")
    assert coalition_loss == STAKE - share
    assert h.state.get_supply().burned == burned + STAKE - 2 * share
    # ... which is no less than what the deterrence analysis assumes in the worst case.
    assert coalition_loss >= STAKE * (BPS - TEST.slash_reward_bps) // BPS
    assert coalition_loss >= loss_with_accomplice(STAKE, TEST.slash_reward_bps)


def test_the_accomplice_alone_costs_exactly_what_economics_assumes() -> None:
    h = funded_harness()
    before = holdings(h, "solver", "v2")
    job_id, accomplice_id = accomplice_challenges(h, "v2")

    receipt = play(h, accomplice_id, SOLVER_RUN, HONEST_RUN, names=("solver", "v2"))

    assert receipt.event("slashed").data["rewards"] == {h.address("v2"): REWARD}
    coalition_loss = before - holdings(h, "solver", "v2")
    assert coalition_loss == STAKE - REWARD
    assert coalition_loss == loss_with_accomplice(STAKE, TEST.slash_reward_bps)
    # The same figure the economics report prices a caught cheat at.
    priced = assess(8, 1, 8, 1, STAKE, 1_000, 0.0, reward_bps=TEST.slash_reward_bps)
    assert priced.loss_with_accomplice == coalition_loss
    assert job(h, job_id).status is JobStatus.SLASHED


def test_more_sybil_challengers_only_split_the_same_reward() -> None:
    h = funded_harness()
    burned = h.state.get_supply().burned
    job_id, accomplice_id = accomplice_challenges(h, "v2")
    h.advance(1)
    for verifier in ("v1", "v3"):
        challenge(h, verifier, job_id)

    receipt = play(
        h, accomplice_id, SOLVER_RUN, HONEST_RUN, names=("solver", "v2"), blocks_per_move=0
    )

    share = REWARD // 3  # the rounding remainder is burned, never paid
    rewards = receipt.event("slashed").data["rewards"]
    assert rewards == {h.address(v): share for v in ("v2", "v1", "v3")}
    assert sum(rewards.values()) <= REWARD
    assert h.state.get_supply().burned == burned + STAKE - 3 * share


def test_a_challenger_that_already_lost_shares_nothing() -> None:
    h = funded_harness()
    job_id, accomplice_id = accomplice_challenges(h, "v2")
    h.advance(1)
    false_id = challenge(h, "v3", job_id)
    honest_id = challenge(h, "v1", job_id)
    # v3 wrongly blames step 3; its game ends first and it loses its bond to the solver.
    wrong = make_run(cheat_step=3)
    play(h, false_id, SOLVER_RUN, wrong, names=("solver", "v3"), blocks_per_move=0)
    assert h.state.get_dispute(false_id).status is DisputeStatus.SOLVER_WON

    receipt = play(h, honest_id, SOLVER_RUN, HONEST_RUN, names=("solver", "v1"), blocks_per_move=0)

    share = REWARD // 2
    assert receipt.event("slashed").data["rewards"] == {
        h.address("v2"): share,
        h.address("v1"): share,
    }
    assert h.state.get_dispute(accomplice_id).status is DisputeStatus.VOID


def test_in_process_the_accomplice_and_the_honest_verifier_share_the_reward() -> None:
    result = scenarios.run_scenario(scenarios.accomplice_challenger(step=13))

    assert result.passed, result.mismatches
    outcome = result.first
    share = REWARD // 2
    assert outcome.slash_rewards == {"verifier": share, "accomplice": share}
    assert (outcome.slashed, outcome.slash_reward) == (STAKE, 2 * share)
