"""Scripted players for forced errors (``protocol.forced_errors``) in ledger tests.

``TrapSolver`` is an honest solver on a chain with forced errors: it commits to its secrets in
the bid, plants the drawn traps in its trajectory, reveals a trap when a dispute reaches one and
audits the attesters of its traps. Verifiers are played from ``tests.dispute_agents`` runs: an
honest verifier re-executes from the honest (trap-free) trajectory and sees a trap as a
mismatch; a lazy one attests without looking. These are test strategies; the real agents live
in ``services/``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from contracts_sim.jobs import (
    audit_window_start,
    get_job_spec,
    get_verifier_sample,
    settle_height,
)
from contracts_sim.records import DisputeStatus, Job, JobStatus, Phase
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import (
    AttestBody,
    AuditBody,
    BidBody,
    ChallengeBody,
    ClaimTimeoutBody,
    CloseBiddingBody,
    RevealTrapBody,
    SegmentEvidence,
    SettleBody,
    UnsealBody,
)
from protocol.exact import decode_state, encode_state, init, step
from protocol.exact.forced_error import step_with_traps
from protocol.forced_errors import (
    draw_trap,
    seal,
    segment_secret,
    trap_proof,
    trap_root,
    trap_step,
)
from protocol.spec import JobSpec
from protocol.state_commitment import blob_root
from protocol.types import Address, Amount, Hash32, Height
from tests.dispute_agents import Run, next_body, tiny_spec
from tests.ledger_helpers import final_commit, job, post_job


@functools.cache
def run_with_traps(
    spec: JobSpec, traps: frozenset[tuple[int, int]], cheat_step: int | None = None
) -> Run:
    """The job's trajectory with forced errors planted (step -> selector), and a cheat (one
    more unit in ``layer0.weight[0, 0]``) after ``cheat_step`` if given."""
    plan = dict(traps)
    state = init(spec)
    blobs = [encode_state(state)]
    for i in range(spec.steps):
        state = step_with_traps(spec, state, i, plan)
        if i == cheat_step:
            weight = state["layer0.weight"].clone()
            weight[0, 0] += 1
            state = {**state, "layer0.weight": weight}
        blobs.append(encode_state(state))
    hashes = tuple(blob_root(b) for b in blobs)
    return Run(spec, hashes, tuple(blobs), hashes[:: spec.checkpoint_interval])


def verifier_view(run: Run, segment: int) -> Run:
    """What an honest verifier computes for ``segment`` of the solver's ``run``: the segment
    re-executed from the solver's own checkpoint, with no forced error (it knows of none).
    Outside the segment the view copies the solver's hashes (the verifier has no other)."""
    spec = run.spec
    c = spec.checkpoint_interval
    a = segment * c
    hashes, blobs = list(run.hashes), list(run.blobs)
    state = decode_state(run.blobs[a])
    for i in range(a, a + c):
        state = step(spec, state, i)
        blobs[i + 1] = encode_state(state)
        hashes[i + 1] = blob_root(blobs[i + 1])
    return Run(spec, tuple(hashes), tuple(blobs), tuple(hashes[::c]))


