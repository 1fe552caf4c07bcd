"""Challenges and the refereed bisection game (docs/protocol.md, "The dispute game").

Glossary
    solver       the job's assigned solver; it authored every hash the game talks about.
    challenger   a staked verifier that posted ``params.challenge_bond`` to open the dispute.
    node         a Merkle node ``[lo, hi)`` of the final commitment (``protocol.merkle``).
    leaf d       the first disputed leaf; leaf d - 1 is agreed (leaf 0 is checked from the spec).
    [a, b]       the step interval still disputed: the state hash at a is agreed (``hash_lo``),
                 the one at b is disputed (``hash_hi``); it starts as [(d-1)·C, d·C].
    one step     b - a == 1: the referee runs step a from the agreed pre-state and compares.

The game is a transition table, ``contracts_sim.moves.MOVES``: each move is legal in the
phases it names, by the party whose turn it is there (``TURN``) unless the row says otherwise,
and may lead only to the row's next phases. A move in another phase raises ``WrongPhaseError``,
by another party ``NotYourTurnError``, after ``deadline`` ``DeadlinePassedError`` — and changes
nothing. Every phase change passes ``moves.require_transition``: one the table does not list is
a bug (``InvariantViolation``). The trajectory descent (``reveal_children``/``choose_child``/
``reveal_leaf``) narrows the dispute to one segment, bisection (``post_midpoint``/
``respond_midpoint``) to one step, and ``post_prestate`` hands that step to the referee.

With ``Params.operator_disputes`` the one-step phase is ``commit_trace`` instead of
``post_prestate``, and the game plays on inside the step, to one operator and one element of
its output; the descent phases are reused over the trace and over the output's chunks
(``contracts_sim.operator_dispute`` has the rules and why).

On a job with forced errors every challenge is *sealed* (it opens in ``unseal`` and names its
segment only after the window: ``contracts_sim.forced_errors``), and ``reveal_trap`` is entered
when the referee disagrees with the solver at the last step of a segment: the solver may show
that step is one of its forced errors (not before the challenge window closes). An *audit* (the
solver against an attester of a forced error, opened by ``audit`` after the window) is played
with the same bisection phases, the attester in the challenger's seat; its verdict and payouts
are ``contracts_sim.forced_errors.judge_audit_step`` and ``resolve_audit``.

A *data request* (``challenge {job_id, segment, withheld: true}``) is the answer to a solver
that does not serve a verifier the data of a segment in its sample. It is not a claim of fraud:
it posts no bond (data that exists can always be published) and opens in ``publish_data`` with
the solver to move. The solver publishes the blob of leaf ``segment`` with both of the
segment's leaves proved against its root: the game ends ``data_published``, nobody is at
fault, and the job's challenge window reopens for one window, so that verifiers re-execute the
segment from what is on chain (and challenge it on the fast path if it is wrong). A solver that
cannot publish — the leaf was fabricated, or the data is gone — misses the deadline and loses
like any party that stops answering. Data availability is the author's burden: a verifier that
cannot get the data never pays for it. Bounds (``_require_data_request_allowed``): a request
names a segment of the requester's own sample, at most one request per segment per job is ever
opened, only within the original window; the solver has ``move_timeout`` per open request.

Every move sets ``deadline = height + params.move_timeout``; once it passes, anyone may send
``claim_timeout {dispute_id}`` and the party whose turn it was loses (that is also how withheld
data is punished: the pre-state blob is the solver's to post, so its turn in ``post_prestate``,
and requested data is the solver's to publish, in ``publish_data``).

Why the rules are shaped this way
    * The challenger names the *leftmost* child it disagrees with. If it ever chose a right
      child it agreed with the whole left sibling, so leaf d - 1 is agreed; if it only ever
      chose left children, d == 0 and the referee recomputes the initial state.
    * Bisection midpoints are deterministic (``bisection_midpoint``), so both parties know in
      advance which state hash will be asked for.
    * The referee's verdict depends only on the pre-state blob (which must hash to the agreed
      ``hash_lo``) and the disputed ``hash_hi``: equal after one step means the challenger
      disagreed with a correct hash; different means the solver's claim was wrong. A blob that
      is not a valid state of the spec is the solver's fault (it authored ``hash_lo``).

Outcomes: solver loses → its locked stake is slashed, the winning challenger's bond returned,
the submitter refunded, the job ``slashed`` and every other open dispute on it voided with its
bond returned. The challenger reward, ``slash_reward_bps`` of the stake, is shared equally by
the challengers of every dispute open on the job at that moment, the winning one and the voided
ones (``reward_sharers``); the rest of the stake and the rounding remainder are burned.
Challenger loses → its bond is forfeited (``slash_reward_bps`` to the solver, the rest burned);
the job goes on.

Why the reward is shared (rewards never flow back to the cheater)
    A cheater may run a second, staked verifier account and challenge its own bad segment in
    the block after ``commit_final`` (the fast path needs no sample), so that its accomplice's
    game, not an honest verifier's, is the one that ends first. Whatever the coalition does:

    * it loses the whole locked stake and gets back at most the challenger reward, because
      the challengers together never receive more than ``slash_reward_bps`` of it
      (``compute_slash``). Its loss is at least ``stake × (1 − slash_reward_bps / 10000)``,
      the figure ``protocol.economics`` prices as the worst case (``loss_with_accomplice``);
    * an honest verifier whose dispute is open when the solver loses (it challenged within the
      window and its game was still being played) shares the reward equally with the
      accomplice, instead of being voided with nothing. Paying only the first game to finish
      would hand the reward to whoever controls the solver's speed: the cheater.

    Each challenger can hold one dispute per job (``AlreadyChallengedError``), so more sybil
    challengers only split the same reward more ways; they never enlarge it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from contracts_sim import referee
from contracts_sim.codec import to_json_value
from contracts_sim.env import TxContext
from contracts_sim.events import Event, make_event
from contracts_sim.exceptions import (
    DataAlreadyRequestedError,
    DeadlineNotReachedError,
    DeadlinePassedError,
    DisputeClosedError,
    HashMismatchError,
    InvalidProofError,
    MalformedBodyError,
    NotYourTurnError,
    WrongPhaseError,
    WrongStatusError,
)
from contracts_sim.jobs import (
    close_job_slashed,
    compute_slash,
    get_job_spec,
    get_verifier_sample,
    pay_slash,
    require_eligible_verifier,
    require_verdict_window,
)
from contracts_sim.moves import MOVES, TURN, expected_phases, require_transition
from contracts_sim.params import Params
from contracts_sim.records import (
    Dispute,
    DisputeMove,
    DisputeStatus,
    Job,
    Party,
    Phase,
    Resolution,
)
from contracts_sim.state import DISPUTES, LedgerState, decrease_balance, increase_balance
from contracts_sim.transactions import (
    ChallengeBody,
    ChooseChildBody,
    PostMidpointBody,
    PostPrestateBody,
    PublishDataBody,
    RespondMidpointBody,
    RevealChildrenBody,
    RevealLeafBody,
)
from protocol.errors import EncodingError, ProofError, ProofNetError
from protocol.hashing import hash_json
from protocol.merkle import (
    InclusionProof,
    NodeRef,
    children,
    hash_leaf,
    hash_node,
    is_leaf_node,
    root_node,
    verify_inclusion,
)
from protocol.state_commitment import blob_root
from protocol.types import Address, Amount, Hash32, Height

# --- pure helpers ---------------------------------------------------------------------------


def bisection_midpoint(a: int, b: int) -> int:
    """The step whose state hash the solver posts next while [a, b] is disputed.

    Needs ``0 <= a`` and ``b - a >= 2`` (an interval of one step is adjudicated, not split).
    """
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not isinstance(a, int)
        or not isinstance(b, int)
    ):
        raise ValueError(f"bisection needs integer bounds, got {a!r}, {b!r}")
    if a < 0:
        raise ValueError(f"bisection needs a >= 0, got {a}")
    if b - a < 2:
        raise ValueError(f"[{a}, {b}] has no interior step to bisect at")
    return (a + b) // 2


def compute_dispute_id(job_id: str, challenger: Address, nonce: int) -> str:
    return hash_json({"job_id": job_id, "challenger": challenger, "nonce": nonce}).hex()


def new_dispute_id(state: LedgerState, job: Job, ctx: TxContext) -> str:
    """The id of the dispute ``ctx`` opens on ``job``: unique, since the sender's nonce is in
    the preimage (checked all the same)."""
    dispute_id = compute_dispute_id(job.job_id, ctx.sender, ctx.nonce)
    if state.get(DISPUTES, dispute_id) is not None:
        raise WrongStatusError(f"dispute {dispute_id} already exists")
    return dispute_id


def register_dispute(state: LedgerState, job: Job, dispute: Dispute, **job_changes: Any) -> None:
    """Store a newly opened dispute and count it on its job (plus ``job_changes``); its opening
    move must be able to lead to its first phase (the move table)."""
    require_transition(dispute, dispute.phase)
    state.set_dispute(dispute)
    state.set_job(
        replace(
            job,
            disputes=(*job.disputes, dispute.dispute_id),
            open_disputes=job.open_disputes + 1,
            **job_changes,
        )
    )


def with_challenger(job: Job, challenger: Address) -> tuple[Address, ...]:
    """``job.challengers`` with ``challenger`` (once)."""
    return tuple(dict.fromkeys((*job.challengers, challenger)))


def segment_interval(leaf: int, checkpoint_interval: int) -> tuple[int, int]:
    """The steps [a, b] between agreed leaf ``leaf - 1`` and disputed leaf ``leaf``."""
    return (leaf - 1) * checkpoint_interval, leaf * checkpoint_interval


def phase_after_interval(a: int, b: int, operator_disputes: bool = False) -> Phase:
    """Bisect on while more than one step is disputed; at one step, the referee's phase:
    the pre-state blob, or (``Params.operator_disputes``) the step's operator trace."""
    if b - a > 1:
        return Phase.POST_MIDPOINT
    return Phase.COMMIT_TRACE if operator_disputes else Phase.POST_PRESTATE


