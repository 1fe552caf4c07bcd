"""Forced errors on the ledger: revealing a trap in a dispute, and auditing lazy attesters
(``protocol.forced_errors`` has the rule and the argument; docs/protocol.md "Forced errors").

Every challenge of a job with forced errors is *sealed* during the window: it posts its bond
and a commitment to its segment (``protocol.forced_errors.seal``), and the challenger opens it
with ``unseal`` once the window has closed. Otherwise a lazy verifier could copy, in the last
block of the window, an honest verifier's challenge of a segment of its own sample, agree with
every midpoint and be paid for a check it never made. A verifier of such a job may also attest
(with the attestation bond): its attestation vouches for its sample except the segments it
challenged, and only attesters are paid. It may hold one sealed challenge per segment of its
sample: it cannot tell a trap from a cheat, and with one challenge a trap would use it up.

Two moves are the solver's, neither accepted before the job's challenge window has closed (so
no verdict can be made knowing where a trap is):

``reveal_trap``  The referee re-executed a segment's last step and disagreed with the solver.
                 If that segment is one of the solver's forced errors, the solver shows its
                 secret; the referee re-runs the step with the drawn perturbation, and if that
                 gives the solver's hash the dispute ends ``forced_error``: nobody is slashed,
                 the challenger's bond is returned (it did check; its attestation pays it).
                 Otherwise, or if the solver lets the deadline pass, the challenger wins.

``audit``        An attester whose sample held a forced error vouched for a transition that is
                 false by construction. The solver opens a bisection game over that segment with
                 a bond of its own (``challenge_bond``); the attester answers the midpoints as a
                 challenger would. The verdict (``judge_audit_step``) at the last step: the
                 perturbed hash — the attester loses its attestation bond (the reward share to
                 the solver, the rest burned) and its fee share; the unperturbed hash — the trap
                 was never planted and the solver loses its bond (the reward share to the
                 attester). At an interior step the usual rule: whoever's hash the referee
                 contradicts loses. A lazy attester cannot answer a midpoint and loses by
                 timeout; an honest attester never attested a planted trap, so it cannot lose.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from contracts_sim import dispute as game
from contracts_sim import referee
from contracts_sim.env import TxContext
from contracts_sim.events import Event, make_event
from contracts_sim.exceptions import (
    AlreadyAttestedError,
    AlreadyAuditedError,
    AlreadyChallengedError,
    DeadlineNotReachedError,
    DeadlinePassedError,
    HashMismatchError,
    InvalidProofError,
    MalformedBodyError,
    NotAForcedErrorError,
    NotAuthorizedError,
)
from contracts_sim.jobs import (
    audit_window_end,
    audit_window_start,
    compute_slash,
    get_job_spec,
    get_verifier_sample,
    pay_slash,
    require_staked_verifier,
    require_status,
)
from contracts_sim.moves import TURN, require_transition
from contracts_sim.params import Params
from contracts_sim.records import (
    Dispute,
    DisputeMove,
    DisputeStatus,
    Job,
    JobStatus,
    Party,
    Phase,
    Resolution,
)
from contracts_sim.state import LedgerState, decrease_balance, increase_balance
from contracts_sim.transactions import AuditBody, ChallengeBody, RevealTrapBody, UnsealBody
from protocol.errors import ProofError, ProofNetError
from protocol.forced_errors import (
    TrapDraw,
    draw_trap,
    seal,
    segment_of_last_step,
    trap_commitment,
    trap_step,
)
from protocol.merkle import InclusionProof, verify_inclusion
from protocol.types import Amount, Hash32, Height


def trap_beacon(state: LedgerState, job: Job) -> Hash32:
    """The beacon output that mixes with the solver's secrets: that of the block after the
    assignment, which did not exist when the secrets were committed in the bid."""
    assert job.assigned_height is not None
    beacon = state.get_beacon_output(Height(job.assigned_height + 1))
    assert beacon is not None, "the job committed after its assignment block's successor"
    return beacon


def verified_trap(
    state: LedgerState,
    job: Job,
    segment: int,
    secret: Hash32,
    proof: InclusionProof,
    params: Params,
) -> TrapDraw:
    """The draw of ``segment`` from a secret proved against the job's ``trap_root``; raises
    ``NotAForcedErrorError`` unless it is a forced error."""
    if job.trap_root is None:
        raise NotAForcedErrorError(job.job_id, segment)
    segments = job.num_leaves - 1
    if not 0 <= segment < segments:
        raise MalformedBodyError("segment", f"must be below the job's {segments} segments")
    try:
        verify_inclusion(trap_commitment(secret), segment, segments, job.trap_root, proof)
    except ProofError as exc:
        raise InvalidProofError("trap secret proof", exc.message) from exc
    draw = draw_trap(secret, trap_beacon(state, job), job.job_id, segment, params.forced_error_bps)
    if not draw.is_trap:
        raise NotAForcedErrorError(job.job_id, segment)
    return draw


def require_window_closed(state: LedgerState, job: Job, ctx: TxContext, what: str) -> None:
    """Reveals, unseals and audits wait for the challenge window to close, and for every open
    data request (publishing one reopens the window): no verdict is made knowing where a trap
    is, or which segment another verifier challenged."""
    assert job.challenge_deadline is not None
    if ctx.height <= job.challenge_deadline or game.has_open_data_request(state, job):
        raise DeadlineNotReachedError(what, job.challenge_deadline, ctx.height)


# --- sealed challenges ----------------------------------------------------------------------


def open_trap_job_challenge(
    state: LedgerState, ctx: TxContext, job: Job, body: ChallengeBody, params: Params
) -> list[Event]:
    """A challenge (or data request) of a job with forced errors; see the module doc."""
    require_staked_verifier(state, job, ctx.sender, params)
    if body.data_segment is not None:
        return game.open_data_request(state, ctx, job, body.data_segment, params)
    if body.sealed is None:
        raise MalformedBodyError(
            "sealed", "a challenge of a job with forced errors is sealed until its window closes"
        )
    # One sealed challenge per segment of the challenger's sample, at most, before it attests.
    if len(_fraud_claims(state, job, ctx.sender)) >= sample_size(job):
        raise AlreadyChallengedError(job.job_id, ctx.sender)
    if ctx.sender in job.attesters:
        raise AlreadyAttestedError(job.job_id, ctx.sender)
    dispute_id = game.new_dispute_id(state, job, ctx)

    decrease_balance(state, ctx.sender, params.challenge_bond)  # InsufficientBalanceError
    assert job.solver is not None and job.challenge_deadline is not None
    deadline = Height(job.challenge_deadline + params.move_timeout)
    opening: dict[str, Any] = {"sealed": body.sealed.hex()}
    sealed_challenge = Dispute(
        dispute_id=dispute_id,
        job_id=job.job_id,
        solver=job.solver,
        challenger=ctx.sender,
        bond=Amount(params.challenge_bond),
        opened_height=ctx.height,
        status=DisputeStatus.OPEN,
        phase=Phase.UNSEAL,
        turn=TURN[Phase.UNSEAL],
        deadline=deadline,
        moves=(DisputeMove("challenge", Party.CHALLENGER, ctx.sender, ctx.height, opening),),
        sealed=body.sealed,
    )
    game.register_dispute(
        state, job, sealed_challenge, challengers=game.with_challenger(job, ctx.sender)
    )
    return [
        make_event(
            "challenged",
            job_id=job.job_id,
            dispute_id=dispute_id,
            challenger=ctx.sender,
            solver=job.solver,
            bond=params.challenge_bond,
            phase=Phase.UNSEAL,
            turn=Party.CHALLENGER,
            deadline=deadline,
            sealed=True,
        )
    ]


def _fraud_claims(state: LedgerState, job: Job, challenger: str) -> list[Dispute]:
    """``challenger``'s challenges of ``job`` (not its data requests, not audits of it)."""
    return [
        other
        for dispute_id in job.disputes
        if (other := state.get_dispute(dispute_id)).challenger == challenger
        and not other.audit
        and not other.data_request
    ]