@dataclass
class TrapSolver:
    """An honest solver with forced errors, for one job."""

    h: LedgerHarness
    name: str = "solver"
    seed: str = "solver"
    plant: bool = True  # False: commits to traps but never plants them (not honest)

    @property
    def master(self) -> bytes:
        return hashlib.sha256(f"trap-master/{self.seed}".encode()).digest()

    @property
    def segments(self) -> int:
        return tiny_spec().num_segments

    def bid(self, job_id: str, price: int = 800) -> None:
        root = trap_root(self.master, job_id, self.segments)
        self.h.send(self.name, BidBody(job_id, Amount(price), 8, root))

    def draws(self, job: Job) -> dict[int, int]:
        """Segment -> selector of every forced error drawn for ``job``."""
        assert job.assigned_height is not None
        beacon = self.h.state.get_beacon_output(Height(job.assigned_height + 1))
        assert beacon is not None, "advance past the assignment block first"
        found = {}
        for x in range(self.segments):
            draw = draw_trap(
                segment_secret(self.master, job.job_id, x),
                beacon,
                job.job_id,
                x,
                self.h.params.forced_error_bps,
            )
            if draw.is_trap:
                found[x] = draw.selector
        return found

    def run(self, job: Job, cheat_step: int | None = None) -> Run:
        spec = get_job_spec(job)  # the job's own seed (protocol.forced_errors.job_seed)
        if not self.plant:
            return run_with_traps(spec, frozenset(), cheat_step)
        c = spec.checkpoint_interval
        plan = frozenset((trap_step(x, c), s) for x, s in self.draws(job).items())
        return run_with_traps(spec, plan, cheat_step)

    def commit(self, job_id: str, run: Run) -> None:
        self.h.send(self.name, final_commit(job_id, run.tree))

    def reveal(
        self, job_id: str, dispute_id: str, segment: int, run: Run, step: int
    ) -> RevealTrapBody:
        """The ``reveal_trap`` of the forced error at ``segment`` (blob: state ``step``)."""
        return RevealTrapBody(
            dispute_id=dispute_id,
            secret=Hash32(segment_secret(self.master, job_id, segment)),
            proof=trap_proof(self.master, job_id, self.segments, segment),
            blob=run.blobs[step],
        )

    def reveal_body(
        self, job_id: str, dispute_id: str, segment: int, run: Run, step: int
    ) -> dict[str, Any]:
        """The JSON of ``reveal`` (for the tests that malform it)."""
        return self.reveal(job_id, dispute_id, segment, run, step).to_json()

    def audit(self, job_id: str, attester: str, segment: int, run: Run) -> AuditBody:
        """The ``audit`` of ``attester``, who attested the trap at ``segment``."""
        return AuditBody(
            job_id=job_id,
            attester=Address(self.h.address(attester)),
            segment=segment,
            secret=Hash32(segment_secret(self.master, job_id, segment)),
            secret_proof=trap_proof(self.master, job_id, self.segments, segment),
            pre_entry=Hash32(run.leaves[segment]),
            pre_proof=run.tree.inclusion_proof(segment),
            post_entry=Hash32(run.leaves[segment + 1]),
            post_proof=run.tree.inclusion_proof(segment + 1),
        )

    def audit_body(self, job_id: str, attester: str, segment: int, run: Run) -> dict[str, Any]:
        """The JSON of ``audit`` (for the tests that malform it)."""
        return self.audit(job_id, attester, segment, run).to_json()


def sample_of(h: LedgerHarness, job_id: str, verifier: str) -> list[int]:
    return get_verifier_sample(h.state, job_id, h.address(verifier))


def salt_of(verifier: str, job_id: str, segment: int, nonce: int = 0) -> bytes:
    return hashlib.sha256(f"salt/{verifier}/{job_id}/{segment}/{nonce}".encode()).digest()


def sealed_challenge(
    h: LedgerHarness, job_id: str, verifier: str, segment: int, nonce: int = 0
) -> str:
    """A sealed challenge of ``segment`` (a job with forced errors); returns its dispute id."""
    commitment = seal(segment, salt_of(verifier, job_id, segment, nonce), h.address(verifier))
    body = ChallengeBody(job_id, None, sealed=Hash32(commitment))
    return str(h.send(verifier, body).event("challenged").data["dispute_id"])


def unseal(
    h: LedgerHarness, job_id: str, dispute_id: str, verifier: str, segment: int, run: Run
) -> UnsealBody:
    """The ``unseal`` of the verifier's seal of ``segment``, with ``run``'s evidence."""
    salt = Hash32(salt_of(verifier, job_id, segment))
    return UnsealBody(dispute_id, segment, salt, _evidence(segment, run))


def unseal_body(
    h: LedgerHarness, job_id: str, dispute_id: str, verifier: str, segment: int, run: Run
) -> dict[str, Any]:
    """The JSON of ``unseal`` (for the tests that malform it)."""
    return unseal(h, job_id, dispute_id, verifier, segment, run).to_json()


def sealed_verdict(
    h: LedgerHarness, job_id: str, verifier: str, segments: list[int]
) -> dict[int, str]:
    """A verifier's whole verdict on a job with forced errors: a seal of each of ``segments``,
    empty seals up to its sample size, then its attestation. Returns segment -> dispute id,
    the empty seals under the job's segment count (``empty_segment``) and above."""
    record = job(h, job_id)
    k = min(record.sample_count, record.num_leaves - 1)
    empty = record.num_leaves - 1
    ids = {x: sealed_challenge(h, job_id, verifier, x) for x in segments}
    for n in range(k - len(segments)):
        ids[empty + n] = sealed_challenge(h, job_id, verifier, empty, nonce=n)
    h.send(verifier, AttestBody(job_id))
    return ids