def party_of(dispute: Dispute, address: Address) -> Party:
    if address == dispute.solver:
        return Party.SOLVER
    if address == dispute.challenger:
        return Party.CHALLENGER
    return Party.NOBODY


def _other(party: Party) -> Party:
    return Party.CHALLENGER if party == Party.SOLVER else Party.SOLVER


def _address(dispute: Dispute, party: Party) -> Address:
    return dispute.solver if party == Party.SOLVER else dispute.challenger


# --- opening a dispute ----------------------------------------------------------------------


def verify_leaf(what: str, entry: Hash32, index: int, job: Job, proof: InclusionProof) -> None:
    assert job.final_root is not None
    try:
        verify_inclusion(entry, index, job.num_leaves, job.final_root, proof)
    except ProofError as exc:
        raise InvalidProofError(what, exc.message) from exc


def process_challenge(
    state: LedgerState, ctx: TxContext, body: ChallengeBody, params: Params
) -> list[Event]:
    """A staked verifier disputes a final commitment and posts a bond."""
    job = state.get_job(body.job_id)
    require_verdict_window(job, ctx)
    if job.trap_root is not None:
        from contracts_sim.forced_errors import open_trap_job_challenge  # (imports this module)

        return open_trap_job_challenge(state, ctx, job, body, params)
    if body.sealed is not None:
        raise MalformedBodyError("sealed", "only a job with forced errors takes sealed challenges")
    require_eligible_verifier(state, job, ctx.sender, params)
    if body.data_segment is not None:
        return open_data_request(state, ctx, job, body.data_segment, params)
    spec = get_job_spec(job)
    evidence = body.evidence
    if evidence is not None:
        # Fast path: the disputed segment exists ...
        if evidence.segment >= job.num_leaves - 1:
            raise MalformedBodyError(
                "segment", f"must be below the job's {job.num_leaves - 1} segments"
            )
        # ... and both of its leaves are proved against the solver's root.
        verify_leaf("pre_proof", evidence.pre_entry, evidence.segment, job, evidence.pre_proof)
        verify_leaf(
            "post_proof", evidence.post_entry, evidence.segment + 1, job, evidence.post_proof
        )
    dispute_id = new_dispute_id(state, job, ctx)

    decrease_balance(state, ctx.sender, params.challenge_bond)  # InsufficientBalanceError
    deadline = Height(ctx.height + params.move_timeout)
    fields: dict[str, Any]
    if evidence is None:
        root = root_node(job.num_leaves)
        fields = {"node_lo": root.lo, "node_hi": root.hi, "node_hash": job.final_root}
        phase = Phase.REVEAL_CHILDREN
        move_data: dict[str, Any] = {}
    else:
        leaf = evidence.segment + 1
        a, b = segment_interval(leaf, spec.checkpoint_interval)
        fields = {
            "leaf_index": leaf,
            "step_lo": a,
            "step_hi": b,
            "hash_lo": evidence.pre_entry,
            "hash_hi": evidence.post_entry,
        }
        phase = phase_after_interval(a, b, params.operator_disputes)
        move_data = {
            "segment": evidence.segment,
            "pre_entry": evidence.pre_entry.hex(),
            "post_entry": evidence.post_entry.hex(),
        }
    assert job.solver is not None
    dispute = Dispute(
        dispute_id=dispute_id,
        job_id=job.job_id,
        solver=job.solver,
        challenger=ctx.sender,
        bond=Amount(params.challenge_bond),
        opened_height=ctx.height,
        status=DisputeStatus.OPEN,
        phase=phase,
        turn=TURN[phase],
        deadline=deadline,
        moves=(DisputeMove("challenge", Party.CHALLENGER, ctx.sender, ctx.height, move_data),),
        **fields,
    )
    register_dispute(state, job, dispute, challengers=with_challenger(job, ctx.sender))
    return [
        make_event(
            "challenged",
            job_id=job.job_id,
            dispute_id=dispute_id,
            challenger=ctx.sender,
            solver=job.solver,
            bond=params.challenge_bond,
            phase=phase,
            turn=TURN[phase],
            deadline=deadline,
            fast_path=evidence is not None,
        )
    ]