def _challenged_segments(state: LedgerState, job: Job, challenger: str) -> set[int]:
    """The segments ``challenger`` named in its opened challenges of ``job``."""
    return {
        d.leaf_index - 1 for d in _fraud_claims(state, job, challenger) if d.leaf_index is not None
    }


def process_unseal(
    state: LedgerState, ctx: TxContext, body: UnsealBody, params: Params
) -> list[Event]:
    """Challenger: open a sealed challenge after the window; it becomes a fast-path game."""
    dispute, party = game.begin_move(state, ctx, body.dispute_id, "unseal")
    job = state.get_job(dispute.job_id)
    require_window_closed(state, job, ctx, "unsealing a challenge")
    # INVARIANT: the segment and salt are the sealed ones ...
    assert dispute.sealed is not None
    opened = seal(body.segment, body.salt, dispute.challenger)
    if opened != dispute.sealed:
        raise HashMismatchError("seal(segment, salt, challenger)", dispute.sealed, opened)
    if body.segment == empty_seal_segment(job):
        if body.evidence is not None:
            raise MalformedBodyError("pre_entry", "an empty seal disputes no segment")
        return _close_empty_seal(state, ctx, game.record(dispute, "unseal", party, ctx))
    # ... of a segment of the challenger's own sample, challenged once ...
    if body.segment not in get_verifier_sample(state, job.job_id, dispute.challenger):
        raise MalformedBodyError("segment", f"{body.segment} is not in the challenger's sample")
    if body.segment in _challenged_segments(state, job, dispute.challenger):
        raise AlreadyChallengedError(job.job_id, dispute.challenger)
    # ... and both of its leaves are proved against the solver's root.
    evidence = body.evidence
    if evidence is None:
        raise MalformedBodyError("pre_entry", f"is required to open a seal of {body.segment}")
    game.verify_leaf("pre_proof", evidence.pre_entry, body.segment, job, evidence.pre_proof)
    game.verify_leaf("post_proof", evidence.post_entry, body.segment + 1, job, evidence.post_proof)
    leaf = body.segment + 1
    a, b = game.segment_interval(leaf, get_job_spec(job).checkpoint_interval)
    dispute = game.record(dispute, "unseal", party, ctx, segment=body.segment)
    return game.advance_until(
        state,
        dispute,
        game.phase_after_interval(a, b),
        Height(ctx.height + params.move_timeout),
        leaf_index=leaf,
        step_lo=a,
        step_hi=b,
        hash_lo=evidence.pre_entry,
        hash_hi=evidence.post_entry,
    )


