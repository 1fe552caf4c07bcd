"""The verifier agent: samples, fetches, re-executes, attests or challenges, plays the game.

Each ``tick``::

    fund and stake        dev faucet + the chain's minimum verifier stake, and a bond's worth
    verify                each committed job it has not judged, once its sample seed block
                          exists: fetch the leaf list (checked against the root) and the sampled
                          blobs (checked against their leaves), re-execute each sampled segment
    verdict               all equal → attest; any difference → find the *first* wrong leaf by
                          re-executing from the start (so the game locates the first wrong step)
                          and challenge on the segment before it; a sampled segment whose data
                          the solver does not serve → a data request on chain, and judge again
                          once it is published (the solver publishes or loses)
    play                  its move in each of its disputes; claim the solver's missed deadlines
    police                claim missed training deadlines of assigned jobs

Each job's work runs isolated (``Agent.isolated``): a job whose data or checks fail is backed
off and logged, and the verifier goes on policing the other jobs. Every fetch is bounded by
what the spec implies (the leaf count, the state blob's size; ``services.agents.blobs``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from contracts_sim.crypto import PrivateKey
from contracts_sim.records import Dispute, DisputeStatus, JobStatus, Party
from contracts_sim.transactions import (
    AttestBody,
    ChallengeBody,
    ClaimTimeoutBody,
    CloseBiddingBody,
    PublishDataBody,
    SegmentEvidence,
    UnsealBody,
    parse_body,
)
from protocol.errors import ProofNetError
from protocol.exact import (
    Device,
    as_device,
    decode_state_for,
    encode_state,
    run,
    state_hash,
    state_step,
)
from protocol.forced_errors import seal
from protocol.hashing import sha256
from protocol.layout import state_blob_size
from protocol.merkle import CommitmentTree, NodeRef, root_of
from protocol.state_commitment import blob_has_root
from protocol.types import Hash32
from services.agents import operator_moves, player
from services.agents.base import Agent
from services.agents.blobs import BlobSource
from services.agents.moves import Move
from services.agents.seal_store import Seal, SealStore
from services.agents.strategy import Verdict, VerifierStrategy
from services.agents.truth import Truth
from services.agents.views import DisputeView, JobView
from services.client import ChainClient


@dataclass
class Check:
    """What one verification found (kept for reports and the statistics tests)."""

    job_id: str
    sample: list[int]
    verdict: Verdict
    steps_reexecuted: int = 0
    bad_segments: list[int] = field(default_factory=list)
    withheld: bool = False
    missing: list[int] = field(default_factory=list)  # sampled segments with no data yet


LOCATE_BUDGET = 4
"""A verifier that finds a wrong sampled segment re-executes from the start to locate the first
wrong leaf only while that costs at most this many times its sample; past it, it challenges the
sampled segment itself (a long honest prefix must not make it miss the window)."""


@dataclass
class SegmentGame:
    """A fast-path challenge played relative to the segment's committed pre-state.

    The game agrees to ``hash_lo``, the committed pre-state of ``segment``, whatever it is, so
    the honest moves are those of a re-execution from that state (``truth``, seeded with it),
    not of the job's trajectory from step 0. ``truth`` is None when the pre-state blob does not
    decode into a state of the spec at the segment's first step: every midpoint is then
    disputed and the blob itself is posted, which the referee refuses — the solver authored it.
    """

    segment: int
    blob: bytes
    truth: Truth | None


def _urgency(job: JobView) -> tuple[int, int]:
    """Earliest challenge deadline first: when jobs crowd in, the verifier checks the ones that
    would settle soonest, so a flood of new jobs cannot push an older one past its window."""
    deadline = job.record.challenge_deadline
    if job.status is JobStatus.COMMITTED and deadline is not None:
        return 0, deadline
    return 1, 0


class VerifierAgent(Agent):
    role = "verifier"
    side = Party.CHALLENGER
    strategy: VerifierStrategy

    def __init__(
        self,
        client: ChainClient,
        key: PrivateKey,
        blobs: BlobSource,
        *,
        strategy: VerifierStrategy | None = None,
        device: str | Device = "cpu",
        name: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        super().__init__(client, key, name=name)
        self.blobs = blobs
        self.seal_store = SealStore(data_dir)  # sealed verdicts survive a restart
        self.strategy = strategy or VerifierStrategy()
        self.device = as_device(device)
        self.checks: dict[str, Check] = {}
        self.verify_seconds = 0.0
        self.truths: dict[str, Truth] = {}
        self.entries: dict[str, list[bytes] | None] = {}
        self.segment_results: dict[str, dict[int, bool]] = {}  # job -> segment -> reproduced
        self.withheld_segments: dict[str, set[int]] = {}  # job -> segments the solver withheld
        self.bad_data: dict[tuple[str, int], tuple[bytes, bytes, bytes]] = {}
        # (job, segment) -> a fast-path game (or an audit) played relative to the segment
        self.games: dict[tuple[str, int], SegmentGame] = {}
        self.sampled_blobs: dict[tuple[str, int], bytes] = {}  # pre-states it re-executed
        self.attest_bond_needed = 0  # the bonds of the committed jobs it may attest, this tick
        self.seals: dict[bytes, Seal] = {}  # seal -> what it hides
        self.requests_read: dict[str, tuple[int | None, dict[int, Dispute]]] = {}
        self.published: dict[tuple[str, int], tuple[bytes, bytes, bytes, SegmentEvidence]] = {}
        self.own_steps: dict[str, operator_moves.OwnStep] = {}  # dispute id -> its step a
        self.telemetry.set_strategy(self.strategy.name)

    # --- the loop ---------------------------------------------------------------------------
    def stake_needed(self) -> int:
        return self.params.min_verifier_stake

    def balance_needed(self) -> int:
        """Bonds for its disputes, and (forced errors on) an attestation bond: on a job with
        traps it challenges every bad segment of its sample, each with a bond."""
        bonds = self.params.challenge_bond
        if self.params.forced_error_bps:
            return bonds * (self.params.max_sample_count + 1) + self.attest_bond_needed
        return 2 * bonds

    def tick(self) -> None:
        height, account = self.begin_tick()
        jobs = sorted(self.jobs(), key=_urgency)
        self.attest_bond_needed = sum(
            job.record.attest_bond for job in jobs if job.status is JobStatus.COMMITTED
        )
        funded = self.ensure_funds(self.balance_needed(), self.stake_needed(), account)
        for job in jobs:
            self.observe_job(job)
            work = functools.partial(self._work_on, job, height, funded)
            self.isolated(job.job_id, height, work)

    def _work_on(self, job: JobView, height: int, funded: bool) -> None:
        """This tick's work on one job (run isolated: a failure here backs off this job only)."""
        record = job.record
        if job.status is JobStatus.OPEN and not record.bids and height > record.bid_deadline:
            self.send(Move.of(CloseBiddingBody(job.job_id)), key=f"close:{job.job_id}")
        elif job.status is JobStatus.ASSIGNED:
            self._police_training(job, height)
        elif job.status is JobStatus.COMMITTED and job.solver != self.address:
            if funded and self._needs_judging(job.job_id) and self.strategy.verify(job):
                self._judge(job, height)
            self.play_disputes(job, height)

    def involved_in(self, job: JobView) -> bool:
        return job.job_id in self.checks

    def outcome(self, job: JobView) -> str:
        check = self.checks[job.job_id]
        return f"{job.status.value} (it judged: {check.verdict.action})"

    def _needs_judging(self, job_id: str) -> bool:
        """Not judged yet, or waiting for data it asked for on chain."""
        check = self.checks.get(job_id)
        return check is None or bool(check.missing)

    def _police_training(self, job: JobView, height: int) -> None:
        deadline = job.record.train_deadline
        if deadline is not None and height > deadline:
            claim = ClaimTimeoutBody(job.job_id, None)
            self.send(Move.of(claim), key=f"late:{job.job_id}")

    def _judge(self, job: JobView, height: int) -> None:
        deadline = job.record.challenge_deadline
        if deadline is None or height > deadline:
            return
        try:
            sample = self.watcher.sample(job.job_id, self.address)
        except ProofNetError:
            return  # the seed block does not exist yet
        self.log_once(f"sample:{job.job_id}", "job %s: sample drawn: %s", job.job_id, sample)
        if not self._final_state_is_last_leaf(job):
            # Belt and braces (the ledger requires the proof): never vouch for a final model
            # that is not the committed trajectory's end.
            self.checks[job.job_id] = Check(
                job.job_id, sample, Verdict(Verdict.SKIP, "final_state_hash is not the last leaf")
            )
            self.log.warning("job %s: final_state_hash is not the last leaf", job.job_id)
            return
        started = time.perf_counter()
        check = self.check(job, sample)
        elapsed = time.perf_counter() - started
        self.verify_seconds += elapsed
        self.telemetry.verify_seconds.inc(elapsed)
        if check.missing:
            self._request_missing_data(job, height, check.missing)
            self.checks[job.job_id] = check  # pending: judged again once the data is out
            return
        verdict = self.strategy.verdict(job, check.verdict)
        entries, leaf = self.entries.get(job.job_id), verdict.first_bad_leaf or 0
        named = verdict.action == Verdict.CHALLENGE and not verdict.challenge_body
        if named and entries and 0 < leaf < len(entries):
            # The strategy named the wrong leaf: challenge the segment before it, with proofs.
            verdict = self._challenge_segment(job, entries, leaf - 1, verdict.reason)
        check.verdict = verdict
        if job.record.trap_root is not None:
            sent = self._verdict_with_traps(job, verdict)
        elif verdict.action == Verdict.ATTEST:
            sent = self.send(Move.of(AttestBody(job.job_id)), key=f"attest:{job.job_id}")
            if sent:
                self.telemetry.samples_attested.inc()
        elif verdict.action == Verdict.CHALLENGE:
            body = verdict.challenge_body or ChallengeBody(job.job_id, None)
            sent = self.send_dispute_move(Move.of(body), key=f"challenge:{job.job_id}")
            if sent:
                self.telemetry.samples_challenged.inc()
            for more in verdict.more_challenges:
                segment = more.evidence.segment if more.evidence is not None else None
                key = f"challenge:{job.job_id}:{segment}"
                if self.send_dispute_move(Move.of(more), key=key):
                    self.telemetry.samples_challenged.inc()
        else:
            sent = True
        if sent:
            self.checks[job.job_id] = check
            if verdict.action != Verdict.SKIP:
                what = "job %s: %s (%s)"
                self.log.info(what, job.job_id, verdict.action, verdict.reason or "-")

    # --- verification -------------------------------------------------------------------------
    def truth(self, job: JobView) -> Truth:
        if job.job_id not in self.truths:
            self.truths[job.job_id] = Truth(job.spec, self.device, self.telemetry.truth_steps)
        return self.truths[job.job_id]

    def _final_state_is_last_leaf(self, job: JobView) -> bool:
        """The declared final state is the last leaf served (unknown while leaves are withheld)."""
        entries = self._served_entries(job)
        return entries is None or entries[-1] == job.record.final_state_hash

    def _served_entries(self, job: JobView) -> list[bytes] | None:
        if job.job_id not in self.entries:
            entries = self.blobs.leaves(str(job.solver), job.job_id, job.num_leaves)
            root = job.record.final_root
            if entries is not None and (len(entries) != job.num_leaves or root_of(entries) != root):
                entries = None  # not the committed trajectory: treat as withheld
            self.entries[job.job_id] = entries
        return self.entries[job.job_id]

    def _segment_data(
        self, job: JobView, entries: list[bytes] | None, segment: int
    ) -> tuple[bytes, bytes, bytes] | None:
        """(pre entry, post entry, blob) of ``segment``: served by the solver, or published on
        chain in answer to a data request; None while neither has it."""
        spec = job.spec
        if entries is not None:
            size = state_blob_size(spec)
            blob = self.blobs.blob(str(job.solver), job.job_id, entries[segment], size)
            if blob is not None and blob_has_root(blob, entries[segment]):
                return entries[segment], entries[segment + 1], blob
        self.withheld_segments.setdefault(job.job_id, set()).add(segment)
        published = self._published(job, segment)
        if published is None:
            return None
        pre_entry, post_entry, blob, _ = published
        return pre_entry, post_entry, blob

    def _segment_ok(self, job: JobView, entries: list[bytes] | None, segment: int) -> bool | None:
        """True/False: the segment re-executes to its leaf or not; None: no data for it yet."""
        data = self._segment_data(job, entries, segment)
        if data is None:
            return None
        _, post_entry, blob = data
        self.sampled_blobs[(job.job_id, segment)] = blob  # to defend an audit of the verdict
        spec = job.spec
        ok = False
        try:
            state = decode_state_for(spec, blob, self.device)
            if state_step(state) == segment * spec.checkpoint_interval:
                start = segment * spec.checkpoint_interval
                post = run(spec, state, start, start + spec.checkpoint_interval)
                self.telemetry.sample_steps(spec.checkpoint_interval)
                ok = state_hash(post) == post_entry
        except ProofNetError:
            ok = False
        if not ok:
            self.bad_data[(job.job_id, segment)] = data
        return ok

    def check(self, job: JobView, sample: list[int]) -> Check:
        """Re-execute the sampled segments and reach the honest verdict.

        A segment whose data the solver does not serve is ``missing``: the verifier asks for it
        on chain (a data request) instead of guessing, and judges once it is published — a
        solver that cannot publish it (a fabricated leaf, or data it no longer has) loses the
        request's deadline. So a verifier never pays, in bond or in re-executing the whole
        trajectory, for data it could not get.
        """
        check = Check(job.job_id, sample, Verdict(Verdict.ATTEST, "sample re-executed"))
        if not self.strategy.reexecute(job):
            check.verdict = Verdict(Verdict.ATTEST, "attested without re-executing")
            return check
        entries = self._served_entries(job)
        check.withheld = entries is None
        results = self.segment_results.setdefault(job.job_id, {})
        for segment in sample:
            if segment not in results:
                ok = self._segment_ok(job, entries, segment)
                if ok is None:
                    check.missing.append(segment)
                    check.withheld = True
                    continue
                results[segment] = ok
            check.steps_reexecuted += job.spec.checkpoint_interval
            if not results[segment]:
                check.bad_segments.append(segment)
        check.withheld |= bool(self.withheld_segments.get(job.job_id, set()) & set(sample))
        if check.bad_segments and job.record.trap_root is not None:
            # Any bad segment may be a forced error: challenge each of them, relatively.
            reason = "sampled segment does not reproduce (a forced error or a cheat)"
            verdicts = [
                self._challenge_relative(job, entries, segment, reason)
                for segment in sorted(check.bad_segments)
            ]
            check.verdict = replace(
                verdicts[0],
                more_challenges=tuple(v.challenge_body for v in verdicts[1:] if v.challenge_body),
            )
            # No verdict while a sampled segment is unchecked: the attestation would vouch
            # for it (and the solver decides what it withholds). The data request decides.
        elif check.bad_segments:
            reason = "sampled segment does not reproduce"
            first_bad = min(check.bad_segments)
            if entries is not None and first_bad < LOCATE_BUDGET * len(sample):
                check.verdict = self._challenge(job, entries, reason)
            else:
                check.verdict = self._challenge_relative(job, entries, first_bad, reason)
            check.missing = []  # a wrong segment decides it: no need to wait for more data
        elif check.missing:
            check.verdict = Verdict(Verdict.SKIP, "waiting for data requested on chain")
        return check

    # --- data availability ------------------------------------------------------------------
    def _data_requests(self, job: JobView) -> dict[int, Dispute]:
        """The job's data requests on chain, by segment (one per segment, ledger rule); read
        once per tick, however many segments ask."""
        read = self.requests_read.get(job.job_id)
        if read is not None and read[0] is not None and read[0] == self._tick_height:
            return read[1]
        requests: dict[int, Dispute] = {}
        if job.record.disputes:
            for dispute in self.disputes(job):
                d = dispute.record
                if d.data_request and d.leaf_index is not None:
                    requests[d.leaf_index] = d
        self.requests_read[job.job_id] = (self._tick_height, requests)
        return requests

    def _published(
        self, job: JobView, segment: int
    ) -> tuple[bytes, bytes, bytes, SegmentEvidence] | None:
        """(pre entry, post entry, blob, proofs body) that the solver published for ``segment``
        in answer to a data request, read once from the block that holds it."""
        if (job.job_id, segment) not in self.published:
            found = self._read_published(job, segment)
            if found is None:
                return None
            self.published[(job.job_id, segment)] = found
        return self.published[(job.job_id, segment)]

    def _read_published(
        self, job: JobView, segment: int
    ) -> tuple[bytes, bytes, bytes, SegmentEvidence] | None:
        d = self._data_requests(job).get(segment)
        if d is None or d.status is not DisputeStatus.DATA_PUBLISHED:
            return None
        assert d.hash_lo is not None and d.hash_hi is not None
        move = next(m for m in d.moves if m.kind == PublishDataBody.kind)
        for tx in self.client.get_block(move.height).transactions:
            if tx.kind != PublishDataBody.kind:
                continue
            body = parse_body(tx.kind, tx.body)
            assert isinstance(body, PublishDataBody)
            if body.dispute_id == d.dispute_id and blob_has_root(body.blob, d.hash_lo):
                # the ledger checked it; the node serves blocks
                evidence = SegmentEvidence(
                    segment, body.pre_entry, body.post_entry, body.pre_proof, body.post_proof
                )
                return d.hash_lo, d.hash_hi, body.blob, evidence
        return None

    def _request_missing_data(self, job: JobView, height: int, missing: list[int]) -> None:
        """Ask on chain for each missing segment nobody has asked for yet."""
        final_height = job.record.final_height
        window = self.params.challenge_window
        if final_height is None or height > final_height + window:
            return  # requests are only allowed within the original window
        requested = self._data_requests(job)
        for segment in missing:
            if segment in requested:
                continue  # asked already: its publication (or its deadline) serves everyone
            request = ChallengeBody(job.job_id, None, data_segment=segment)
            if self.send_dispute_move(Move.of(request), key=f"request:{job.job_id}:{segment}"):
                self.telemetry.data_requests.inc()
                self.log.info("job %s: data of segment %d withheld; requested", job.job_id, segment)

    def _challenge_relative(
        self, job: JobView, entries: list[bytes] | None, segment: int, reason: str
    ) -> Verdict:
        """Challenge ``segment`` on the fast path and play it from its committed pre-state
        (``SegmentGame``): sound whether or not that pre-state is on the true trajectory, and
        no re-execution outside the segment. The leaves and proofs come from the served leaf
        list, or from what the solver published in answer to a data request."""
        _, _, blob = self.bad_data[(job.job_id, segment)]
        evidence = self._seal_evidence(job, entries, segment)
        assert evidence is not None, "a bad segment without a leaf list was published"
        self.games[(job.job_id, segment)] = SegmentGame(
            segment, blob, self._relative_truth(job, segment, blob)
        )
        return Verdict(Verdict.CHALLENGE, reason, ChallengeBody(job.job_id, evidence))

    def _segment_game(self, job: JobView, segment: int) -> SegmentGame | None:
        """A game over one segment played from its committed pre-state: an audit of this
        verifier's attestation, or its own opened seal after a restart (the pre-state it
        re-executed, kept since, or fetched again), exactly as its fast-path challenge is."""
        blob = self.sampled_blobs.get((job.job_id, segment))
        entries = self.entries.get(job.job_id)
        if blob is None and entries:
            blob = self.seal_store.get_blob(entries[segment])  # kept when it sealed
        if blob is None:
            for kept in self.seal_store.seals_of(job.job_id).values():
                if kept.segment == segment and kept.evidence is not None:
                    blob = self.seal_store.get_blob(kept.evidence.pre_entry)
        if blob is None:
            data = self._segment_data(job, self._served_entries(job), segment)
            if data is None:
                return None
            blob = data[2]
        game = SegmentGame(segment, blob, self._relative_truth(job, segment, blob))
        self.games[(job.job_id, segment)] = game
        self.log.info("job %s: playing segment %d from its pre-state", job.job_id, segment)
        return game

    def _relative_truth(self, job: JobView, segment: int, blob: bytes) -> Truth | None:
        """A trajectory seeded with the segment's pre-state; None if the blob is no such state."""
        spec = job.spec
        try:
            state = decode_state_for(spec, blob, self.device)
        except ProofNetError:
            return None
        if state_step(state) != segment * spec.checkpoint_interval:
            return None
        truth = Truth(spec, self.device, self.telemetry.truth_steps)
        truth.adopt(segment, state)
        return truth

    def _challenge(self, job: JobView, entries: list[bytes], reason: str) -> Verdict:
        """Locate the first wrong leaf from the start and challenge the segment before it."""
        truth = self.truth(job)
        first = truth.first_wrong_leaf(entries)
        if first is None:
            return Verdict(Verdict.SKIP, "trajectory is correct; only data was unavailable")
        if first == 0:
            plain = ChallengeBody(job.job_id, None)
            return Verdict(Verdict.CHALLENGE, reason, plain, first_bad_leaf=0)
        verdict = self._challenge_segment(job, entries, first - 1, reason)
        return Verdict(verdict.action, reason, verdict.challenge_body, first_bad_leaf=first)

    def _challenge_segment(
        self, job: JobView, entries: list[bytes], segment: int, reason: str
    ) -> Verdict:
        evidence = _evidence(entries, segment)
        return Verdict(Verdict.CHALLENGE, reason, ChallengeBody(job.job_id, evidence))

    # --- forced errors (protocol.forced_errors) ------------------------------------------------
    def _salt(self, job_id: str, index: int) -> bytes:
        """The salt of this verifier's ``index``-th seal on ``job_id``, derived from its key: a
        restarted verifier can still open it, and no two seals of a verdict look alike."""
        return sha256(self.key.sign(f"proofnet/seal-salt/v2/{job_id}/{index}".encode()))

    def _verdict_with_traps(self, job: JobView, verdict: Verdict) -> bool:
        """On a job with forced errors the whole verdict is sealed and looks the same for every
        verifier: one seal per sampled segment — of each bad one, empty for the rest — then the
        attestation. Opened after the window (``_unseal``), so nobody can copy it or read it."""
        bodies = [verdict.challenge_body, *verdict.more_challenges]
        named = (
            [b.evidence for b in bodies if b is not None and b.evidence is not None]
            if verdict.action == Verdict.CHALLENGE
            else []
        )
        if verdict.action == Verdict.SKIP:
            return True
        size = min(job.sample_count, job.num_leaves - 1)
        empty = job.num_leaves - 1  # an empty seal names one past the last segment
        seals: list[tuple[int, SegmentEvidence | None]] = [(e.segment, e) for e in named[:size]]
        seals += [(empty, None)] * (size - len(seals))
        for index, (segment, evidence) in enumerate(seals):
            salt = self._salt(job.job_id, index)
            commitment = seal(segment, salt, self.address)
            self.seals[commitment] = Seal(segment, salt, evidence)
            self.seal_store.put_seal(commitment, job.job_id, segment, salt, evidence)
            pre_state = self.sampled_blobs.get((job.job_id, segment))
            if evidence is not None and pre_state is not None:
                self.seal_store.put_blob(pre_state)  # its game is played from it
            sealed = ChallengeBody(job.job_id, None, sealed=Hash32(commitment))
            sent = self.send_dispute_move(Move.of(sealed), key=f"seal:{job.job_id}:{index}")
            if sent and evidence is not None:
                self.telemetry.samples_challenged.inc()
        sent = self.send(Move.of(AttestBody(job.job_id)), key=f"attest:{job.job_id}")
        if sent:
            self.telemetry.samples_attested.inc()
        return sent

    def unseal(self, job: JobView, d: Dispute) -> UnsealBody | None:
        """What this verifier's sealed challenge hides (opened once the window has closed)."""
        sealed = d.sealed
        assert sealed is not None
        if sealed not in self.seals:
            self.seals.update(self.seal_store.seals_of(job.job_id))  # a restarted verifier
        if sealed not in self.seals:
            self._recover_seals(job)  # no record on disk either: its seals come from its key
        if sealed not in self.seals:
            return None
        kept = self.seals[sealed]
        return UnsealBody(d.dispute_id, kept.segment, Hash32(kept.salt), kept.evidence)

    def _recover_seals(self, job: JobView) -> None:
        """Rebuild what this verifier's seals on ``job`` hide from its key alone: every salt is
        derived from the key and the seal's index, so trying each sampled segment (and the
        empty one) at each index finds them; the evidence comes from the served leaves."""
        try:
            sample = [int(x) for x in self.watcher.sample(job.job_id, self.address)]
        except ProofNetError:
            return
        size = min(job.sample_count, job.num_leaves - 1)
        empty = job.num_leaves - 1
        entries = self._served_entries(job)
        for index in range(size):
            salt = self._salt(job.job_id, index)
            for segment in (*sample, empty):
                body = None if segment == empty else self._seal_evidence(job, entries, segment)
                self.seals[seal(segment, salt, self.address)] = Seal(segment, salt, body)

    def _seal_evidence(
        self, job: JobView, entries: list[bytes] | None, segment: int
    ) -> SegmentEvidence | None:
        """Both leaves of ``segment`` with their proofs: from the served leaf list, or from
        what the solver published on chain in answer to a data request."""
        if entries is not None:
            return _evidence(entries, segment)
        published = self._published(job, segment)
        return None if published is None else published[3]

    def metrics(self) -> dict[str, Any]:
        """Work done so far: steps re-executed (sample checks and dispute ground truth)."""
        sampled = sum(c.steps_reexecuted for c in self.checks.values())
        truth = sum(t.steps_executed for t in self.truths.values())
        return {
            "role": "verifier",
            "address": self.address,
            "jobs_checked": len(self.checks),
            "steps_reexecuted": sampled + truth,
            "sample_steps": sampled,
            "truth_steps": truth,
            "verify_seconds": round(self.verify_seconds, 3),
            "verdicts": {job_id: c.verdict.action for job_id, c in self.checks.items()},
        }

    # --- the game -----------------------------------------------------------------------------
    def forget_dispute(self, dispute_id: str) -> None:
        self.own_steps.pop(dispute_id, None)  # its step's trace is no longer needed

    def honest_move(self, job: JobView, dispute: DisputeView) -> Move | None:
        return player.challenger_move(dispute.record, _Checks(self, job, dispute.record))

    def game_of(self, job: JobView, d: Dispute) -> SegmentGame | None:
        """The fast-path game ``d`` is played in, relative to its segment's committed
        pre-state (None: a game played from step 0 on this verifier's own trajectory)."""
        leaf = d.leaf_index
        game = self.games.get((job.job_id, leaf - 1)) if leaf is not None else None
        if game is None and d.audit:
            assert d.trap_segment is not None
            game = self._segment_game(job, d.trap_segment)
        elif game is None and d.sealed and leaf is not None:
            game = self._segment_game(job, leaf - 1)  # its own seal, after a restart
        return game

    def own_step(
        self, job: JobView, d: Dispute, truth: Truth | None
    ) -> operator_moves.OwnStep | None:
        """This verifier's own run of the disputed step from the agreed pre-state
        (``truth``'s state at step a, which hashes to ``hash_lo``: it agreed to it), for the
        operator-level game; run once per dispute."""
        own = self.own_steps.get(d.dispute_id)
        if own is None:
            a = d.step_lo
            if truth is None or a is None or truth.hash_at(a) != d.hash_lo:
                return None  # no state of its own to play from: the deadline decides
            own = operator_moves.run_step(job.spec, truth.state_at(a), a)
            self.own_steps[d.dispute_id] = own
        return own