def _require_data_request_allowed(
    state: LedgerState, job: Job, ctx: TxContext, segment: int, params: Params
) -> None:
    """Guards of a data request, beyond those of any verdict (``process_challenge``).

    Each one bounds what a flood of requests (sybil verifiers, or the submitter's) can make an
    honest solver do: it publishes each segment's blob at most once per job, only segments some
    staked verifier was sampled to check, and gets one ``move_timeout`` per open request.
    """
    assert job.final_height is not None
    original_deadline = job.final_height + params.challenge_window
    # INVARIANT: requests only within the original window (publishing reopens it: once).
    if ctx.height > original_deadline:
        raise DeadlinePassedError("data requests", Height(original_deadline), ctx.height)
    # INVARIANT: the segment exists and is one the requester was sampled to check.
    if not 0 <= segment < job.num_leaves - 1:
        raise MalformedBodyError("segment", f"must be below the job's {job.num_leaves - 1}")
    if segment not in get_verifier_sample(state, job.job_id, ctx.sender):
        raise MalformedBodyError("segment", f"{segment} is not in the requester's sample")
    # INVARIANT: one request per segment per job, ever (open or answered).
    for dispute_id in job.disputes:
        other = state.get_dispute(dispute_id)
        if other.data_request and other.leaf_index == segment:
            raise DataAlreadyRequestedError(job.job_id, segment, other.dispute_id)