def empty_seal_segment(job: Job) -> int:
    """The segment an empty seal names: one past the last (it disputes nothing)."""
    return job.num_leaves - 1


def _close_at_no_fault(
    state: LedgerState,
    ctx: TxContext,
    dispute: Dispute,
    status: DisputeStatus,
    reason: str,
    resolution: Resolution,
    **changes: Any,
) -> None:
    """Close a game nobody lost (an empty seal, a confirmed forced error): the challenger's
    bond goes back and the job counts one open dispute less."""
    require_transition(dispute, Phase.RESOLVED)
    state.set_dispute(
        replace(
            dispute,
            status=status,
            phase=Phase.RESOLVED,
            turn=Party.NOBODY,
            reason=reason,
            resolution=resolution,
            closed_height=ctx.height,
            **changes,
        )
    )
    increase_balance(state, dispute.challenger, dispute.bond)
    job = state.get_job(dispute.job_id)
    state.set_job(replace(job, open_disputes=job.open_disputes - 1))


def _close_empty_seal(state: LedgerState, ctx: TxContext, dispute: Dispute) -> list[Event]:
    """An empty seal opened: nothing was disputed; the bond goes back."""
    reason = "an empty seal: the verifier disputed nothing"
    _close_at_no_fault(state, ctx, dispute, DisputeStatus.VOID, reason, Resolution.EMPTY_SEAL)
    return [
        make_event(
            "seal_opened_empty",
            dispute_id=dispute.dispute_id,
            job_id=dispute.job_id,
            challenger=dispute.challenger,
            bond_returned=dispute.bond,
        )
    ]


