"""sample-grinding: a solver cheats on one segment, then grinds the block after its commitment.

The block after ``commit_final`` (height ``final_height + 1``) provides the randomness of the
verifiers' samples. A grinding solver puts its own transaction in that block, in whichever of
``VARIANTS`` versions (transfers of different amounts) makes its verifier's sample miss the
cheated segment.

* On the old rule — the seed was the hash of that block, which commits to its transactions — the
  grinder predicts the seed of every variant exactly and picks one that dodges: it escapes in
  every trial, where without grinding it is caught with P = 1 − C(m − c, k) / C(m, k).
* On the beacon (``contracts_sim.beacon``: the producer's unique signature over chain id and
  height), the seed the ledger uses is the same whatever the block holds, so every variant gives
  the same sample and the verifier catches the grinder at the no-grinding rate: the count of
  detected trials lies in the exact 99 % region of that P (``services.sim.detection``).

m = 8 segments (the tiny spec's 9 leaves), c = 1 cheated, k = 2 sampled, one verifier: P = 1/4.
A trial counts as detected when the cheated segment is in the verifier's sample: that is what an
honest verifier re-executes, and ``test_attack_adaptive_statistics`` shows every sampled cheated
segment ends in a slash.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from contracts_sim.beacon import beacon_output
from contracts_sim.fork import apply_transaction, begin_block
from contracts_sim.jobs import get_sample_seed, get_verifier_sample
from contracts_sim.state import LedgerState
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import TransferBody
from protocol.economics import exact_detection
from protocol.hashing import sha256
from protocol.sampling import compute_sample
from protocol.types import Amount, Hash32, Height
from services.sim.detection import binomial_acceptance
from tests.ledger_helpers import (
    JOB_TERMS,
    NUM_LEAVES,
    committed_job,
    fake_leaves,
    funded_harness,
    job,
)

pytestmark = pytest.mark.adversarial

TRIALS = 120
VARIANTS = 8  # P(no variant dodges the old seed) = (1/4)^8 per trial
SEGMENTS = NUM_LEAVES - 1
SAMPLE_COUNT = JOB_TERMS["sample_count"]


@dataclass(frozen=True)
class Variant:
    """What one version of the grinder's transaction in the seed block leads to."""

    old_seed: Hash32  # the hash of the seed block holding it: the old rule's seed
    old_sample: tuple[int, ...]  # the sample the old rule would have given
    seed: Hash32  # the seed the ledger uses (the beacon output of the seed block)


@dataclass(frozen=True)
class Trial:
    cheated: int
    variants: tuple[Variant, ...]
    chosen: int  # the variant the grinder put in the block
    old_seed_on_chain: Hash32  # the seed block's hash after the chosen variant went in
    sample: tuple[int, ...]  # the verifier's sample, as the ledger gives it

    @property
    def old_rule_dodged(self) -> bool:
        return self.cheated not in self.variants[self.chosen].old_sample

    @property
    def detected(self) -> bool:
        return self.cheated in self.sample


def grind_variant(h: LedgerHarness, job_id: str, amount: int) -> tuple[Variant, LedgerState]:
    """Apply the grinder's transfer of ``amount`` to a copy of the seed block, and read the
    seeds the old and the new rule would take from that block."""
    seed_height = h.height
    copy = h.state.copy()
    tx = h.sign("solver", TransferBody(h.address("outsider"), Amount(amount)))
    apply_transaction(copy, tx, h.env, h.params)
    old_seed = h.block_hash(seed_height, copy)
    root = job(h, job_id).final_root
    assert root is not None
    old_sample = compute_sample(root, old_seed, h.address("v1"), SEGMENTS, SAMPLE_COUNT)
    # Seal the seed block on the copy, as the harness would, and ask the ledger for the seed.
    next_env = type(h.env)(Height(seed_height + 1), h.env.time + 6, h.chain_id)
    begin_block(copy, next_env, old_seed, beacon_output(h.beacon(seed_height)))
    seed = get_sample_seed(copy, copy.get_job(job_id))
    return Variant(old_seed, tuple(old_sample), seed), copy


def play_trial(trial: int) -> Trial:
    h = funded_harness(chain_id=f"proofnet-grind-{trial}")
    leaves = fake_leaves(salt=f"grind/{trial}")
    cheated = sha256(f"grind/cheated/{trial}".encode())[0] % SEGMENTS
    job_id, _ = committed_job(h, leaves=leaves)
    h.advance()  # the seed block: final_height + 1
    assert h.height == job(h, job_id).final_height + 1  # type: ignore[operator]
    variants = tuple(grind_variant(h, job_id, amount)[0] for amount in range(1, VARIANTS + 1))
    dodging = [i for i, v in enumerate(variants) if cheated not in v.old_sample]
    chosen = dodging[0] if dodging else 0
    h.send("solver", TransferBody(h.address("outsider"), Amount(chosen + 1)))
    h.advance()  # the seed block is sealed: the seed is on the ledger from here on
    sample = tuple(get_verifier_sample(h.state, job_id, h.address("v1")))
    old_on_chain = h.state.get_block_hash(Height(h.height - 1))
    assert old_on_chain is not None
    return Trial(cheated, variants, chosen, old_on_chain, sample)


@pytest.fixture(scope="module")
def trials() -> list[Trial]:
    return [play_trial(t) for t in range(TRIALS)]


def test_the_old_seed_could_be_predicted_and_steered(trials: list[Trial]) -> None:
    """Documents the attack: the block hash the old rule used is exactly what the grinder
    computed for its chosen variant, and some variant dodged the cheated segment every time."""
    for trial in trials:
        assert trial.old_seed_on_chain == trial.variants[trial.chosen].old_seed
        assert len({v.old_seed for v in trial.variants}) == VARIANTS  # each variant steers it
    assert all(trial.old_rule_dodged for trial in trials)  # every one dodged


def test_the_seed_is_the_same_whatever_the_seed_block_holds(trials: list[Trial]) -> None:
    for trial in trials:
        assert len({v.seed for v in trial.variants}) == 1, "a transaction changed the seed"
    assert len({trial.variants[0].seed for trial in trials}) == TRIALS  # but differs per chain


def test_grinding_leaves_the_detection_rate_at_the_no_grinding_rate(
    trials: list[Trial],
) -> None:
    p = exact_detection(SEGMENTS, 1, SAMPLE_COUNT, 1)
    assert p == pytest.approx(1 - 21 / 28)
    detected = sum(trial.detected for trial in trials)
    lo, hi = binomial_acceptance(TRIALS, float(p))
    assert lo <= detected <= hi, (detected, (lo, hi), float(p))