def open_data_request(
    state: LedgerState, ctx: TxContext, job: Job, segment: int, params: Params
) -> list[Event]:
    """A verifier could not get the blob of leaf ``segment``: the solver must publish it."""
    _require_data_request_allowed(state, job, ctx, segment, params)
    dispute_id = new_dispute_id(state, job, ctx)
    # No bond: a request cannot be false (data that exists can always be published), and the
    # guards above already bound how many a job can get, one per segment.
    open_requests = sum(
        1
        for other_id in job.disputes
        if (other := state.get_dispute(other_id)).data_request
        and other.status == DisputeStatus.OPEN
    )
    # The solver answers requests one after another: each open one adds a move's time.
    deadline = Height(ctx.height + params.move_timeout * (1 + open_requests))
    a, b = segment_interval(segment + 1, get_job_spec(job).checkpoint_interval)
    assert job.solver is not None
    request = Dispute(
        dispute_id=dispute_id,
        job_id=job.job_id,
        solver=job.solver,
        challenger=ctx.sender,
        bond=Amount(0),
        opened_height=ctx.height,
        status=DisputeStatus.OPEN,
        phase=Phase.PUBLISH_DATA,
        turn=TURN[Phase.PUBLISH_DATA],
        deadline=deadline,
        leaf_index=segment,
        step_lo=a,
        step_hi=b,
        moves=(
            DisputeMove(
                "challenge",
                Party.CHALLENGER,
                ctx.sender,
                ctx.height,
                {"segment": segment, "withheld": True},
            ),
        ),
        data_request=True,
    )
    # A data request is not a verdict: the requester still attests or challenges afterwards.
    register_dispute(state, job, request)
    return [
        make_event(
            "data_requested",
            job_id=job.job_id,
            dispute_id=dispute_id,
            requester=ctx.sender,
            solver=job.solver,
            segment=segment,
            deadline=deadline,
        )
    ]


# --- moves ----------------------------------------------------------------------------------


def begin_move(
    state: LedgerState, ctx: TxContext, dispute_id: str, kind: str
) -> tuple[Dispute, Party]:
    """The guards every move shares; returns the dispute and the mover's party."""
    dispute = state.get_dispute(dispute_id)
    # INVARIANT: the game is still being played.
    if dispute.status != DisputeStatus.OPEN:
        raise DisputeClosedError(dispute_id, dispute.status)
    # INVARIANT: the current phase takes this move (contracts_sim.moves.MOVES) ...
    rule = MOVES[kind]
    if dispute.phase not in rule.phases:
        raise WrongPhaseError(dispute_id, dispute.phase, expected_phases(kind))
    # INVARIANT: ... from the sender's party (the party to move, unless the table says else).
    party = party_of(dispute, ctx.sender)
    if party not in rule.allowed(dispute.phase):
        raise NotYourTurnError(dispute_id, TURN[dispute.phase], ctx.sender)
    # INVARIANT: the move is in time.
    if ctx.height > dispute.deadline:
        raise DeadlinePassedError("the dispute move", dispute.deadline, ctx.height)
    return dispute, party


def record(dispute: Dispute, kind: str, party: Party, ctx: TxContext, **data: Any) -> Dispute:
    move = DisputeMove(kind, party, ctx.sender, ctx.height, to_json_value(data))
    return replace(dispute, moves=(*dispute.moves, move))


def _advance(
    state: LedgerState,
    ctx: TxContext,
    dispute: Dispute,
    phase: Phase,
    params: Params,
    **changes: Any,
) -> list[Event]:
    """Enter ``phase`` with a fresh deadline and store the dispute."""
    return advance_until(state, dispute, phase, Height(ctx.height + params.move_timeout), **changes)


def advance_until(
    state: LedgerState, dispute: Dispute, phase: Phase, deadline: Height, **changes: Any
) -> list[Event]:
    """Enter ``phase`` with the move deadline ``deadline`` and store the dispute (a phase the
    last recorded move may lead to: ``contracts_sim.moves.require_transition``)."""
    require_transition(dispute, phase)
    dispute = replace(dispute, phase=phase, turn=TURN[phase], deadline=deadline, **changes)
    state.set_dispute(dispute)
    last = dispute.moves[-1]
    return [
        make_event(
            "dispute_move",
            dispute_id=dispute.dispute_id,
            job_id=dispute.job_id,
            move=last.kind,
            party=last.party,
            sender=last.sender,
            data=last.data,
            phase=phase,
            turn=TURN[phase],
            deadline=deadline,
        )
    ]