def sample_size(job: Job) -> int:
    return min(job.sample_count, job.num_leaves - 1)


def require_sealed_verdict(state: LedgerState, job: Job, verifier: str) -> None:
    """An attestation of a job with forced errors follows exactly one seal per segment of the
    sample (empty ones for the segments the verifier does not dispute): every verdict then
    looks the same on chain, so an attestation says nothing about the attester's sample."""
    seals = len(_fraud_claims(state, job, verifier))
    if seals != sample_size(job):
        raise MalformedBodyError(
            "job_id",
            f"an attestation of a job with forced errors follows {sample_size(job)} sealed "
            f"challenges (empty ones for the segments not disputed); {verifier} has {seals}",
        )


def forfeit_attestation(
    state: LedgerState, job: Job, attester: str, reason: str, params: Params
) -> list[Event]:
    """Take an attester's bond and fee share: the reward share to the solver, the rest burned
    (an audit it lost, or a seal it opened on a segment that re-executes, or never opened)."""
    if attester not in job.bonded_attesters:
        return []
    assert job.solver is not None
    state.set_job(
        replace(
            job,
            attesters=tuple(v for v in job.attesters if v != attester),
            bonded_attesters=tuple(v for v in job.bonded_attesters if v != attester),
        )
    )
    slash = compute_slash(job.attest_bond, (job.solver,), params)
    pay_slash(state, slash)
    return [
        make_event(
            "attestation_forfeited",
            job_id=job.job_id,
            attester=attester,
            forfeited=slash.amount,
            reward=slash.reward,
            burned=slash.burned,
            reason=reason,
        )
    ]


# --- the forced error inside a dispute ------------------------------------------------------


def awaits_trap_reveal(job: Job, step: int, checkpoint_interval: int) -> bool:
    """After the referee disagreed with the solver at ``step``: may the solver still show it
    is a forced error? Only on a job with traps, at the last step of a segment."""
    return job.trap_root is not None and segment_of_last_step(step, checkpoint_interval) is not None


def enter_reveal_trap(
    state: LedgerState, ctx: TxContext, dispute: Dispute, params: Params
) -> list[Event]:
    """Wait for the solver's ``reveal_trap``: until ``move_timeout`` blocks after the later of
    now and the end of the challenge window."""
    job = state.get_job(dispute.job_id)
    assert job.challenge_deadline is not None
    deadline = Height(max(ctx.height, job.challenge_deadline) + params.move_timeout)
    return game.advance_until(state, dispute, Phase.REVEAL_TRAP, deadline)


def process_reveal_trap(
    state: LedgerState, ctx: TxContext, body: RevealTrapBody, params: Params
) -> list[Event]:
    """Solver: the disputed step is the forced error of its segment (see the module doc)."""
    dispute, party = game.begin_move(state, ctx, body.dispute_id, "reveal_trap")
    job = state.get_job(dispute.job_id)
    require_window_closed(state, job, ctx, "forced-error reveals")
    a, h_a, h_b = dispute.step_lo, dispute.hash_lo, dispute.hash_hi
    assert a is not None and h_a is not None and h_b is not None
    spec = get_job_spec(job)
    segment = segment_of_last_step(a, spec.checkpoint_interval)
    assert segment is not None
    draw = verified_trap(state, job, segment, body.secret, body.proof, params)
    # INVARIANT: the blob is the agreed pre-state, within the chain's size limit.
    game.require_state_blob(body.blob, h_a, params)
    try:
        forced: Hash32 | None = referee.forced_error_post_hash(spec, body.blob, a, draw.selector)
    except ProofNetError:
        forced = None
    dispute = game.record(
        dispute, "reveal_trap", party, ctx, segment=segment, secret=body.secret, post_hash=forced
    )
    if forced != h_b:
        reason = f"step {a} is not the forced error of segment {segment} either"
        return game.resolve_dispute(
            state, ctx, dispute, Party.CHALLENGER, reason, a, params, Resolution.NOT_FORCED_ERROR
        )
    return _close_forced_error(state, ctx, dispute, segment)