class _Checks:
    """The verifier's side of a dispute (``player.Checks``): its own re-execution, from step 0
    (``Truth``) or, in a fast-path game, from the segment's committed pre-state."""

    def __init__(self, agent: VerifierAgent, job: JobView, dispute: Dispute) -> None:
        self.agent, self.job, self.dispute = agent, job, dispute

    @functools.cached_property
    def game(self) -> SegmentGame | None:
        return self.agent.game_of(self.job, self.dispute)

    @functools.cached_property
    def truth(self) -> Truth | None:
        """The trajectory this side answers from (None: a pre-state that is no state)."""
        return self.agent.truth(self.job) if self.game is None else self.game.truth

    def node_hash(self, node: NodeRef) -> bytes | None:
        if self.game is not None:
            return None  # a fast-path game has no descent
        assert self.truth is not None
        return self.truth.node_hash(node)

    def hash_at(self, step: int) -> bytes | None:
        return None if self.truth is None else self.truth.hash_at(step)

    def blob_at(self, step: int) -> bytes | None:
        return None if self.truth is None else encode_state(self.truth.state_at(step))

    def agreed_blob(self, step: int) -> bytes | None:
        game = self.game
        if game is None or step != game.segment * self.job.spec.checkpoint_interval:
            return None
        return game.blob  # the committed pre-state itself: it hashes to hash_lo

    def operator_step(self, dispute: Dispute) -> operator_moves.OwnStep | None:
        return self.agent.own_step(self.job, dispute, self.truth)

    def unseal(self, dispute: Dispute) -> UnsealBody | None:
        return self.agent.unseal(self.job, dispute)


def _evidence(entries: list[bytes], segment: int) -> SegmentEvidence:
    """Leaves ``segment`` and ``segment + 1`` of the served list, proved against its root."""
    tree = CommitmentTree(entries)
    return SegmentEvidence(
        segment=segment,
        pre_entry=Hash32(entries[segment]),
        post_entry=Hash32(entries[segment + 1]),
        pre_proof=tree.inclusion_proof(segment),
        post_proof=tree.inclusion_proof(segment + 1),
    )