def process_reveal_children(
    state: LedgerState, ctx: TxContext, body: RevealChildrenBody, params: Params
) -> list[Event]:
    """Solver: the two child hashes of the disputed node."""
    dispute, party = begin_move(state, ctx, body.dispute_id, "reveal_children")
    # INVARIANT: the children hash to the node the solver committed to.
    combined = hash_node(body.left, body.right)
    assert dispute.node_hash is not None
    if combined != dispute.node_hash:
        raise HashMismatchError("hash_node(left, right)", dispute.node_hash, combined)

    dispute = record(dispute, "reveal_children", party, ctx, left=body.left, right=body.right)
    return _advance(
        state, ctx, dispute, Phase.CHOOSE_CHILD, params, left_hash=body.left, right_hash=body.right
    )


def process_choose_child(
    state: LedgerState, ctx: TxContext, body: ChooseChildBody, params: Params
) -> list[Event]:
    """Challenger: the (leftmost) child it disagrees with. The one descent rule of every
    tree: the trajectory's, and in an operator dispute the trace's and the chunks' (what
    happens at their leaf: ``contracts_sim.operator_dispute.reached_leaf``)."""
    dispute, party = begin_move(state, ctx, body.dispute_id, "choose_child")
    assert dispute.node_lo is not None and dispute.node_hi is not None
    left, right = children(NodeRef(dispute.node_lo, dispute.node_hi))
    node, node_hash = (
        (left, dispute.left_hash) if body.side == "left" else (right, dispute.right_hash)
    )
    dispute = record(dispute, "choose_child", party, ctx, side=body.side, lo=node.lo, hi=node.hi)
    changes: dict[str, Any] = {
        "node_lo": node.lo,
        "node_hi": node.hi,
        "node_hash": node_hash,
        "left_hash": None,
        "right_hash": None,
    }
    if is_leaf_node(node) and dispute.operator is not None:
        from contracts_sim.operator_dispute import reached_leaf  # (imports this module)

        return reached_leaf(state, ctx, dispute, node, params, changes)
    if is_leaf_node(node):
        return _advance(
            state, ctx, dispute, Phase.REVEAL_LEAF, params, leaf_index=node.lo, **changes
        )
    return _advance(state, ctx, dispute, Phase.REVEAL_CHILDREN, params, **changes)


def process_reveal_leaf(
    state: LedgerState, ctx: TxContext, body: RevealLeafBody, params: Params
) -> list[Event]:
    """Solver: the disputed leaf's entry and, for d > 0, the agreed entry d - 1 with a proof."""
    dispute, party = begin_move(state, ctx, body.dispute_id, "reveal_leaf")
    job = state.get_job(dispute.job_id)
    spec = get_job_spec(job)
    leaf = dispute.leaf_index
    assert leaf is not None and dispute.node_hash is not None
    # INVARIANT: the entry is the disputed leaf.
    leaf_hash = hash_leaf(body.entry)
    if leaf_hash != dispute.node_hash:
        raise HashMismatchError("hash_leaf(entry)", dispute.node_hash, leaf_hash)

    if leaf == 0:
        # Leaf 0 is the initial state, which the referee recomputes from the spec.
        dispute = record(dispute, "reveal_leaf", party, ctx, entry=body.entry)
        try:
            expected: Hash32 | None = referee.initial_state_hash(spec)
        except ProofNetError:
            expected = None
        solver_right = body.entry == expected
        reason = (
            "leaf 0 matches the initial state"
            if solver_right
            else "leaf 0 is not the initial state"
        )
        dispute = replace(dispute, hash_hi=body.entry)
        winner = Party.SOLVER if solver_right else Party.CHALLENGER
        return resolve_dispute(
            state, ctx, dispute, winner, reason, None, params, Resolution.LEAF_ZERO
        )

    # INVARIANT: leaf d - 1 (agreed by the descent) is proved against the solver's root.
    if body.pre_entry is None:
        raise MalformedBodyError("pre_entry", f"is required to open leaf {leaf} > 0")
    if body.pre_proof is None:
        raise MalformedBodyError("pre_proof", f"is required to open leaf {leaf} > 0")
    verify_leaf("pre_proof", body.pre_entry, leaf - 1, job, body.pre_proof)

    a, b = segment_interval(leaf, spec.checkpoint_interval)
    dispute = record(dispute, "reveal_leaf", party, ctx, entry=body.entry, pre_entry=body.pre_entry)
    return _advance(
        state,
        ctx,
        dispute,
        phase_after_interval(a, b, params.operator_disputes),
        params,
        step_lo=a,
        step_hi=b,
        hash_lo=body.pre_entry,
        hash_hi=body.entry,
    )