def _close_forced_error(
    state: LedgerState, ctx: TxContext, dispute: Dispute, segment: int
) -> list[Event]:
    """Nobody cheated: the bond goes back (the challenger's attestation pays its fee share)."""
    reason = f"step {dispute.step_lo} is the forced error of segment {segment}"
    status, located = DisputeStatus.FORCED_ERROR, dispute.step_lo
    _close_at_no_fault(
        state, ctx, dispute, status, reason, Resolution.FORCED_ERROR, located_step=located
    )
    return [
        make_event(
            "forced_error_confirmed",
            dispute_id=dispute.dispute_id,
            job_id=dispute.job_id,
            challenger=dispute.challenger,
            segment=segment,
            step=dispute.step_lo,
            bond_returned=dispute.bond,
            reason=reason,
        )
    ]


# --- audits ---------------------------------------------------------------------------------


def _require_auditable(
    state: LedgerState, ctx: TxContext, job: Job, body: AuditBody, params: Params
) -> None:
    # The job is committed, its challenge window over, every sealed challenge opened (or
    # expired) and its audit window open ...
    require_status(job, JobStatus.COMMITTED)
    require_window_closed(state, job, ctx, "audits")
    start, end = audit_window_start(job, params), audit_window_end(job, params)
    if ctx.height < start:
        raise DeadlineNotReachedError("audits", Height(start - 1), ctx.height)
    if ctx.height > end:
        raise DeadlinePassedError("audits", end, ctx.height)
    # ... the auditor is the job's solver ...
    if ctx.sender != job.solver:
        raise NotAuthorizedError(ctx.sender, "the job's solver")
    # ... the attester posted a bond and was not audited yet ...
    if body.attester not in job.bonded_attesters:
        raise MalformedBodyError("attester", "did not attest this job with a bond")
    if body.attester in job.audited:
        raise AlreadyAuditedError(job.job_id, body.attester)
    # ... and the segment was in its sample, and not one it challenged.
    if body.segment not in get_verifier_sample(state, job.job_id, body.attester):
        raise MalformedBodyError("segment", f"{body.segment} is not in the attester's sample")
    if body.segment in _challenged_segments(state, job, body.attester):
        raise MalformedBodyError("segment", f"the attester challenged segment {body.segment}")


def process_audit(
    state: LedgerState, ctx: TxContext, body: AuditBody, params: Params
) -> list[Event]:
    """Solver: open an audit of an attester that vouched for one of its forced errors."""
    job = state.get_job(body.job_id)
    _require_auditable(state, ctx, job, body, params)
    draw = verified_trap(state, job, body.segment, body.secret, body.secret_proof, params)
    game.verify_leaf("pre_proof", body.pre_entry, body.segment, job, body.pre_proof)
    game.verify_leaf("post_proof", body.post_entry, body.segment + 1, job, body.post_proof)
    dispute_id = game.new_dispute_id(state, job, ctx)

    decrease_balance(state, ctx.sender, params.challenge_bond)  # InsufficientBalanceError
    a, b = game.segment_interval(body.segment + 1, get_job_spec(job).checkpoint_interval)
    phase = game.phase_after_interval(a, b)
    deadline = Height(ctx.height + params.move_timeout)
    assert job.solver is not None
    opening: dict[str, Any] = {"attester": body.attester, "segment": body.segment}
    audit = Dispute(
        dispute_id=dispute_id,
        job_id=job.job_id,
        solver=job.solver,
        challenger=body.attester,
        bond=Amount(params.challenge_bond),
        opened_height=ctx.height,
        status=DisputeStatus.OPEN,
        phase=phase,
        turn=TURN[phase],
        deadline=deadline,
        leaf_index=body.segment + 1,
        step_lo=a,
        step_hi=b,
        hash_lo=body.pre_entry,
        hash_hi=body.post_entry,
        moves=(DisputeMove("audit", Party.SOLVER, ctx.sender, ctx.height, opening),),
        audit=True,
        trap_segment=body.segment,
        trap_selector=draw.selector,
    )
    game.register_dispute(state, job, audit, audited=(*job.audited, body.attester))
    return [
        make_event(
            "audit_opened",
            job_id=job.job_id,
            dispute_id=dispute_id,
            solver=job.solver,
            attester=body.attester,
            segment=body.segment,
            bond=params.challenge_bond,
            phase=phase,
            turn=TURN[phase],
            deadline=deadline,
        )
    ]