def open_empty_seals(h: LedgerHarness, job_id: str, verifier: str, ids: dict[int, str]) -> None:
    """Open the verifier's empty seals (after the window)."""
    empty = job(h, job_id).num_leaves - 1
    for key, dispute_id in ids.items():
        if key >= empty:
            salt = Hash32(salt_of(verifier, job_id, empty, nonce=key - empty))
            h.send(verifier, UnsealBody(dispute_id, empty, salt, None))


def close_window(h: LedgerHarness, job_id: str) -> None:
    """Move past the challenge window (or stay, if already past it)."""
    deadline = job(h, job_id).challenge_deadline
    assert deadline is not None
    h.advance_to(max(h.height, deadline + 1))


def open_audits(h: LedgerHarness, job_id: str) -> None:
    """Move to the first height of the audit window (or stay, if already in it)."""
    h.advance_to(max(h.height, audit_window_start(job(h, job_id), h.params)))


def fast_path(job_id: str, segment: int, run: Run) -> ChallengeBody:
    """A fast-path challenge of ``segment`` of the solver's ``run``."""
    return ChallengeBody(job_id, _evidence(segment, run))


def fast_path_challenge(h: LedgerHarness, job_id: str, segment: int, run: Run) -> dict[str, Any]:
    """The JSON of ``fast_path`` (for the tests that malform it)."""
    return fast_path(job_id, segment, run).to_json()


def _evidence(segment: int, run: Run) -> SegmentEvidence:
    """Leaves ``segment`` and ``segment + 1`` of ``run``, proved against its root."""
    return SegmentEvidence(
        segment=segment,
        pre_entry=Hash32(run.leaves[segment]),
        post_entry=Hash32(run.leaves[segment + 1]),
        pre_proof=run.tree.inclusion_proof(segment),
        post_proof=run.tree.inclusion_proof(segment + 1),
    )


# --- many jobs: the economics of laziness, measured on the ledger -----------------------------

VERIFIER_MODES = ("honest", "lazy", "colluding")


@dataclass
class MarketTally:
    """Token changes over a run of jobs (balances after minus before)."""

    jobs: int = 0
    profit: dict[str, int] | None = None
    caught_lazy: int = 0  # audits the lazy attester lost
    forced_errors: int = 0  # disputes that ended forced_error
    slashed_jobs: int = 0


def _honest_verdict(run: Run, sample: list[int]) -> list[int]:
    """The segments of ``sample`` whose re-execution disagrees with ``run``: what an honest
    verifier challenges (each may be a trap or a cheat; it cannot tell which)."""
    return [
        segment
        for segment in sample
        if verifier_view(run, segment).leaves[segment + 1] != run.leaves[segment + 1]
    ]