def process_post_midpoint(
    state: LedgerState, ctx: TxContext, body: PostMidpointBody, params: Params
) -> list[Event]:
    """Solver: the state hash at the midpoint of [a, b]."""
    dispute, party = begin_move(state, ctx, body.dispute_id, "post_midpoint")
    assert dispute.step_lo is not None and dispute.step_hi is not None
    m = bisection_midpoint(dispute.step_lo, dispute.step_hi)
    dispute = record(dispute, "post_midpoint", party, ctx, step=m, state_hash=body.state_hash)
    return _advance(
        state, ctx, dispute, Phase.RESPOND_MIDPOINT, params, midpoint_hash=body.state_hash
    )


def process_respond_midpoint(
    state: LedgerState, ctx: TxContext, body: RespondMidpointBody, params: Params
) -> list[Event]:
    """Challenger: agree (the fault is after the midpoint) or disagree (at or before it)."""
    dispute, party = begin_move(state, ctx, body.dispute_id, "respond_midpoint")
    assert dispute.step_lo is not None and dispute.step_hi is not None
    m = bisection_midpoint(dispute.step_lo, dispute.step_hi)
    if body.agree:
        a, b = m, dispute.step_hi
        changes = {"step_lo": m, "hash_lo": dispute.midpoint_hash}
    else:
        a, b = dispute.step_lo, m
        changes = {"step_hi": m, "hash_hi": dispute.midpoint_hash}
    dispute = record(dispute, "respond_midpoint", party, ctx, step=m, agree=body.agree)
    return _advance(
        state,
        ctx,
        dispute,
        phase_after_interval(a, b, params.operator_disputes),
        params,
        midpoint_hash=None,
        **changes,
    )


def process_post_prestate(
    state: LedgerState, ctx: TxContext, body: PostPrestateBody, params: Params
) -> list[Event]:
    """Either party: the agreed pre-state blob; the referee runs the one disputed step."""
    dispute, party = begin_move(state, ctx, body.dispute_id, "post_prestate")
    a, h_a, h_b = dispute.step_lo, dispute.hash_lo, dispute.hash_hi
    assert a is not None and h_a is not None and h_b is not None
    # INVARIANT: the blob is the agreed pre-state, within the chain's size limit.
    blob_hash = require_state_blob(body.blob, h_a, params)

    if dispute.audit:
        from contracts_sim.forced_errors import judge_audit_step  # (imports this module)

        dispute = record(dispute, "post_prestate", party, ctx, step=a, blob_hash=blob_hash)
        return judge_audit_step(state, ctx, dispute, body.blob, params)
    job = state.get_job(dispute.job_id)
    spec = get_job_spec(job)
    try:
        post: Hash32 | None = referee.one_step_post_hash(spec, body.blob, a)
        invalid = ""
    except ProofNetError as exc:
        post, invalid = None, exc.message
    dispute = record(
        dispute,
        "post_prestate",
        party,
        ctx,
        step=a,
        blob_hash=blob_hash,
        blob_size=len(body.blob),
        post_hash=post,
    )
    if post is not None and post != h_b:
        from contracts_sim.forced_errors import awaits_trap_reveal, enter_reveal_trap

        if awaits_trap_reveal(job, a, spec.checkpoint_interval):
            return enter_reveal_trap(state, ctx, dispute, params)
    if post is None:
        winner, reason = Party.CHALLENGER, f"the agreed pre-state of step {a} is invalid: {invalid}"
        resolution = Resolution.INVALID_PRESTATE
    elif post == h_b:
        winner, reason = Party.SOLVER, f"step {a} re-executed to the solver's hash"
        resolution = Resolution.ONE_STEP
    else:
        winner, reason = Party.CHALLENGER, f"step {a} re-executed to a different hash"
        resolution = Resolution.ONE_STEP
    return resolve_dispute(state, ctx, dispute, winner, reason, a, params, resolution)


def require_state_blob(blob: bytes, expected: Hash32, params: Params) -> Hash32:
    """The state root of ``blob`` (``protocol.state_commitment``), which must be ``expected``;
    a blob over ``max_blob_bytes`` or one that is not a state blob at all is refused
    (``MalformedBodyError``) before anything else: such bytes have no state root, so they can
    be no party's committed state. A blob that decodes but does not fit the job's spec is
    accepted here: the referee judges it (the solver authored its hash)."""
    if len(blob) > params.max_blob_bytes:
        raise MalformedBodyError("blob", f"is {len(blob)} bytes; at most {params.max_blob_bytes}")
    try:
        root = blob_root(blob)
    except EncodingError as exc:
        raise MalformedBodyError("blob", f"is not a state blob: {exc.message}") from exc
    if root != expected:
        raise HashMismatchError("state root of blob", expected, root)
    return root