def judge_audit_step(
    state: LedgerState,
    ctx: TxContext,
    dispute: Dispute,
    blob: bytes,
    params: Params,
) -> list[Event]:
    """The referee's verdict on an audit's one remaining step (see the module doc)."""
    a, h_b = dispute.step_lo, dispute.hash_hi
    assert a is not None and h_b is not None and dispute.trap_segment is not None
    assert dispute.trap_selector is not None
    spec = get_job_spec(state.get_job(dispute.job_id))
    try:
        post: Hash32 | None = referee.one_step_post_hash(spec, blob, a)
        forced = (
            referee.forced_error_post_hash(spec, blob, a, dispute.trap_selector)
            if a == trap_step(dispute.trap_segment, spec.checkpoint_interval)
            else None
        )
    except ProofNetError as exc:
        reason = f"the solver's pre-state of step {a} is invalid: {exc.message}"
        return resolve_audit(
            state, ctx, dispute, False, reason, params, Resolution.INVALID_PRESTATE
        )
    dispute = game.record(
        dispute, "post_prestate", Party.NOBODY, ctx, step=a, post_hash=post, forced_hash=forced
    )
    if forced is not None:
        if forced == h_b:
            reason = f"step {a} is the planted forced error the attester vouched against"
            return resolve_audit(
                state, ctx, dispute, True, reason, params, Resolution.AUDIT_FORCED_ERROR
            )
        why = "was never planted" if post == h_b else "is not what the solver committed"
        reason = f"the forced error {why}"
        return resolve_audit(
            state, ctx, dispute, False, reason, params, Resolution.AUDIT_FORCED_ERROR
        )
    if post == h_b:
        reason = f"step {a} re-executed to the solver's hash, which the attester disputed"
        return resolve_audit(state, ctx, dispute, True, reason, params, Resolution.ONE_STEP)
    reason = f"step {a} re-executed to a different hash than the solver's"
    return resolve_audit(state, ctx, dispute, False, reason, params, Resolution.ONE_STEP)


def resolve_audit(
    state: LedgerState,
    ctx: TxContext,
    dispute: Dispute,
    attester_lost: bool,
    reason: str,
    params: Params,
    resolution: Resolution,
) -> list[Event]:
    """Close an audit: the loser forfeits its bond (the reward share to the winner);
    ``resolution`` says what decided it."""
    require_transition(dispute, Phase.RESOLVED)
    job = state.get_job(dispute.job_id)
    attester, solver = dispute.challenger, dispute.solver
    state.set_job(replace(job, open_disputes=job.open_disputes - 1))
    if attester_lost:
        # The attestation bond leaves the job (unless a losing seal took it already); the fee
        # share goes with it.
        bonded = attester in job.bonded_attesters
        forfeit_attestation(state, state.get_job(job.job_id), attester, reason, params)
        slash = compute_slash(job.attest_bond if bonded else 0, (solver,), params)
        increase_balance(state, solver, dispute.bond)
        status, winner = DisputeStatus.ATTESTER_LOST, Party.SOLVER
    else:
        slash = compute_slash(dispute.bond, (attester,), params)
        pay_slash(state, slash)
        status, winner = DisputeStatus.AUDITOR_LOST, Party.CHALLENGER
    state.set_dispute(
        replace(
            dispute,
            status=status,
            phase=Phase.RESOLVED,
            turn=Party.NOBODY,
            winner=winner,
            reason=reason,
            resolution=resolution,
            closed_height=ctx.height,
        )
    )
    return [
        make_event(
            "audit_resolved",
            dispute_id=dispute.dispute_id,
            job_id=dispute.job_id,
            attester=attester,
            solver=solver,
            attester_lost=attester_lost,
            forfeited=slash.amount,
            reward=slash.reward,
            burned=slash.burned,
            reason=reason,
            resolution=resolution,
        )
    ]
