"""The solver agent: stakes, bids, trains, commits, serves data and defends its commitments.

Each ``tick``::

    fund and stake         dev faucet + stake up to the stake it bids with
    bid                    on open jobs it has not bid on and can train (``untrainable``:
                           dataset, model family, blob size, capacity); its strategy names
                           the price. Each bid reserves the job's min_stake of free stake
                           (the ledger's rule), so it bids while unreserved stake lasts, and
                           bids again, once, when a better bid evicted its bid
    close bidding          on jobs it bid on whose bid window has passed (anyone may)
    train                  one segment of each assigned job; progress commits every few leaves;
                           the final commitment once every leaf exists
    defend                 the solver's move in each open dispute against it
    settle                 its committed jobs whose challenge window has closed

Each job's work runs isolated (``Agent.isolated``): a job that fails is backed off and logged,
and the solver goes on with its other jobs.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from contracts_sim.crypto import PrivateKey
from contracts_sim.records import Dispute, JobStatus, Party
from contracts_sim.scoring import required_capacity
from contracts_sim.transactions import (
    AuditBody,
    BidBody,
    CloseBiddingBody,
    CommitFinalBody,
    CommitProgressBody,
    PublishDataBody,
    RevealTrapBody,
    SetEndpointBody,
    SettleBody,
)
from protocol.datasets import check_dataset
from protocol.errors import DatasetError
from protocol.exact import Device, as_device, encode_state
from protocol.forced_errors import segment_of_last_step
from protocol.layout import state_blob_size
from protocol.merkle import InclusionProof, NodeRef
from protocol.models import FAMILIES
from protocol.types import Amount, Hash32
from services.agents import operator_moves, player
from services.agents.base import Agent
from services.agents.checkpoints import CheckpointStore
from services.agents.moves import Move
from services.agents.strategy import SolverStrategy
from services.agents.training import JobRun, SegmentRunner
from services.agents.traps import TrapBook
from services.agents.views import (
    BidEvicted,
    DisputeView,
    JobView,
    decode_events,
)
from services.client import ChainClient

TRAINABLE_FAMILIES = frozenset(FAMILIES)  # the model families the exact VM trains


class SolverAgent(Agent):
    role = "solver"
    side = Party.SOLVER
    strategy: SolverStrategy

    def __init__(
        self,
        client: ChainClient,
        key: PrivateKey,
        *,
        strategy: SolverStrategy | None = None,
        store: CheckpointStore | None = None,
        device: str | Device = "cpu",
        stake: int | None = None,
        capacity: int = 1000,
        progress_every: int = 4,
        segments_per_tick: int = 1,
        train_budget: float | None = None,
        public_url: str | None = None,
        name: str | None = None,
        workers: SegmentRunner | None = None,
    ) -> None:
        super().__init__(client, key, name=name)
        self.strategy = strategy or SolverStrategy()
        self.workers = workers  # a data-parallel group (--workers N), or train alone
        self.store = store or CheckpointStore()
        self.device = as_device(device)
        self.stake_target = stake
        self.capacity = capacity
        self.progress_every = progress_every
        self.segments_per_tick = segments_per_tick
        self.train_budget = train_budget
        self.public_url = public_url
        self.runs: dict[str, JobRun] = {}
        self.train_seconds: dict[str, float] = {}
        self.bid_on: set[str] = set()
        self.evictions: dict[str, int] = {}  # job id -> evictions of its bid answered by a bid
        self.unreserved_stake = 0  # free stake its bids leave, as read this tick
        self.trap_books: dict[str, TrapBook] = {}
        self.own_steps: dict[str, operator_moves.OwnStep] = {}  # dispute id -> its step a
        self.telemetry.set_strategy(self.strategy.name)

    def stake_needed(self) -> int:
        return self.stake_target or self.params.min_solver_stake

    def balance_needed(self) -> int:
        """Audit bonds (forced errors on): one per attester it may audit on a job at once."""
        if not self.forced_errors_on:
            return 0
        return self.params.challenge_bond * self.params.max_sample_count

    # --- data served to verifiers and submitters -------------------------------------------
    def _run_for(self, job_id: str) -> JobRun | None:
        if job_id in self.runs:
            return self.runs[job_id]
        if self.store.load_job(job_id) is None:
            return None
        job = self.job(job_id)
        run = JobRun(job, self.strategy, self.store, self.device, self.workers)
        self._draw_traps(run)
        self.runs[job_id] = run
        return run

    # --- forced errors ----------------------------------------------------------------------
    @property
    def forced_errors_on(self) -> bool:
        return self.params.forced_error_bps > 0

    def trap_book(self, job: JobView) -> TrapBook:
        book = self.trap_books.get(job.job_id)
        if book is None:
            book = self.trap_books[job.job_id] = TrapBook(
                self.key, job.job_id, job.spec.num_segments
            )
        return book

    def _draw_traps(self, run: JobRun) -> bool:
        """Set the run's forced errors once the block after the assignment exists (its beacon
        mixes with the secrets); False while it does not. A job without traps has none."""
        if run.traps is not None:
            return True
        job = run.job
        if job.record.trap_root is None:
            run.traps = {}
            return True
        assert job.record.assigned_height is not None
        seed_height = job.record.assigned_height + 1
        if self.height() < seed_height:
            return False
        block = self.client.get_block(seed_height)
        book = self.trap_book(job)
        book.draw(block.header.beacon, self.params.forced_error_bps)
        run.traps = book.plan(job.spec.checkpoint_interval)
        if book.selectors:
            segments = sorted(book.selectors)
            self.log.info("job %s: forced errors in segments %s", job.job_id, segments)
        return True

    def serve_leaves(self, job_id: str) -> list[bytes] | None:
        run = self._run_for(job_id)
        if run is None or not run.trained:
            return None
        return self.strategy.serve_leaves(run.job, list(run.entries))

    def serve_blob(self, job_id: str, entry: bytes) -> bytes | None:
        run = self._run_for(job_id)
        if run is None or entry not in run.entries:
            return None
        blob = run.blob_for_entry(entry)
        return None if blob is None else self.strategy.serve_blob(run.job, entry, blob)

    def serve_model(self, job_id: str) -> bytes | None:
        """The final state's canonical bytes (for the submitter, after settlement)."""
        run = self._run_for(job_id)
        return None if run is None else run.final_state_blob()

    def metrics(self) -> dict[str, Any]:
        return {
            "role": "solver",
            "address": self.address,
            "strategy": self.strategy.name,
            "jobs": sorted(self.runs),
            "train_seconds": {k: round(v, 3) for k, v in self.train_seconds.items()},
        }

    # --- the loop ---------------------------------------------------------------------------
    def tick(self) -> None:
        jobs = self.jobs()
        height, account = self.begin_tick()
        reserved = self.reserved_stake(jobs)
        if self.stake_target is None:  # no operator choice: its bids and any one more job
            unbid = [job.min_stake for job in jobs if self._may_bid_on(job, height)]
            stake = account.locked + reserved + max(unbid, default=0)
            stake = max(self.stake_needed(), stake)
        else:
            stake = self.stake_target
        self.ensure_funds(self.balance_needed(), stake, account)
        if self.public_url and account.endpoint != self.public_url:
            self.send(Move.of(SetEndpointBody(self.public_url)), key="endpoint")
        self.unreserved_stake = account.bonded - reserved
        for job in jobs:
            self.observe_job(job)
            work = functools.partial(self._work_on, job, height)
            self.isolated(job.job_id, height, work)

    def involved_in(self, job: JobView) -> bool:
        return job.solver == self.address

    def outcome(self, job: JobView) -> str:
        if job.status is JobStatus.SETTLED:
            return f"settled; paid {job.record.price}"
        return f"{job.status.value}; its stake slashed"

    def reserved_stake(self, jobs: list[JobView]) -> int:
        """The free stake this solver's bids reserve: the ledger's ``staking.reserved_stake``,
        the sum of ``min_stake`` over the open jobs holding its bid."""
        return sum(
            job.min_stake
            for job in jobs
            if job.status is JobStatus.OPEN and job.holds_bid_of(self.address)
        )

    def _may_bid_on(self, job: JobView, height: int) -> bool:
        """An open job in its bid window that holds no bid of this solver's."""
        in_window = height <= job.record.bid_deadline
        return job.status is JobStatus.OPEN and in_window and not job.holds_bid_of(self.address)

    def _work_on(self, job: JobView, height: int) -> None:
        """This tick's work on one job (run isolated: a failure here backs off this job only)."""
        if job.status is JobStatus.OPEN:
            self._bid_or_close(job, height)
        elif job.solver == self.address and job.status is JobStatus.ASSIGNED:
            self.log_once(f"won:{job.job_id}", "job %s: won at %d", job.job_id, job.record.price)
            self._train(job, height)
        elif job.solver == self.address and job.status is JobStatus.COMMITTED:
            self.play_disputes(job, height)
            self._audit(job, height)
            self._settle(job, height)

    def _settle(self, job: JobView, height: int) -> None:
        deadline = job.record.challenge_deadline
        if deadline is None or job.record.open_disputes:
            return
        # A job with forced errors: sealed challenges have move_timeout to open, then audits.
        audits = self.params.move_timeout + self.params.audit_window if job.record.trap_root else 0
        if height > deadline + audits:
            self.send(Move.of(SettleBody(job.job_id)), key=f"settle:{job.job_id}")

    def _bid_key(self, job_id: str) -> str:
        return f"bid:{job_id}:{self.evictions.get(job_id, 0)}"

    def _was_evicted(self, job: JobView) -> bool:
        """A better bid evicted this solver's bid, and it has not bid again since.

        Counted from the chain's ``bid_evicted`` events, read only when its bid is missing from
        the list and none is in flight: one new bid per eviction, so a bid placed again that
        the ledger refuses (it would be the worst) is not retried, and nothing loops.
        """
        if job.holds_bid_of(self.address) or self.in_flight(self._bid_key(job.job_id)):
            return False
        evictions = sum(
            1
            for evicted in decode_events(BidEvicted, self.job_history(job.job_id))
            if evicted.solver == self.address
        )
        if evictions <= self.evictions.get(job.job_id, 0):
            return False
        self.evictions[job.job_id] = evictions
        self.log.info("bid on %s was evicted by a better one; bidding again", job.job_id)
        return True

    def _bid_or_close(self, job: JobView, height: int) -> None:
        if height <= job.record.bid_deadline:
            if job.job_id in self.bid_on and not self._was_evicted(job):
                return
            # The bid reserves the job's min_stake of free stake until it is resolved.
            if self.unreserved_stake < job.min_stake:
                return
            reason = self.untrainable(job)
            if reason is not None:
                self.log_once(f"no-bid:{job.job_id}", "not bidding on %s: %s", job.job_id, reason)
                return
            price = self.strategy.bid(job)
            if price is None:
                return
            trap_root = self.trap_book(job).root if self.forced_errors_on else None
            bid = BidBody(job.job_id, Amount(int(price)), self.capacity, trap_root)
            if self.send(Move.of(bid), key=self._bid_key(job.job_id)):
                self.unreserved_stake -= job.min_stake
                self.bid_on.add(job.job_id)
                self.telemetry.bids.inc()
                self.log.info("job %s: bid %d", job.job_id, price)
        elif job.job_id in self.bid_on:
            self.send(Move.of(CloseBiddingBody(job.job_id)), key=f"close:{job.job_id}")

    def untrainable(self, job: JobView) -> str | None:
        """Why this solver cannot complete ``job`` (None: it can), checked before it bids.

        The ledger refuses what it can check at ``post_job``; this is the same and more, for
        what only the solver knows (its datasets, its VM, its speed): a job it bids on and
        cannot finish would cost it its stake.
        """
        spec = job.spec
        if spec.model.family not in TRAINABLE_FAMILIES:
            return f"model family {spec.model.family!r} is not one this solver trains"
        try:
            check_dataset(spec.dataset.id, spec.dataset.hash)
        except DatasetError as exc:
            return exc.message
        blob_bytes, limit = state_blob_size(spec), self.params.max_blob_bytes
        # Operator-level disputes post pieces of a state, never a whole one.
        if blob_bytes > limit and not self.params.operator_disputes:
            return f"its state blob ({blob_bytes} bytes) exceeds the chain's max_blob_bytes {limit}"
        needed = required_capacity(spec.steps, job.record.train_blocks)
        if needed > self.capacity:
            return f"it needs {needed} steps a block; this solver's capacity is {self.capacity}"
        return None

    def _train(self, job: JobView, height: int) -> None:
        run = self.runs.get(job.job_id)
        if run is None:
            run = JobRun(job, self.strategy, self.store, self.device, self.workers)
            self.runs[job.job_id] = run
        if not self._draw_traps(run):
            return  # the beacon that places this job's forced errors is a block away
        self._sync_progress(run, job)
        steps_before = run.steps_done
        started = time.perf_counter()
        segments = 0
        while not run.trained:
            run.train_segment()
            segments += 1
            if self.train_budget is None:
                if segments >= self.segments_per_tick:
                    break
            elif time.perf_counter() - started >= self.train_budget:
                break
        elapsed = time.perf_counter() - started
        self.more_work = self.more_work or not run.trained  # the runner ticks again at once
        self.train_seconds[job.job_id] = self.train_seconds.get(job.job_id, 0.0) + elapsed
        self.telemetry.train_seconds.inc(elapsed)
        self.telemetry.steps_trained.inc(run.steps_done - steps_before)
        self._post_progress(run)
        if run.trained and not run.final_posted:
            self._post_final(run)

    def _sync_progress(self, run: JobRun, job: JobView) -> None:
        """Take the chain's progress record as the base of the next consistency proof.

        The local record can disagree with the chain after a crash: a commit the chain took
        but the solver never saved (killed between ``send`` and ``save``), or one the solver
        saved that never made a block. A consistency proof must extend what the chain holds,
        so, while none of this solver's commits is in flight, the chain's record wins.
        """
        size = job.record.progress_size
        if size == run.progress_size or self.in_flight(f"progress:{job.job_id}"):
            return
        self.log.info("progress record %d -> %d from the chain", run.progress_size, size)
        run.progress_size, run.progress_root = size, job.record.progress_root
        run.save()

    def _post_progress(self, run: JobRun) -> None:
        size = len(run.entries)
        if run.trained or size - run.progress_size < self.progress_every:
            return
        entries = self.strategy.committed_entries(run.job, list(run.entries))
        tree = run.tree(entries)
        proof = tree.consistency_proof(run.progress_size, size) if run.progress_size else None
        body = CommitProgressBody(run.job.job_id, size, Hash32(tree.root()), proof)
        if self.send(Move.of(body), key=f"progress:{run.job.job_id}"):
            run.progress_size, run.progress_root = size, tree.root()
            run.save()
            what = "job %s: trained %d of %d leaves; progress committed"
            self.log.info(what, run.job.job_id, size, run.job.num_leaves)

    def _post_final(self, run: JobRun) -> None:
        entries = self.strategy.committed_entries(run.job, list(run.entries))
        tree = run.tree(entries)
        leaves = len(entries)
        body = CommitFinalBody(
            job_id=run.job.job_id,
            root=Hash32(tree.root()),
            leaves=leaves,
            final_state_hash=Hash32(entries[-1]),
            consistency_proof=(
                tree.consistency_proof(run.progress_size, leaves) if run.progress_size else None
            ),
            final_proof=tree.inclusion_proof(leaves - 1),
            initial_proof=tree.inclusion_proof(0),
        )
        if self.send(Move.of(body), key=f"final:{run.job.job_id}"):
            run.final_posted = True
            run.save()
            self.log.info("job %s: final commitment sent (%d leaves)", run.job.job_id, leaves)

    # --- disputes ---------------------------------------------------------------------------
    def forget_dispute(self, dispute_id: str) -> None:
        self.own_steps.pop(dispute_id, None)  # its step's trace is no longer needed

    def honest_move(self, job: JobView, dispute: DisputeView) -> Move | None:
        """The move the protocol asks of this solver, consistent with what it committed."""
        run = self._run_for(job.job_id)
        return None if run is None else player.solver_move(dispute.record, _Claims(self, run))

    def own_step(self, run: JobRun, d: Dispute) -> operator_moves.OwnStep | None:
        """This solver's trace of the disputed step, for the operator-level game: run once per
        dispute from the pre-state it claims, explaining the post-state it committed."""
        a = d.step_lo
        assert a is not None
        own = self.own_steps.get(d.dispute_id)
        if own is None:
            pre, post = run.claimed_state(a), run.claimed_state(a + 1)
            own = operator_moves.solver_step(run.spec, pre, post, a)
            self.own_steps[d.dispute_id] = own
        return own

    def _challenged_segments(self, job: JobView, verifier: str) -> set[int]:
        """The segments ``verifier`` named in its opened challenges of ``job`` (never audited)."""
        segments = set()
        for dispute in self.disputes(job):
            d = dispute.record
            fraud_claim = not d.audit and not d.data_request
            if fraud_claim and d.challenger == verifier and d.leaf_index is not None:
                segments.add(d.leaf_index - 1)
        return segments

    def trap_reveal(self, run: JobRun, d: Dispute) -> RevealTrapBody | None:
        """Show that the step the referee disagreed with is this job's forced error."""
        step = d.step_lo
        assert step is not None
        segment = segment_of_last_step(step, run.spec.checkpoint_interval)
        book = self.trap_books.get(run.job.job_id)
        if segment is None or book is None or segment not in (book.selectors or {}):
            return None  # not one of ours: the deadline decides
        blob = encode_state(run.claimed_state(step))
        self.log.info("job %s: step %d is our forced error; revealing it", run.job.job_id, step)
        secret, proof = book.reveal(segment)
        return RevealTrapBody(d.dispute_id, secret, proof, blob)

    def _audit(self, job: JobView, height: int) -> None:
        """After the challenge window: audit each bonded attester whose sample held one of this
        job's forced errors (it vouched for a transition that is false by construction)."""
        deadline = job.record.challenge_deadline
        book = self.trap_books.get(job.job_id)
        if deadline is None or book is None or not book.selectors:
            return
        start = deadline + self.params.move_timeout + 1
        if not start <= height < start + self.params.audit_window:
            return
        run = self._run_for(job.job_id)
        if run is None:
            return
        for attester in job.record.bonded_attesters:
            if attester in job.record.audited:
                continue
            sample = [int(x) for x in self.watcher.sample(job.job_id, attester)]
            challenged = self._challenged_segments(job, attester)
            trapped = [x for x in sample if x in book.selectors and x not in challenged]
            if not trapped:
                continue
            segment, tree = trapped[0], run.tree()
            secret, secret_proof = book.reveal(segment)  # builds the secrets' tree: once
            body = AuditBody(
                job_id=job.job_id,
                attester=attester,
                segment=segment,
                secret=secret,
                secret_proof=secret_proof,
                pre_entry=Hash32(run.entries[segment]),
                pre_proof=tree.inclusion_proof(segment),
                post_entry=Hash32(run.entries[segment + 1]),
                post_proof=tree.inclusion_proof(segment + 1),
            )
            if self.send_dispute_move(Move.of(body), key=f"audit:{job.job_id}:{attester}"):
                what = "job %s: auditing %s, who attested forced error %d"
                self.log.info(what, job.job_id, attester, segment)

    def published_data(self, run: JobRun, d: Dispute) -> PublishDataBody | None:
        """Answer a data request: the blob of leaf ``segment`` (the one this solver stored
        under that leaf's entry) and both leaves of the segment, proved against its root."""
        segment = d.leaf_index
        if segment is None or not 0 <= segment < len(run.entries) - 1:
            return None
        blob = run.blob_for_entry(run.entries[segment])
        if blob is None:
            return None  # nothing to publish: the request's deadline will decide
        tree = run.tree()
        return PublishDataBody(
            dispute_id=d.dispute_id,
            blob=blob,
            pre_entry=Hash32(run.entries[segment]),
            pre_proof=tree.inclusion_proof(segment),
            post_entry=Hash32(run.entries[segment + 1]),
            post_proof=tree.inclusion_proof(segment + 1),
        )


@dataclass(frozen=True)
class _Claims:
    """The solver's side of a dispute (``player.Claims``): the run it committed."""

    agent: SolverAgent
    run: JobRun

    def node_hash(self, node: NodeRef) -> bytes:
        return self.run.tree().node_hash(node)

    def leaf(self, index: int) -> bytes:
        return self.run.entries[index]

    def leaf_proof(self, index: int) -> InclusionProof:
        return self.run.tree().inclusion_proof(index)

    def hash_at(self, step: int) -> bytes:
        return self.run.claimed_hash(step)

    def blob_at(self, step: int) -> bytes:
        return encode_state(self.run.claimed_state(step))

    def operator_step(self, dispute: Dispute) -> operator_moves.OwnStep | None:
        return self.agent.own_step(self.run, dispute)

    def published_data(self, dispute: Dispute) -> PublishDataBody | None:
        return self.agent.published_data(self.run, dispute)

    def trap_reveal(self, dispute: Dispute) -> RevealTrapBody | None:
        return self.agent.trap_reveal(self.run, dispute)