def process_publish_data(
    state: LedgerState, ctx: TxContext, body: PublishDataBody, params: Params
) -> list[Event]:
    """Solver: answer a data request by publishing the blob of the requested leaf, with both
    leaves of its segment proved against the root. Nothing is executed: the data is now in the
    chain's history (this transaction), and the job's challenge window reopens for one window
    so that verifiers can judge the segment with it."""
    dispute, party = begin_move(state, ctx, body.dispute_id, "publish_data")
    job = state.get_job(dispute.job_id)
    segment = dispute.leaf_index
    assert segment is not None
    # INVARIANT: both leaves of the segment are the committed ones ...
    verify_leaf("pre_proof", body.pre_entry, segment, job, body.pre_proof)
    verify_leaf("post_proof", body.post_entry, segment + 1, job, body.post_proof)
    # ... and the blob, within the chain's size limit, is the requested leaf's.
    blob_hash = require_state_blob(body.blob, body.pre_entry, params)

    dispute = record(
        dispute,
        "publish_data",
        party,
        ctx,
        blob_hash=blob_hash,
        blob_size=len(body.blob),
        post_entry=body.post_entry,
    )
    require_transition(dispute, Phase.RESOLVED)
    state.set_dispute(
        replace(
            dispute,
            status=DisputeStatus.DATA_PUBLISHED,
            resolution=Resolution.DATA_PUBLISHED,
            phase=Phase.RESOLVED,
            turn=Party.NOBODY,
            hash_lo=body.pre_entry,
            hash_hi=body.post_entry,
            reason=f"the solver published the blob of leaf {segment}",
            closed_height=ctx.height,
        )
    )
    assert job.challenge_deadline is not None
    reopened = Height(max(job.challenge_deadline, ctx.height + params.challenge_window))
    state.set_job(replace(job, open_disputes=job.open_disputes - 1, challenge_deadline=reopened))
    _extend_window_waits(state, job, Height(reopened + params.move_timeout))
    return [
        make_event(
            "data_published",
            dispute_id=dispute.dispute_id,
            job_id=dispute.job_id,
            segment=segment,
            blob_hash=blob_hash,
            blob_size=len(body.blob),
            pre_entry=body.pre_entry,
            post_entry=body.post_entry,
            challenge_deadline=reopened,
        )
    ]


WINDOW_WAITS: Final = frozenset({Phase.UNSEAL, Phase.REVEAL_TRAP})
"""Moves that wait for the challenge window to close (``contracts_sim.forced_errors``)."""


def _extend_window_waits(state: LedgerState, job: Job, deadline: Height) -> None:
    """The window reopened: every move waiting for it gets ``move_timeout`` past its new end."""
    for dispute_id in job.disputes:
        other = state.get_dispute(dispute_id)
        if other.status == DisputeStatus.OPEN and other.phase in WINDOW_WAITS:
            state.set_dispute(replace(other, deadline=Height(max(other.deadline, deadline))))


def has_open_data_request(state: LedgerState, job: Job) -> bool:
    """A data request is open: publishing it would reopen the challenge window."""
    return any(
        (other := state.get_dispute(dispute_id)).data_request and other.status == DisputeStatus.OPEN
        for dispute_id in job.disputes
    )


# --- timeouts and outcomes ------------------------------------------------------------------


def claim_move_timeout(
    state: LedgerState, ctx: TxContext, dispute_id: str, params: Params
) -> list[Event]:
    """Anyone, once a move's deadline has passed: the party that had to move loses."""
    dispute = state.get_dispute(dispute_id)
    # The game is still being played ...
    if dispute.status != DisputeStatus.OPEN:
        raise DisputeClosedError(dispute_id, dispute.status)
    # ... and the party to move let its deadline pass ...
    if ctx.height <= dispute.deadline:
        raise DeadlineNotReachedError("the dispute move", dispute.deadline, ctx.height)
    # ... while it could move: a move that waits for the window waits for open data requests
    # too (publishing one reopens the window and moves the deadline on).
    if dispute.phase in WINDOW_WAITS and has_open_data_request(
        state, state.get_job(dispute.job_id)
    ):
        raise DeadlineNotReachedError("the dispute move", dispute.deadline, ctx.height)

    loser = dispute.turn
    timed_out = Resolution.timeout(dispute.phase)
    claimant = party_of(dispute, ctx.sender)
    dispute = record(dispute, "claim_timeout", claimant, ctx, phase=dispute.phase, loser=loser)
    if dispute.audit:
        from contracts_sim.forced_errors import resolve_audit

        role = "attester" if loser == Party.CHALLENGER else "auditing solver"
        reason = f"the {role} missed the {dispute.phase.value} deadline ({dispute.deadline})"
        return resolve_audit(
            state, ctx, dispute, loser == Party.CHALLENGER, reason, params, timed_out
        )
    reason = f"the {loser.value} missed the {dispute.phase.value} deadline ({dispute.deadline})"
    return resolve_dispute(state, ctx, dispute, _other(loser), reason, None, params, timed_out)


