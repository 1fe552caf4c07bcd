"""The verifier agent: samples, fetches, re-executes, attests or challenges, plays the game.

Each ``tick``::

    fund and stake        dev faucet + the chain's minimum verifier stake, and a bond's worth
    verify                each committed job it has not judged, once its sample seed block
                          exists: fetch the leaf list (checked against the root) and the sampled
                          blobs (checked against their leaves), re-execute each sampled segment
    verdict               all equal → attest; any difference → find the *first* wrong leaf by
                          re-executing from the start (so the game locates the first wrong step)
                          and challenge on the segment before it; withheld data → challenge
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
from typing import Any

from contracts_sim.crypto import PrivateKey
from contracts_sim.dispute import bisection_midpoint
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
from protocol.hashing import sha256
from protocol.layout import state_blob_size
from protocol.merkle import CommitmentTree, NodeRef, children, root_of
from services.agents.base import Agent
from services.agents.blobs import BlobSource
from services.agents.moves import Move
from services.agents.solver import dispute_view, job_view
from services.agents.strategy import JobView, Verdict, VerifierStrategy
from services.agents.truth import Truth


@dataclass
class Check:
    """What one verification found (kept for reports and the statistics tests)."""

    job_id: str
    sample: list[int]
    verdict: Verdict
    steps_reexecuted: int = 0
    bad_segments: list[int] = field(default_factory=list)
    withheld: bool = False


class VerifierAgent(Agent):
    role = "verifier"

    def __init__(
        self,
        client: Any,
        key: PrivateKey,
        blobs: BlobSource,
        *,
        strategy: VerifierStrategy | None = None,
        device: str | Device = "cpu",
        name: str | None = None,
    ) -> None:
        super().__init__(client, key, name=name)
        self.blobs = blobs
        self.strategy = strategy or VerifierStrategy()
        self.device = as_device(device)
        self.checks: dict[str, Check] = {}
        self.verify_seconds = 0.0
        self.truths: dict[str, Truth] = {}
        self.entries: dict[str, list[bytes] | None] = {}

    # --- the loop ---------------------------------------------------------------------------
    def stake_needed(self) -> int:
        return int(self.params["min_verifier_stake"])

    def balance_needed(self) -> int:
        return 2 * int(self.params["challenge_bond"])

    def tick(self) -> None:
        height, account = self.begin_tick()
        funded = self.ensure_funds(self.balance_needed(), self.stake_needed(), account)
        for raw in self.client.list_jobs():
            work = functools.partial(self._work_on, raw, height, funded)
            self.isolated(str(raw.get("job_id")), height, work)

    def _work_on(self, raw: dict[str, Any], height: int, funded: bool) -> None:
        """This tick's work on one job (run isolated: a failure here backs off this job only)."""
        job = job_view(raw)
        if job.status == "open" and not job.raw["bids"] and height > int(job.raw["bid_deadline"]):
            self.send(Move("close_bidding", {"job_id": job.job_id}), key=f"close:{job.job_id}")
        elif job.status == "assigned":
            self._police_training(job, height)
        elif job.status == "committed" and job.solver != self.address:
            if funded and job.job_id not in self.checks and self.strategy.verify(job):
                self._judge(job, height)
            self._play(job, height)
            self._attest_once_published(job)

    def _police_training(self, job: JobView, height: int) -> None:
        deadline = job.raw.get("train_deadline")
        if deadline is not None and height > int(deadline):
            self.send(Move("claim_timeout", {"job_id": job.job_id}), key=f"late:{job.job_id}")

    def _judge(self, job: JobView, height: int) -> None:
        if height > int(job.raw["challenge_deadline"]):
            return
        try:
            sample = [int(s) for s in self.client.sample(job.job_id, self.address)]
        except ProofNetError:
            return  # the seed block does not exist yet
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
        self.verify_seconds += time.perf_counter() - started
        verdict = self.strategy.verdict(job, check.verdict)
        entries, leaf = self.entries.get(job.job_id), verdict.first_bad_leaf or 0
        named = verdict.action == Verdict.CHALLENGE and not verdict.challenge_body
        if named and entries and 0 < leaf < len(entries):
            # The strategy named the wrong leaf: challenge the segment before it, with proofs.
            verdict = self._challenge_segment(job, entries, leaf - 1, verdict.reason)
        check.verdict = verdict
        if verdict.action == Verdict.ATTEST:
            sent = self.send(Move("attest", {"job_id": job.job_id}), key=f"attest:{job.job_id}")
        elif verdict.action == Verdict.CHALLENGE:
            body = verdict.challenge_body or {"job_id": job.job_id}
            sent = self.send(Move("challenge", body), key=f"challenge:{job.job_id}")
        else:
            sent = True
        if sent:
            self.checks[job.job_id] = check

    # --- verification -------------------------------------------------------------------------
    def truth(self, job: JobView) -> Truth:
        if job.job_id not in self.truths:
            self.truths[job.job_id] = Truth(job.spec, self.device)
        return self.truths[job.job_id]

    def _final_state_is_last_leaf(self, job: JobView) -> bool:
        """The declared final state is the last leaf served (unknown while leaves are withheld)."""
        entries = self._served_entries(job)
        return entries is None or entries[-1].hex() == job.raw.get("final_state_hash")

    def _served_entries(self, job: JobView) -> list[bytes] | None:
        if job.job_id not in self.entries:
            entries = self.blobs.leaves(str(job.solver), job.job_id, job.num_leaves)
            root = bytes.fromhex(job.raw["final_root"])
            if entries is not None and (len(entries) != job.num_leaves or root_of(entries) != root):
                entries = None  # not the committed trajectory: treat as withheld
            self.entries[job.job_id] = entries
        return self.entries[job.job_id]

    def _segment_ok(self, job: JobView, entries: list[bytes], segment: int) -> bool | None:
        """True/False: the segment re-executes to its leaf or not; None: data withheld."""
        spec = job.spec
        blob = self.blobs.blob(str(job.solver), job.job_id, entries[segment], state_blob_size(spec))
        if blob is None or sha256(blob) != entries[segment]:
            return None
        try:
            state = decode_state_for(spec, blob, self.device)
            if state_step(state) != segment * spec.checkpoint_interval:
                return False
            post = run(
                spec,
                state,
                segment * spec.checkpoint_interval,
                (segment + 1) * spec.checkpoint_interval,
            )
        except ProofNetError:
            return False
        return state_hash(post) == entries[segment + 1]

    def check(self, job: JobView, sample: list[int]) -> Check:
        """Re-execute the sampled segments and reach the honest verdict."""
        check = Check(job.job_id, sample, Verdict(Verdict.ATTEST, "sample re-executed"))
        if not self.strategy.reexecute(job):
            check.verdict = Verdict(Verdict.ATTEST, "attested without re-executing")
            return check
        entries = self._served_entries(job)
        if entries is None:
            check.withheld = True
            check.verdict = self._judge_without_leaves(job, sample)
            return check
        first_withheld = None
        for segment in sample:
            ok = self._segment_ok(job, entries, segment)
            check.steps_reexecuted += job.spec.checkpoint_interval
            if ok is None and first_withheld is None:
                first_withheld = segment
                check.withheld = True
            elif ok is False:
                check.bad_segments.append(segment)
        if check.bad_segments:
            check.verdict = self._challenge(job, entries, "sampled segment does not reproduce")
        elif first_withheld is not None:
            # A blob can be missing because its leaf was fabricated (no state hashes to it): a
            # challenge on that segment would agree to the fabricated pre-state and lose. So
            # challenge the first wrong leaf if there is one; a correct trajectory whose data is
            # withheld gets a data request: the solver publishes the blob or loses.
            verdict = self._challenge(job, entries, "blob withheld")
            if verdict.action == Verdict.SKIP:
                verdict = self._request_data(job, entries, first_withheld)
            check.verdict = verdict
        return check

    def _judge_without_leaves(self, job: JobView, sample: list[int]) -> Verdict:
        """The leaf list is withheld: re-execute the whole trajectory. A different root is
        challenged by Merkle descent; the committed root itself gets a data request."""
        entries = self.truth(job).entries()
        if root_of(entries) != bytes.fromhex(job.raw["final_root"]):
            reason = "leaf list withheld or inconsistent"
            return Verdict(Verdict.CHALLENGE, reason, {"job_id": job.job_id})
        return self._request_data(job, entries, sample[0] if sample else 0)

    def _request_data(self, job: JobView, entries: list[bytes], segment: int) -> Verdict:
        """A data request for the blob of leaf ``segment`` (a ``challenge`` with ``withheld``).

        Sent only once this verifier knows the trajectory is correct, so it never loses a bond
        for the solver's silence: the solver publishes (bond back, then this verifier attests,
        ``_attest_once_published``) or misses the deadline and is slashed.
        """
        verdict = self._challenge_segment(job, entries, segment, "data request: blob withheld")
        assert verdict.challenge_body is not None
        return replace(verdict, challenge_body={**verdict.challenge_body, "withheld": True})

    def _attest_once_published(self, job: JobView) -> None:
        """After the solver published what this verifier asked for, attest: the verifier
        re-executed the whole trajectory when the data was withheld."""
        check = self.checks.get(job.job_id)
        if check is None or not (check.verdict.challenge_body or {}).get("withheld"):
            return
        for dispute_id in job.raw.get("disputes", []):
            raw = self.client.get_dispute(dispute_id)
            if raw["challenger"] != self.address or raw["status"] != "data_published":
                continue
            if self.send(Move("attest", {"job_id": job.job_id}), key=f"attest:{job.job_id}"):
                check.verdict = Verdict(Verdict.ATTEST, "re-executed; withheld data published")
                self.log.info("job %s: data published; attested", job.job_id)
            return

    def _challenge(self, job: JobView, entries: list[bytes] | None, reason: str) -> Verdict:
        """Locate the first wrong leaf from the start and challenge the segment before it."""
        truth = self.truth(job)
        if entries is None:
            truth.entries()  # the whole trajectory: needed to play the Merkle descent
            return Verdict(Verdict.CHALLENGE, reason, {"job_id": job.job_id})
        first = truth.first_wrong_leaf(entries)
        if first is None:
            return Verdict(Verdict.SKIP, "trajectory is correct; only data was unavailable")
        if first == 0:
            return Verdict(Verdict.CHALLENGE, reason, {"job_id": job.job_id}, first_bad_leaf=0)
        verdict = self._challenge_segment(job, entries, first - 1, reason)
        return Verdict(verdict.action, reason, verdict.challenge_body, first_bad_leaf=first)

    def _challenge_segment(
        self, job: JobView, entries: list[bytes], segment: int, reason: str
    ) -> Verdict:
        tree = CommitmentTree(entries)
        body = {
            "job_id": job.job_id,
            "segment": segment,
            "pre_entry": entries[segment].hex(),
            "post_entry": entries[segment + 1].hex(),
            "pre_proof": tree.inclusion_proof(segment).to_json(),
            "post_proof": tree.inclusion_proof(segment + 1).to_json(),
        }
        return Verdict(Verdict.CHALLENGE, reason, body)

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
    def _play(self, job: JobView, height: int) -> None:
        if not int(job.raw["open_disputes"]):
            return  # nothing to play: do not re-read closed disputes every tick
        for dispute_id in job.raw.get("disputes", []):
            raw = self.client.get_dispute(dispute_id)
            if raw["status"] != "open":
                continue
            dispute = dispute_view(raw, job)
            if dispute.turn == "solver" and height > dispute.deadline:
                self.send(
                    Move("claim_timeout", {"dispute_id": dispute_id}), key=f"timeout:{dispute_id}"
                )
                continue
            if raw["challenger"] != self.address:
                continue
            honest = self.honest_move(job, raw)
            move = self.strategy.answer_dispute(dispute, honest)
            if move is not None:
                self.send(move, key=f"dispute:{dispute_id}:{len(raw['moves'])}")

    def honest_move(self, job: JobView, raw: dict[str, Any]) -> Move | None:
        truth = self.truth(job)
        dispute_id, phase = raw["dispute_id"], raw["phase"]
        if phase == "choose_child":
            left, _right = children(NodeRef(int(raw["node_lo"]), int(raw["node_hi"])))
            wrong_left = bytes.fromhex(raw["left_hash"]) != truth.node_hash(left)
            return Move(
                "choose_child",
                {"dispute_id": dispute_id, "side": "left" if wrong_left else "right"},
            )
        if phase == "respond_midpoint":
            m = bisection_midpoint(int(raw["step_lo"]), int(raw["step_hi"]))
            agree = bytes.fromhex(raw["midpoint_hash"]) == truth.hash_at(m)
            return Move("respond_midpoint", {"dispute_id": dispute_id, "agree": agree})
        if phase == "post_prestate":
            a, b = int(raw["step_lo"]), int(raw["step_hi"])
            claimed_post = bytes.fromhex(raw["hash_hi"])
            if truth.hash_at(b) == claimed_post:
                return None  # the solver's claim is right: leave the pre-state to the solver
            pre = truth.state_at(a)
            if state_hash(pre) != bytes.fromhex(raw["hash_lo"]):
                return None
            return Move(
                "post_prestate", {"dispute_id": dispute_id, "blob": encode_state(pre).hex()}
            )
        return None
