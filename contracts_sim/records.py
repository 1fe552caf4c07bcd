"""The records the ledger stores: frozen dataclasses, one table each (see ``state.py``).

Glossary
    free stake     ``Account.bonded``: staked and available (to bid, to verify, to unstake);
                   a bid on an open job reserves its ``min_stake`` (``staking.reserved_stake``).
    locked stake   ``Account.locked``: stake bound to assigned jobs (``Job.locked_stake`` each);
                   slashed if the solver loses, released to free stake at settlement.
    unbonding      stake on its way out: released to the balance at ``release_height``.
    escrow         ``Job.escrow``: the submitter's payment + verification fee held by a job.
    bond           ``Dispute.bond``: the challenger's deposit (the solver's, in an audit), held
                   while the dispute is open.
    attest bond    ``Job.attest_bond``: what an attestation locks while forced errors are on,
                   held by the job for each of its ``bonded_attesters`` until settlement.

Records are immutable; a change is ``dataclasses.replace`` plus ``LedgerState.put``, so every
write goes through the state's journal. Status-like fields are ``StrEnum``\\s (they serialise as
their string values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from protocol.types import Address, Amount, Hash32, Height

ZERO: Final = Amount(0)


class JobStatus(StrEnum):
    OPEN = "open"  # bidding; cancellable while it has no bids
    ASSIGNED = "assigned"  # a solver is training; progress and final commits
    COMMITTED = "committed"  # final commitment posted; attestations and challenges
    SETTLED = "settled"  # solver paid, fee shared (terminal)
    SLASHED = "slashed"  # solver lost a dispute or missed its deadline (terminal)
    EXPIRED = "expired"  # bidding closed without an eligible bid (terminal)
    CANCELLED = "cancelled"  # withdrawn by the submitter (terminal)

    @property
    def is_terminal(self) -> bool:
        """The job is closed: nothing in escrow or locked, no transaction changes it again."""
        return self in _TERMINAL_JOB_STATUSES


class DisputeStatus(StrEnum):
    OPEN = "open"
    SOLVER_WON = "solver_won"  # the challenger's bond was forfeited
    CHALLENGER_WON = "challenger_won"  # the solver was slashed
    VOID = "void"  # closed because the solver lost another dispute; bond returned
    DATA_PUBLISHED = "data_published"  # a data request answered on chain; bond returned
    FORCED_ERROR = "forced_error"  # the disputed step is the solver's forced error; bond returned
    ATTESTER_LOST = "attester_lost"  # an audit: the attester's bond was forfeited
    AUDITOR_LOST = "auditor_lost"  # an audit: the solver's audit bond was forfeited

    @property
    def is_open(self) -> bool:
        """The game is still being played (every other status is final)."""
        return self is DisputeStatus.OPEN


_TERMINAL_JOB_STATUSES: Final = frozenset(
    {JobStatus.SETTLED, JobStatus.SLASHED, JobStatus.EXPIRED, JobStatus.CANCELLED}
)


class Party(StrEnum):
    SOLVER = "solver"
    CHALLENGER = "challenger"
    NOBODY = "nobody"


class Phase(StrEnum):
    """Where a dispute stands; each phase names the move that is expected next."""

    REVEAL_CHILDREN = "reveal_children"  # descent: solver reveals the node's two children
    CHOOSE_CHILD = "choose_child"  # descent: challenger names the child it disputes
    REVEAL_LEAF = "reveal_leaf"  # solver opens the disputed leaf (and the agreed one before it)
    POST_MIDPOINT = "post_midpoint"  # bisection: solver posts the state hash at the midpoint
    RESPOND_MIDPOINT = "respond_midpoint"  # bisection: challenger agrees or disagrees
    POST_PRESTATE = "post_prestate"  # one step left: the pre-state blob, then the referee
    PUBLISH_DATA = "publish_data"  # a data request: the solver publishes the requested blob
    UNSEAL = "unseal"  # a sealed challenge (job with forced errors): the challenger names its
    # segment once the challenge window has closed
    REVEAL_TRAP = "reveal_trap"  # the referee disagreed at a segment's last step: the solver
    # may show it is a forced error (after the challenge window)
    COMMIT_TRACE = "commit_trace"  # operator disputes: the solver commits step a's trace
    REVEAL_OP = "reveal_op"  # the trace descent ended at op k: the solver opens its entry
    PROVE_OVERFLOW = "prove_overflow"  # entry k is an overflow: the solver shows why
    REVEAL_CHUNK = "reveal_chunk"  # the chunk descent ended: the solver posts the chunk
    NAME_ELEMENT = "name_element"  # the challenger names the element it disputes (or shows
    # that op k overflows)
    POST_PIECES = "post_pieces"  # the solver posts the inputs the element reads, proved
    RESOLVED = "resolved"


class Resolution(StrEnum):
    """What decided a closed dispute (``Dispute.resolution``) or a slashed job (the
    ``slashed`` event's ``resolution``); ``Dispute.status`` and ``winner`` say who it went to.
    ``reason`` stays the human-readable account; this is what programs read."""

    NONE = ""  # the dispute is still open
    ONE_STEP = "one_step"  # the referee re-executed the one disputed step and compared
    LEAF_ZERO = "leaf_zero"  # the descent reached leaf 0: the initial state, recomputed
    INVALID_PRESTATE = "invalid_prestate"  # the agreed pre-state is not a state of the spec
    FORCED_ERROR = "forced_error"  # the disputed step is the solver's forced error
    NOT_FORCED_ERROR = "not_forced_error"  # a revealed forced error does not explain the step
    EMPTY_SEAL = "empty_seal"  # a sealed challenge opened empty: nothing was disputed
    DATA_PUBLISHED = "data_published"  # the solver published the requested blob
    VOID = "void"  # the solver lost another dispute on the job
    OPERATOR_CHECK = "operator_check"  # the referee recomputed one element of one operator
    OVERFLOW_EVIDENCE = "overflow_evidence"  # shown (or refuted) overflow of an operator
    AUDIT_FORCED_ERROR = "audit_forced_error"  # an audit's step is (or is not) the planted error
    TRAINING_TIMEOUT = "timeout_training"  # a job: the solver missed its training deadline
    TIMEOUT_REVEAL_CHILDREN = "timeout_reveal_children"
    TIMEOUT_CHOOSE_CHILD = "timeout_choose_child"
    TIMEOUT_REVEAL_LEAF = "timeout_reveal_leaf"
    TIMEOUT_POST_MIDPOINT = "timeout_post_midpoint"
    TIMEOUT_RESPOND_MIDPOINT = "timeout_respond_midpoint"
    TIMEOUT_POST_PRESTATE = "timeout_post_prestate"
    TIMEOUT_PUBLISH_DATA = "timeout_publish_data"
    TIMEOUT_UNSEAL = "timeout_unseal"
    TIMEOUT_REVEAL_TRAP = "timeout_reveal_trap"
    TIMEOUT_COMMIT_TRACE = "timeout_commit_trace"
    TIMEOUT_REVEAL_OP = "timeout_reveal_op"
    TIMEOUT_PROVE_OVERFLOW = "timeout_prove_overflow"
    TIMEOUT_REVEAL_CHUNK = "timeout_reveal_chunk"
    TIMEOUT_NAME_ELEMENT = "timeout_name_element"
    TIMEOUT_POST_PIECES = "timeout_post_pieces"

    @classmethod
    def timeout(cls, phase: Phase) -> Resolution:
        """The party to move in ``phase`` let its deadline pass."""
        return cls(f"timeout_{phase.value}")

    @property
    def timed_out_phase(self) -> Phase | None:
        """The phase whose deadline passed, for a ``timeout_<phase>`` resolution."""
        prefix = "timeout_"
        if not self.value.startswith(prefix) or self is Resolution.TRAINING_TIMEOUT:
            return None
        return Phase(self.value.removeprefix(prefix))


@dataclass(frozen=True)
class UnbondingEntry:
    amount: Amount
    release_height: Height


@dataclass(frozen=True)
class Account:
    balance: Amount = ZERO
    nonce: int = 0
    bonded: Amount = ZERO
    locked: Amount = ZERO
    unbonding: tuple[UnbondingEntry, ...] = ()
    jobs_completed: int = 0
    jobs_slashed: int = 0
    endpoint: str = ""  # where the account serves data (set_endpoint); "" if none

    @property
    def total_stake(self) -> int:
        return self.bonded + self.locked + sum(e.amount for e in self.unbonding)


@dataclass(frozen=True)
class Supply:
    """Token supply counters: genesis + minted = everything that exists or was burned."""

    genesis: Amount = ZERO
    minted: Amount = ZERO
    burned: Amount = ZERO


@dataclass(frozen=True)
class Bid:
    solver: Address
    price: Amount
    capacity: int  # training steps per block the solver declares
    height: Height  # when the bid (or its latest replacement) was placed
    trap_root: Hash32 | None = None  # commits to the solver's forced-error secrets


@dataclass(frozen=True)
class Job:
    job_id: str
    submitter: Address
    spec: dict[str, Any]  # the normalised spec (JobSpec.to_dict())
    spec_hash: Hash32
    payment: Amount
    verification_fee: Amount
    min_stake: Amount
    sample_count: int
    bid_blocks: int
    train_blocks: int
    num_leaves: int
    posted_height: Height
    bid_deadline: Height  # bids while height <= bid_deadline; close_bidding after
    status: JobStatus
    escrow: Amount  # payment + fee at posting; price + fee once assigned; 0 when closed
    bids: tuple[Bid, ...] = ()
    solver: Address | None = None
    price: Amount = ZERO
    score: int = 0
    locked_stake: Amount = ZERO
    assigned_height: Height | None = None
    train_deadline: Height | None = None  # commits while height <= train_deadline
    progress_size: int = 0
    progress_root: Hash32 | None = None
    final_root: Hash32 | None = None
    final_state_hash: Hash32 | None = None
    final_height: Height | None = None
    challenge_deadline: Height | None = None  # attest/challenge while height <= it
    attesters: tuple[Address, ...] = ()
    challengers: tuple[Address, ...] = ()
    disputes: tuple[str, ...] = ()
    open_disputes: int = 0
    closed_height: Height | None = None
    trap_root: Hash32 | None = None  # the assigned bid's commitment to its forced errors
    attest_bond: Amount = ZERO  # what each attestation locks (protocol.forced_errors)
    bonded_attesters: tuple[Address, ...] = ()  # attesters whose bond the job holds
    audited: tuple[Address, ...] = ()  # attesters the solver has audited (once each)

    @property
    def held_attest_bonds(self) -> int:
        return self.attest_bond * len(self.bonded_attesters)


@dataclass(frozen=True)
class DisputeMove:
    kind: str  # the transaction kind (challenge, reveal_children, ..., claim_timeout)
    party: Party
    sender: Address
    height: Height
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OperatorGame:
    """The operator-level part of a dispute (``contracts_sim.operator_dispute``), from the
    solver's ``commit_trace`` of the one disputed step ``step_lo`` on.

    ``tree`` says which tree ``Dispute``'s descent fields walk: ``trace`` (leaves: the step's
    operator outputs) or ``chunks`` (leaves: the chunks of op ``op_index``'s output).
    ``pre_roots`` are the data roots of the agreed pre-state's tensors in the state tree's
    order (by name), proved against ``hash_lo`` when the trace was committed."""

    trace_root: Hash32
    trace_size: int
    overflow: bool  # the solver's claim: the step overflowed (its post-state is the skip)
    pre_roots: tuple[Hash32, ...]
    tree: str = "trace"
    op_index: int | None = None
    op_label: str = ""
    output_root: Hash32 | None = None  # op k's output data root, once revealed
    chunk_index: int | None = None
    chunk: bytes | None = None  # the revealed chunk of op k's output
    element: int | None = None  # the disputed element's flat index in op k's output
    located_op: int | None = None  # op k, once an operator-level verdict is made


@dataclass(frozen=True)
class Dispute:
    """One refereed bisection game between a job's solver and one challenger
    (docs/protocol.md, "The dispute game").

    Descent fields (``node_*``, ``left_hash``/``right_hash``) describe the Merkle node under
    dispute; ``leaf_index`` is the disputed leaf d once the descent ends; ``step_lo``/``step_hi``
    and ``hash_lo``/``hash_hi`` are the bisection interval [a, b] with the agreed state hash at a
    and the disputed one at b. Every hash in the game was authored by the solver; the challenger
    only chooses and agrees or disagrees.
    """

    dispute_id: str
    job_id: str
    solver: Address
    challenger: Address
    bond: Amount
    opened_height: Height
    status: DisputeStatus
    phase: Phase
    turn: Party
    deadline: Height  # the party to move must move while height <= deadline
    node_lo: int | None = None
    node_hi: int | None = None
    node_hash: Hash32 | None = None
    left_hash: Hash32 | None = None
    right_hash: Hash32 | None = None
    leaf_index: int | None = None
    step_lo: int | None = None
    step_hi: int | None = None
    hash_lo: Hash32 | None = None
    hash_hi: Hash32 | None = None
    midpoint_hash: Hash32 | None = None
    located_step: int | None = None
    winner: Party = Party.NOBODY
    reason: str = ""
    resolution: Resolution = Resolution.NONE
    """What decided the game once closed (``reason`` is its human-readable account)."""
    closed_height: Height | None = None
    moves: tuple[DisputeMove, ...] = ()
    audit: bool = False
    """Opened by the solver against an attester whose sample held one of its forced errors
    (``trap_segment``): the ``challenger`` field names the audited attester and ``bond`` is
    the solver's audit bond (``contracts_sim.forced_errors``)."""
    trap_segment: int | None = None
    trap_selector: int | None = None
    sealed: Hash32 | None = None
    """A challenge of a job with forced errors: the commitment to its segment
    (``protocol.forced_errors.seal``) until the challenger opens it after the window."""
    data_request: bool = False
    """Opened by a verifier that could not get the blob of leaf ``leaf_index`` (a segment of its
    sample): the solver must publish it on chain (``publish_data``) or lose; publishing ends
    the game with nobody at fault (``DATA_PUBLISHED``) and records the segment's two leaves in
    ``hash_lo`` and ``hash_hi``."""
    operator: OperatorGame | None = None
    """With ``Params.operator_disputes``: the operator-level game of the one disputed step
    (``contracts_sim.operator_dispute``); None before it starts and whenever the flag is off."""