def resolve_dispute(
    state: LedgerState,
    ctx: TxContext,
    dispute: Dispute,
    winner: Party,
    reason: str,
    located_step: int | None,
    params: Params,
    resolution: Resolution,
) -> list[Event]:
    """Close ``dispute`` with ``winner`` (``resolution`` says what decided it) and move the
    money (see the module docstring)."""
    require_transition(dispute, Phase.RESOLVED)
    loser = _other(winner)
    status = (
        DisputeStatus.CHALLENGER_WON if winner == Party.CHALLENGER else DisputeStatus.SOLVER_WON
    )
    closed = replace(
        dispute,
        status=status,
        phase=Phase.RESOLVED,
        turn=Party.NOBODY,
        winner=winner,
        reason=reason,
        resolution=resolution,
        located_step=located_step,
        closed_height=ctx.height,
    )
    state.set_dispute(closed)
    job = state.get_job(dispute.job_id)
    job = replace(job, open_disputes=job.open_disputes - 1)
    state.set_job(job)
    events: list[Event] = []

    if winner == Party.CHALLENGER:
        sharers = reward_sharers(state, job, dispute)
        increase_balance(state, dispute.challenger, dispute.bond)
        events += _void_other_disputes(state, ctx, job, dispute.dispute_id)
        job = state.get_job(dispute.job_id)
        slash, slash_events = close_job_slashed(
            state, ctx, job, sharers, reason, resolution, params
        )
        events += slash_events
    else:
        slash = compute_slash(dispute.bond, (dispute.solver,), params)
        pay_slash(state, slash)
        if job.trap_root is not None and not dispute.data_request:
            # A seal opened on a segment that re-executes (or never opened) was not a check:
            # the attestation beside it goes too (contracts_sim.forced_errors).
            from contracts_sim.forced_errors import forfeit_attestation

            events += forfeit_attestation(state, job, dispute.challenger, reason, params)
        events.append(
            make_event(
                "bond_forfeited",
                dispute_id=dispute.dispute_id,
                job_id=dispute.job_id,
                address=dispute.challenger,
                amount=slash.amount,
                reward=slash.reward,
                burned=slash.burned,
                beneficiary=dispute.solver,
            )
        )

    resolved = make_event(
        "dispute_resolved",
        dispute_id=dispute.dispute_id,
        job_id=dispute.job_id,
        winner=_address(dispute, winner),
        loser=_address(dispute, loser),
        winner_role=winner,
        loser_role=loser,
        located_step=located_step,
        leaf_index=dispute.leaf_index,
        slashed=slash.amount,
        reward=slash.reward,
        burned=slash.burned,
        reason=reason,
        resolution=resolution,
        **_located_op(closed),
    )
    return [resolved, *events]


def _located_op(dispute: Dispute) -> dict[str, Any]:
    """The operator an operator-level verdict located (none otherwise)."""
    game = dispute.operator
    if game is None or game.located_op is None:
        return {}
    return {"located_op": game.located_op, "located_label": game.op_label}


def reward_sharers(state: LedgerState, job: Job, winning: Dispute) -> tuple[Address, ...]:
    """Who shares the challenger reward when ``winning`` proves the solver wrong: the
    challenger of every dispute still open on the job, the winning one included (in the order
    they were opened).

    Each of them bonded the claim that the solver is wrong, so none is paid less for having
    been slower to finish its game than the solver's own accomplice (see the module docstring).
    A seal not yet opened claims nothing yet (it may be empty, which costs nothing): it does
    not share (contracts_sim.forced_errors).
    """
    sharers = (
        other.challenger
        for other in (state.get_dispute(other_id) for other_id in job.disputes)
        if other.dispute_id == winning.dispute_id
        or (
            other.status == DisputeStatus.OPEN
            and not other.data_request
            and not other.audit
            and other.phase != Phase.UNSEAL
        )
    )
    return tuple(dict.fromkeys(sharers))  # one share per address, in opening order


def _void_other_disputes(
    state: LedgerState, ctx: TxContext, job: Job, winner_id: str
) -> list[Event]:
    """The solver lost one game: end the others on the job and return their bonds."""
    events = []
    voided = 0
    for other_id in job.disputes:
        other = state.get_dispute(other_id)
        if other_id == winner_id or other.status != DisputeStatus.OPEN:
            continue
        # The bond goes back to whoever posted it: the solver, for an audit.
        increase_balance(state, other.solver if other.audit else other.challenger, other.bond)
        state.set_dispute(
            replace(
                other,
                status=DisputeStatus.VOID,
                phase=Phase.RESOLVED,  # VOID_TRANSITION: not a move of this game
                turn=Party.NOBODY,
                reason=f"the solver lost dispute {winner_id}",
                resolution=Resolution.VOID,
                closed_height=ctx.height,
            )
        )
        voided += 1
        events.append(
            make_event(
                "dispute_voided",
                dispute_id=other_id,
                job_id=job.job_id,
                challenger=other.challenger,
                bond_returned=other.bond,
            )
        )
    state.set_job(replace(job, open_disputes=job.open_disputes - voided))
    return events
