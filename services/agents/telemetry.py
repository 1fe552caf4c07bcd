"""Prometheus counters for one agent, served at its HTTP endpoint's ``/metrics``.

Each agent owns a ``CollectorRegistry``: several agents run in one process in the
tests and the in-process network, and a process-wide registry would add their
counts together (and refuse the second agent's metric names).

The counters are incremented where the agent does the thing, never recomputed
from its state at scrape time, so a scrape does not wait for the agent's lock
(a training tick can hold it for seconds) and counts survive pruned state.

    proofnet_agent_info{role,address,strategy}     who this endpoint is
    proofnet_agent_jobs_seen_total                 distinct jobs read from the chain
    proofnet_agent_bids_total                      bids the chain accepted (solver)
    proofnet_agent_jobs_won_total                  jobs assigned to this solver
    proofnet_agent_jobs_settled_total              its jobs that settled
    proofnet_agent_jobs_slashed_total              its jobs whose solver was slashed
    proofnet_agent_steps_trained_total             training steps run (solver)
    proofnet_agent_train_seconds_total             time spent training (solver)
    proofnet_agent_steps_reexecuted_total{source}  steps re-run: sample | truth (verifier)
    proofnet_agent_verify_seconds_total            time spent checking samples (verifier)
    proofnet_agent_samples_attested_total          jobs attested after a sample check
    proofnet_agent_samples_challenged_total        jobs challenged after a sample check
    proofnet_agent_data_requests_total             withheld segments requested on chain
    proofnet_agent_dispute_moves_total{kind}       moves sent in dispute games
    proofnet_agent_transactions_total{kind,result} every submission: accepted | rejected
    proofnet_agent_errors_total{where}             job_failed | tick_failed | tick_crashed

"Its jobs" are those it solved (solver) or judged (verifier).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from contracts_sim.records import JobStatus

PREFIX = "proofnet_agent"
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
TERMINAL_OUTCOMES = frozenset({JobStatus.SETTLED, JobStatus.SLASHED})
ERROR_PLACES = ("job_failed", "tick_failed", "tick_crashed")


class AgentTelemetry:
    """The counters of one agent, in a registry of its own."""

    def __init__(self, role: str, address: str) -> None:
        self.registry = CollectorRegistry()
        self._identity = {"role": role, "address": address, "strategy": ""}
        self._seen: set[str] = set()
        self._won: set[str] = set()
        self._closed: set[str] = set()
        self._info = Info(PREFIX, "The agent behind this endpoint.", registry=self.registry)
        self._info.info(self._identity)
        self.jobs_seen = self._counter("jobs_seen", "Distinct jobs read from the chain.")
        self.bids = self._counter("bids", "Bids the chain accepted.")
        self.jobs_won = self._counter("jobs_won", "Jobs assigned to this solver.")
        self.jobs_settled = self._counter("jobs_settled", "Its jobs that settled.")
        self.jobs_slashed = self._counter("jobs_slashed", "Its jobs whose solver was slashed.")
        self.steps_trained = self._counter("steps_trained", "Training steps run.")
        self.train_seconds = self._counter("train_seconds", "Seconds spent training.")
        self.steps_reexecuted = self._counter(
            "steps_reexecuted",
            "Steps re-executed: sample (sampled segments) or truth (locating, disputes).",
            ["source"],
        )
        self.verify_seconds = self._counter("verify_seconds", "Seconds spent checking samples.")
        self.samples_attested = self._counter(
            "samples_attested", "Jobs attested after a sample check."
        )
        self.samples_challenged = self._counter(
            "samples_challenged", "Jobs challenged after a sample check."
        )
        self.data_requests = self._counter("data_requests", "Withheld segments requested on chain.")
        self.dispute_moves = self._counter(
            "dispute_moves", "Moves sent in dispute games, by kind.", ["kind"]
        )
        self.transactions = self._counter(
            "transactions", "Transactions submitted, by kind and result.", ["kind", "result"]
        )
        self.errors = self._counter("errors", "Failures the agent survived, by place.", ["where"])
        for source in ("sample", "truth"):
            self.steps_reexecuted.labels(source=source)
        for where in ERROR_PLACES:
            self.errors.labels(where=where)

    def _counter(self, name: str, documentation: str, labels: list[str] | None = None) -> Counter:
        return Counter(f"{PREFIX}_{name}", documentation, labels or [], registry=self.registry)

    def set_strategy(self, name: str) -> None:
        """Name the strategy in ``proofnet_agent_info`` (chosen after the agent's base init)."""
        self._identity["strategy"] = name
        self._info.info(self._identity)

    # --- events, named as the agent code calls them -------------------------------------------
    def saw_job(self, job_id: str, status: JobStatus, involved: bool, won: bool) -> bool:
        """One job as read this tick: counted once when first seen, once when this solver
        won it, once when it closed (settled or slashed) with this agent involved. True when
        this read is the one that counted it closed."""
        if job_id not in self._seen:
            self._seen.add(job_id)
            self.jobs_seen.inc()
        if won and job_id not in self._won:
            self._won.add(job_id)
            self.jobs_won.inc()
        if involved and status in TERMINAL_OUTCOMES and job_id not in self._closed:
            self._closed.add(job_id)
            (self.jobs_settled if status == JobStatus.SETTLED else self.jobs_slashed).inc()
            return True
        return False

    def transaction(self, kind: str, accepted: bool) -> None:
        self.transactions.labels(kind=kind, result="accepted" if accepted else "rejected").inc()

    def dispute_move(self, kind: str) -> None:
        self.dispute_moves.labels(kind=kind).inc()

    def error(self, where: str) -> None:
        self.errors.labels(where=where).inc()

    def sample_steps(self, steps: int) -> None:
        self.steps_reexecuted.labels(source="sample").inc(steps)

    def truth_steps(self, steps: int) -> None:
        self.steps_reexecuted.labels(source="truth").inc(steps)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