def play_jobs(
    h: LedgerHarness, rounds: int, per_round: int, modes: dict[str, str], seed: str
) -> MarketTally:
    """``rounds`` x ``per_round`` jobs by one honest ``TrapSolver``, each checked by the
    verifiers of ``modes`` (name -> honest | lazy | colluding). Every verifier attests; an
    honest one first seals a challenge of each segment of its sample that does not re-execute.
    The colluding verifier knows the solver's traps: it seals challenges of those in its
    sample and agrees with every midpoint, re-executing nothing. Every game is played out."""
    names = ["solver", "submitter", *modes]
    before = {n: h.account(n).balance for n in names}
    tally = MarketTally()
    for r in range(rounds):
        jobs = [post_job(h) for _ in range(per_round)]
        solvers = {j: TrapSolver(h, seed=f"{seed}/{r}/{j}") for j in jobs}
        for j in jobs:
            solvers[j].bid(j)
        h.advance_to(job(h, jobs[0]).bid_deadline + 1)
        for j in jobs:
            h.send("outsider", CloseBiddingBody(j))
        h.advance(2)
        runs = {j: solvers[j].run(job(h, j)) for j in jobs}
        for j in jobs:
            solvers[j].commit(j, runs[j])
        h.advance(2)
        disputes: dict[str, tuple[str, str, Run, int]] = {}  # id -> (job, verifier, view, seg)
        empties: dict[tuple[str, str], dict[int, str]] = {}  # (job, verifier) -> its seals
        for j in jobs:
            traps = solvers[j].draws(job(h, j))
            for v, mode in modes.items():
                sample = sample_of(h, j, v)
                if mode == "lazy":
                    targets = []
                elif mode == "colluding":
                    targets = [x for x in sample if x in traps]
                else:
                    targets = _honest_verdict(runs[j], sample)
                ids = sealed_verdict(h, j, v, targets)  # named only after the window
                for target in targets:
                    view = runs[j] if mode == "colluding" else verifier_view(runs[j], target)
                    disputes[ids[target]] = (j, v, view, target)
                empties[(j, v)] = ids
        deadline = job(h, jobs[0]).challenge_deadline
        assert deadline is not None
        h.advance_to(max(h.height, deadline + 1))
        for (j, v), ids in empties.items():
            open_empty_seals(h, j, v, ids)
        for dispute_id, (j, v, view, target) in disputes.items():
            h.send(v, unseal(h, j, dispute_id, v, target, runs[j]))
            _play_until_reveal(h, dispute_id, runs[j], view, v)
        for dispute_id, (j, _, _, _) in disputes.items():
            d = h.state.get_dispute(dispute_id)
            if d.phase is Phase.REVEAL_TRAP:
                assert d.step_lo is not None
                segment = d.step_lo // tiny_spec().checkpoint_interval
                h.send("solver", solvers[j].reveal(j, dispute_id, segment, runs[j], d.step_lo))
                tally.forced_errors += 1
        h.advance_to(max(h.height, audit_window_start(job(h, jobs[0]), h.params)))
        audits = _audit_attesters(h, jobs, solvers, runs, disputes)
        if audits:
            h.advance_to(max(h.state.get_dispute(a).deadline for a in audits) + 1)
            for audit_id in audits:
                receipt = h.send("outsider", ClaimTimeoutBody(None, audit_id))
                tally.caught_lazy += bool(receipt.event("audit_resolved").data["attester_lost"])
        h.advance_to(max(h.height, settle_height(job(h, jobs[0]), h.params)))
        for j in jobs:
            if job(h, j).status is JobStatus.COMMITTED:
                h.send("outsider", SettleBody(j))
            tally.slashed_jobs += job(h, j).status is JobStatus.SLASHED
        tally.jobs += per_round
    tally.profit = {n: h.account(n).balance - before[n] for n in names}
    return tally


def _play_until_reveal(h: LedgerHarness, dispute_id: str, run: Run, view: Run, v: str) -> None:
    """Both sides' moves, in the current block, until the dispute resolves or waits for the
    solver's reveal (which the ledger takes only after the challenge window)."""
    while (d := h.state.get_dispute(dispute_id)).status is DisputeStatus.OPEN:
        if d.phase is Phase.REVEAL_TRAP:
            return
        role, body = next_body(d, run, view)
        h.send("solver" if role == "solver" else v, body)


def _audit_attesters(
    h: LedgerHarness,
    jobs: list[str],
    solvers: dict[str, TrapSolver],
    runs: dict[str, Run],
    disputes: dict[str, tuple[str, str, Run, int]],
) -> list[str]:
    """The solver audits every bonded attester whose sample holds a trap and posts its first
    midpoint; returns the audits' ids (an attester that re-executed never attested a trap)."""
    audits = []
    for j in jobs:
        record = job(h, j)
        traps = solvers[j].draws(record)
        for address in record.bonded_attesters:
            name = next(n for n in h.keys if h.address(n) == address)
            challenged = {seg for (jj, v, _, seg) in disputes.values() if jj == j and v == name}
            trapped = [x for x in sample_of(h, j, name) if x in traps and x not in challenged]
            if not trapped:
                continue
            body = solvers[j].audit(j, name, trapped[0], runs[j])
            audit_id = h.send("solver", body).event("audit_opened").data["dispute_id"]
            d = h.state.get_dispute(audit_id)
            _, move = next_body(d, runs[j], runs[j])
            h.send("solver", move)
            audits.append(audit_id)
    return audits
