"""Chain parameters: the numbers that differ between a unit test and a testnet.

Like consensus-specs' presets, the values live in named bundles (``PRESETS``); the rules read
them from the ``Params`` passed to ``apply_transaction``. All amounts are integer tokens, all
durations are in blocks, all shares are basis points (1/10_000).

Deadline conventions (everywhere): an action "until D" is allowed while ``height <= D``; an
action "after D" (closing, claiming a timeout, settling) is allowed once ``height > D``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final

BPS: Final = 10_000
"""Basis points in one whole."""


@dataclass(frozen=True)
class Params:
    # --- tokens -----------------------------------------------------------------------------
    faucet_enabled: bool
    """Dev chains only: ``faucet`` mints tokens. Off in every preset a real network would use
    (a faucet funds any number of sybil stakes); a ``--dev`` node turns it on."""
    faucet_max: int
    """The faucet tops an account's balance up to at most this much."""

    # --- staking ----------------------------------------------------------------------------
    min_solver_stake: int
    """Floor for a job's ``min_stake`` (the stake a solver locks and can lose)."""
    min_verifier_stake: int
    """Free stake a verifier needs to attest or challenge."""
    unbonding_delay: int
    """Blocks between ``unstake`` and the stake becoming withdrawable."""
    max_unbonding_entries: int

    # --- jobs -------------------------------------------------------------------------------
    max_bid_blocks: int
    max_train_blocks: int
    max_sample_count: int
    max_bids_per_job: int
    """Bids a job holds at once; a better-scored bid displaces the worst when it is full."""
    max_leaves: int
    """Most checkpoints (leaves) a job may commit: bounds the leaves a verifier fetches and
    the depth of a dispute."""
    max_dataset_values: int
    """Largest dataset (features x examples) ``post_job`` builds to check a spec's dataset hash:
    bounds the time every node spends on that check."""
    max_verification_work: int
    """Most work units (``protocol.layout.step_work``) one verifier's sample may take to
    re-execute (``sample_count`` segments of ``protocol.layout.segment_work``): a job whose
    sample a verifier cannot check within the challenge window would settle unchecked, and one
    such job could keep every verifier busy while others settle unchecked too."""
    max_segment_work: int
    """Most work units of one segment: in a dispute each party re-executes part of
    the disputed segment for a move, and a move must fit in ``move_timeout`` blocks."""
    challenge_window: int
    """Blocks after the final commit during which verifiers attest or challenge (>= 2: the
    sample seed is the beacon output of block final_height + 1, known from height
    final_height + 2)."""

    # --- disputes ---------------------------------------------------------------------------
    challenge_bond: int
    move_timeout: int
    """Blocks each dispute move may take; the party that misses it loses."""
    slash_reward_bps: int
    """Share of a slashed stake (or forfeited bond) paid to the winners, shared equally by the
    challengers of every dispute open when the solver loses (``contracts_sim.dispute``); the
    rest is burned. A cheater's accomplice may collect all of it, so deterrence prices a caught
    cheater's loss as the stake less this share (``protocol.economics.loss_with_accomplice``)."""
    max_blob_bytes: int
    """Largest pre-state blob accepted in ``post_prestate`` (and, with operator disputes, the
    most bytes of chunks one ``post_pieces`` may carry)."""

    # --- forced errors (protocol.forced_errors) ---------------------------------------------
    forced_error_bps: int
    """Chance, per segment, that the assigned solver must plant a forced error there; 0 turns
    forced errors, attestation bonds and audits off."""
    attest_bond_margin_bps: int
    """The attestation bond is this multiple (bps) of the smallest bond that makes a lazy
    attester's expected profit negative on the job (``protocol.forced_errors.lazy_attest_bond``)."""
    audit_window: int
    """Blocks after the challenge window in which the solver may audit attesters of its forced
    errors; settlement waits for it on a job with forced errors."""

    # --- bid scoring (see scoring.py) ------------------------------------------------------
    score_weight_price: int
    score_weight_stake: int
    score_weight_capacity: int
    score_weight_history: int
    stake_score_cap: int
    """Stake counts up to ``stake_score_cap`` times the job's ``min_stake``."""
    capacity_headroom_bps: int
    """Declared capacity earns full marks at this multiple (bps) of what the deadline needs."""
    slash_history_weight: int
    """In the history score one slashed job counts as this many failures."""

    # --- operator disputes (contracts_sim.operator_dispute) ---------------------------------
    operator_disputes: bool = False
    """Once bisection reaches one step, play on to one operator of it and one element of that
    operator's output (``contracts_sim.operator_dispute``) instead of re-executing the whole
    step from a posted pre-state. Not with forced errors yet: their trap reveal and audits
    still judge a whole step."""
    max_state_bytes: int = 128 << 20
    """With operator disputes, the largest state (``protocol.layout.state_blob_size``) a job
    may have: the ledger still hashes a whole state inside a transaction, the initial one
    (``referee.initial_state_hash``, at ``commit_final`` and for a dispute of leaf 0), and
    that work must stay bounded. Without them ``max_blob_bytes`` bounds the state."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise ValueError(f"Params.{f.name} must be a bool")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Params.{f.name} must be a non-negative int, got {value!r}")
        weights = (
            self.score_weight_price
            + self.score_weight_stake
            + self.score_weight_capacity
            + self.score_weight_history
        )
        checks = [
            (weights == BPS, f"score weights must sum to {BPS}, got {weights}"),
            (self.slash_reward_bps <= BPS, "slash_reward_bps must be at most 10000"),
            (self.forced_error_bps <= BPS // 2, "forced_error_bps must be at most 5000"),
            (
                not self.forced_error_bps or self.attest_bond_margin_bps > BPS,
                "attest_bond_margin_bps must exceed 10000 (a lazy attester must lose)",
            ),
            (
                not self.forced_error_bps or self.audit_window >= self.move_timeout,
                "audit_window must be at least move_timeout while forced errors are on",
            ),
            (
                not (self.operator_disputes and self.forced_error_bps),
                "operator_disputes needs forced_error_bps 0 (traps are judged per whole step)",
            ),
            (self.challenge_window >= 2, "challenge_window must be >= 2"),
            (self.move_timeout >= 1, "move_timeout must be >= 1"),
            (self.max_bid_blocks >= 1, "max_bid_blocks must be >= 1"),
            (self.max_train_blocks >= 1, "max_train_blocks must be >= 1"),
            (self.max_sample_count >= 1, "max_sample_count must be >= 1"),
            (self.max_bids_per_job >= 1, "max_bids_per_job must be >= 1"),
            (self.max_leaves >= 2, "max_leaves must be >= 2"),
            (self.max_unbonding_entries >= 1, "max_unbonding_entries must be >= 1"),
            (self.stake_score_cap >= 1, "stake_score_cap must be >= 1"),
            (self.capacity_headroom_bps >= BPS, "capacity_headroom_bps must be >= 10000"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Params:
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f"Params needs exactly the keys {sorted(names)}")
        return cls(**data)

    def with_changes(self, **changes: Any) -> Params:
        return replace(self, **changes)


TEST: Final = Params(
    faucet_enabled=True,
    faucet_max=1_000_000,
    min_solver_stake=100,
    min_verifier_stake=50,
    unbonding_delay=3,
    max_unbonding_entries=4,
    max_bid_blocks=16,
    max_train_blocks=64,
    max_sample_count=8,
    max_bids_per_job=8,
    max_leaves=1_024,
    max_dataset_values=1 << 17,
    max_verification_work=1 << 33,
    max_segment_work=1 << 31,
    challenge_window=4,
    challenge_bond=40,
    move_timeout=2,
    slash_reward_bps=5_000,
    max_blob_bytes=1 << 20,
    forced_error_bps=0,
    attest_bond_margin_bps=15_000,
    audit_window=4,
    score_weight_price=5_000,
    score_weight_stake=2_000,
    score_weight_capacity=1_000,
    score_weight_history=2_000,
    stake_score_cap=4,
    capacity_headroom_bps=20_000,
    slash_history_weight=3,
)
"""Tiny windows (a few blocks) so unit tests walk whole lifecycles quickly."""

TESTNET: Final = Params(
    faucet_enabled=False,
    faucet_max=10**12,
    min_solver_stake=10**6,
    min_verifier_stake=10**5,
    unbonding_delay=100,
    max_unbonding_entries=16,
    max_bid_blocks=200,
    max_train_blocks=100_000,
    max_sample_count=64,
    max_bids_per_job=64,
    max_leaves=65_536,
    max_dataset_values=1 << 17,
    # Work units (protocol.layout.step_work, about 0.06 ns each on one core of the development
    # machine; bench/bench_cost.py): about 8 s of exact CPU work, inside the 30-block window at
    # the local testnet's 0.5 s blocks.
    max_verification_work=1 << 37,
    # About 2 s of exact CPU work: under half of a 10-block move at 0.5 s blocks.
    max_segment_work=1 << 35,
    challenge_window=30,
    challenge_bond=10**5,
    move_timeout=10,
    # A quarter, not a half: an accomplice challenger may collect the whole reward, so a caught
    # cheater loses at least 3/4 of its stake. With the example terms (stake 1.5 × payment)
    # that is 1.125 × payment, more than a solver that does no work saves; at half it would be
    # 0.75 × payment and not training at all would pay (tests/services/sim/test_economics.py).
    slash_reward_bps=2_500,
    max_blob_bytes=64 << 20,
    # One segment in ten is a forced error: with the example's three samples a lazy attester
    # has vouched for one on 27 % of jobs, and the bond (1.5 x what deters) makes that cost
    # more than the fee it earns on the rest (proofnet economics examples/digits-mlp.yaml).
    forced_error_bps=1_000,
    attest_bond_margin_bps=15_000,
    audit_window=10,
    # Chosen with the market simulation (docs/market.md; `proofnet market grid --seeds 8
    # --min-price-weight 5000`): the best-ranked weights with price at least half, checked on 20
    # fresh seeds against the former 5000/2000/1000/2000 (completion 50.7 -> 57.4 %, deadline
    # misses 70 -> 48 a seed, the same price per step).
    score_weight_price=6_000,
    score_weight_stake=3_000,
    score_weight_capacity=1_000,
    score_weight_history=0,
    stake_score_cap=4,
    capacity_headroom_bps=20_000,
    slash_history_weight=3,
)
"""A local multi-process testnet: windows long enough for real agents over HTTP. No faucet:
``with_dev_rules`` turns it on for a ``--dev`` node."""

TESTNET_OPERATOR: Final = TESTNET.with_changes(
    operator_disputes=True,
    forced_error_bps=0,
    # referee.initial_state_hash took 0.52 s for a 69.6 MB state, 0.84 s for 138.8 MB and
    # 2.53 s for 273.4 MB (MLPs, one run each on the shared 2-core development machine,
    # /tmp/opfixes_init_time.py): 128 MiB keeps it under a second, within max_segment_work's
    # 2 s and well inside a 10-block move.
    max_state_bytes=128 << 20,
    # A move in the operator game may run the disputed step as its trace (about 3x the step,
    # plus hashing every output: several seconds for a 128 MiB state on a loaded core), so
    # each party gets 30 blocks (15 s at the local testnet's 0.5 s blocks), not 10.
    move_timeout=30,
)
"""The testnet with operator-level disputes (docs/protocol.md, "Operator-level disputes"): a
disputed step is settled at one element of one operator, so a model of any size can be
defended; forced errors are off, because a trap reveal and an audit still judge a whole step."""

DEMO: Final = TESTNET.with_changes(
    # ``proofnet demo`` runs 0.25 s blocks: a 5 s challenge window (the testnet's 15 s at
    # 0.5 s blocks: two verifiers check three jobs each in it, on a shared 2-core machine;
    # 3 s was missed under load), 3 s a move (5 s) and 3 s of audits (5 s). A job settles
    # challenge_window + move_timeout + audit_window blocks after its final commit.
    challenge_window=20,
    move_timeout=12,
    audit_window=12,
    # The work limits shrink with the windows (a sixth of a move, two fifths of the window):
    # the example jobs need far less.
    max_segment_work=1 << 33,
    max_verification_work=1 << 35,
)
"""The testnet with short windows, for ``proofnet demo`` (the same rules; a run takes
seconds, not minutes)."""

PRESETS: Final[dict[str, Params]] = {
    "test": TEST,
    "testnet": TESTNET,
    "testnet-operator": TESTNET_OPERATOR,
    "demo": DEMO,
}


def with_dev_rules(params: Params) -> Params:
    """``params`` as a dev node runs them: the faucet on, so a local chain funds its agents.

    Only a node started with ``--dev`` (no authentication, loopback only) applies this; the
    presets themselves keep the faucet off wherever strangers hold keys.
    """
    return params.with_changes(faucet_enabled=True)


def get_preset(name: str) -> Params:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown params preset {name!r} (known: {sorted(PRESETS)})") from None
