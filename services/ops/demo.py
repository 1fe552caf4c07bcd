"""The demo: a local testnet where honest solvers are paid and a cheater is slashed.

``run_demo`` starts the default topology as processes (chain on SQLite, two honest solvers, one
cheating solver, two verifiers), submits jobs over REST, follows them to the end while timing
each phase, and returns a report: per job the solver, its strategy, the outcome, the dispute
rounds, the located step, payments and slashes; per actor the balances; the supply invariant;
the start-up time and each phase's time summed over the jobs (which run in parallel: no sum is
a span of the wall time); and what the node served (``reads``: GET requests by route, and per
transaction included). Every process it started is stopped before it returns.

The chain runs the ``demo`` preset (``contracts_sim.params.DEMO``: the testnet's rules with
windows about a third as long, in blocks) at ``DEMO_BLOCK_TIME``: the same game, in seconds.
Every party follows ``/events`` (``services.agents.watch``), the demo too: nobody polls.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from contracts_sim.records import JobStatus
from protocol.spec import JobSpec, parse_spec
from services.agents.runner import load_or_create_key
from services.agents.views import (
    DisputeResolved,
    JobDetail,
    JobSettled,
    JobView,
    decode_account,
    decode_dispute,
    decode_job,
    decode_job_detail,
    decode_params,
)
from services.agents.watch import ChainWatcher
from services.client import HttpChainClient, Wallet
from services.errors import ClientError
from services.jobspec import load_spec
from services.ops.localnet import LocalTestnet, default_topology
from services.submitter import fund_from_faucet, job_posting, job_terms

FIRST_DEMO_SEED = 11  # the jobs' seeds: 11, 12, 13, ...
DEMO_PRESET = "demo"
DEMO_BLOCK_TIME = 0.25
"""Seconds a block: the demo preset's windows (in blocks) last a few seconds at this pace."""
FOLLOW_WAIT = 2.0
"""The longest the demo's own long-poll of ``/events`` waits."""


@dataclass
class JobTimeline:
    job_id: str
    seen: dict[str, float] = field(default_factory=dict)  # phase -> first time seen

    def mark(self, phase: str, now: float) -> None:
        self.seen.setdefault(phase, now)

    def span(self, start: str, end: str) -> float:
        if start in self.seen and end in self.seen:
            return max(0.0, self.seen[end] - self.seen[start])
        return 0.0


def demo_specs(spec_file: Path, count: int) -> tuple[list[JobSpec], dict[str, Any]]:
    spec, terms = load_spec(spec_file)
    specs = []
    for seed in range(FIRST_DEMO_SEED, FIRST_DEMO_SEED + count):
        data = spec.to_dict()
        data["seed"] = seed
        specs.append(parse_spec(data))
    return specs, terms


def submit_jobs(
    client: HttpChainClient, wallet: Wallet, specs: list[JobSpec], spec_terms: dict[str, Any]
) -> list[str]:
    """Fund the submitter once from the dev faucet for every job, then post them all without
    waiting for their blocks (the demo follows them through ``/events``); their ids."""
    params = decode_params(client.params())
    terms = job_terms(spec_terms, params)
    fund_from_faucet(
        client, wallet, params, len(specs) * (terms["payment"] + terms["verification_fee"])
    )
    return [
        client.post_job(wallet.sign(job_posting(spec, terms)), wait=False).job_id for spec in specs
    ]


def node_reads(client: HttpChainClient) -> dict[str, Any]:
    """What the node served so far, from its ``/metrics``: GET requests by route, their
    total, the transactions included in blocks, and GETs per transaction. An event stream
    counts once, when it opened (the request metrics see it only when it closes)."""
    text = client.http.get("/metrics").text
    by_route: dict[str, int] = {}
    transactions = streams = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "proofnet_http_request_duration_seconds_count":
                if sample.labels.get("method") == "GET":
                    route = sample.labels.get("route", "")
                    by_route[route] = by_route.get(route, 0) + int(sample.value)
            elif sample.name == "proofnet_transactions_included_total":
                transactions += int(sample.value)
            elif sample.name == "proofnet_event_streams_opened_total":
                streams = int(sample.value)
    if streams:
        by_route["/events/stream"] = streams
    total = sum(by_route.values())
    return {
        "gets": total,
        "transactions": transactions,
        "per_transaction": round(total / transactions, 2) if transactions else None,
        "by_route": dict(sorted(by_route.items(), key=lambda item: (-item[1], item[0]))),
    }


VERIFIED = "verified"
"""A committed job's phase label once a verifier attested or challenged it."""
DISPUTED = "disputed"
"""A committed job's phase label while one of its disputes is open."""


def _phase(job: JobView) -> str:
    """The job's phase in the demo's timeline: its status, a committed one split further."""
    record = job.record
    if record.status is JobStatus.COMMITTED:
        if record.open_disputes:
            return DISPUTED
        if record.attesters or record.disputes:
            return VERIFIED
    return record.status.value


def run_demo(
    spec_file: Path,
    *,
    jobs: int = 3,
    workdir: Path | None = None,
    timeout: float = 170.0,
    progress: Callable[[str], None] | None = None,
    log_format: str = "text",
) -> dict[str, Any]:
    say = progress or (lambda message: None)
    started = time.monotonic()
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="proofnet-demo-")
        workdir = Path(tmp.name)
    specs, terms = demo_specs(spec_file, jobs)
    topology = default_topology()
    topology.preset, topology.block_time, topology.log_format = (
        DEMO_PRESET,
        DEMO_BLOCK_TIME,
        log_format,
    )
    # A bid reserves the job's min_stake until bidding closes: stake for every job at once, so
    # that each solver can bid on each of them.
    topology.solver_stake = int(terms.get("min_stake", 0)) * len(specs) or None
    # Nothing submits batches: the node's checking processes would only slow its start.
    net = LocalTestnet(workdir, topology, fork=True, chain_env={"PROOFNET_START_CHECKERS": "false"})
    try:
        say("starting chain, 3 solvers (1 cheating) and 2 verifiers as local processes")
        net.start()
        client = HttpChainClient(topology.chain_url)
        names = {net.address_of(a.name): a for a in topology.actors}
        say("waiting for the agents to fund and stake themselves")
        net.wait_staked(timeout)
        startup = time.monotonic() - started
        wallet = Wallet(load_or_create_key(workdir / "keys" / "submitter.key"), client)
        job_ids = submit_jobs(client, wallet, specs, terms)
        for job_id, spec in zip(job_ids, specs, strict=True):
            say(f"submitted job {job_id[:12]}… over REST (seed {spec.seed})")
        timelines = {j: JobTimeline(j) for j in job_ids}
        watcher = ChainWatcher(client, wallet.address)
        deadline = time.monotonic() + timeout
        last: dict[str, str] = {}
        while True:
            now = time.monotonic()
            found = {j: _decoded(watcher.job(j)) for j in job_ids}
            for job_id, job in found.items():
                if job is None:
                    continue  # its block is not sealed yet
                phase = _phase(job)
                timelines[job_id].mark(phase, now)
                if last.get(job_id) != phase:
                    solver = names.get(job.solver or "")
                    who = f" by {solver.name}" if solver else ""
                    say(f"job {job_id[:12]}… {phase}{who}")
                    last[job_id] = phase
            if all(job is not None and job.status.is_terminal for job in found.values()):
                break
            if now > deadline:
                raise TimeoutError("the demo's jobs did not finish in time")
            watcher.wait(min(FOLLOW_WAIT, max(deadline - now, 0.0)))
        watcher.close()
        # The whole lifecycle of each job, for the report.
        records = {j: decode_job_detail(client.get_job(j)) for j in job_ids}
        report = _report(client, net, names, records, timelines, specs)
        report["reads"] = node_reads(client)
        report["figures"]["startup_seconds"] = round(startup, 2)
    finally:
        survivors = net.stop()
        if tmp is not None:
            tmp.cleanup()
    report["processes_left_running"] = survivors
    report["wall_seconds"] = round(time.monotonic() - started, 2)
    report["ok"] = report["ok"] and not survivors
    return report


def _decoded(answer: dict[str, Any] | None) -> JobView | None:
    return None if answer is None else decode_job(answer)


def _report(
    client: HttpChainClient,
    net: LocalTestnet,
    names: dict[str, Any],
    records: dict[str, JobDetail],
    timelines: dict[str, JobTimeline],
    specs: list[JobSpec],
) -> dict[str, Any]:
    rows = []
    timings: list[dict[str, float]] = []  # per job: seconds in each phase
    ok = True
    for job_id, detail in records.items():
        job = detail.job.record
        actor = names.get(job.solver or "")
        resolved = detail.events(DisputeResolved)
        settled = detail.events(JobSettled)
        was_slashed = job.status is JobStatus.SLASHED
        dishonest = bool(actor and actor.strategy)
        if dishonest and not was_slashed:
            ok = False
        if not dishonest and was_slashed:
            ok = False
        disputes = [decode_dispute(d) for d in client.list_disputes(job_id)] if job.disputes else []
        timeline = timelines[job_id]
        timing = {
            "training": round(timeline.span(JobStatus.ASSIGNED, JobStatus.COMMITTED), 2),
            "verification": round(
                timeline.span(JobStatus.COMMITTED, VERIFIED)
                or timeline.span(JobStatus.COMMITTED, DISPUTED),
                2,
            ),
            "dispute": round(timeline.span(DISPUTED, job.status), 2),
        }
        timings.append(timing)
        rows.append(
            {
                "job_id": job_id,
                "solver": actor.name if actor else job.solver,
                "strategy": (actor.strategy or "honest") if actor else None,
                "outcome": job.status.value,
                "dispute_rounds": sum(len(d.record.moves) for d in disputes),
                "located_step": next(
                    (r.located_step for r in resolved if r.located_step is not None), None
                ),
                "paid_to_solver": settled[0].price if settled else 0,
                # What the job's disputes slashed, shown once its solver is slashed.
                "slashed": sum(r.slashed for r in resolved) if was_slashed else 0,
                "timeline_seconds": timing,
            }
        )
    balances = {}
    for address, actor in names.items():
        acc = decode_account(client.get_account(address))
        balances[actor.name] = {
            "balance": int(acc.balance),
            "stake": acc.total_stake,
            "jobs_completed": acc.jobs_completed,
            "jobs_slashed": acc.jobs_slashed,
        }
    processes = net.status()
    verifier_metrics = [
        row.get("stats") or {} for name, row in processes.items() if name.startswith("verifier")
    ]
    sampled = sum(int(m.get("sample_steps", 0)) for m in verifier_metrics)
    truth = sum(int(m.get("truth_steps", 0)) for m in verifier_metrics)
    reexecuted = sampled + truth
    trained = sum(s.steps for s in specs)
    supply = _supply(client)
    ok = ok and bool(supply.get("holds", False))
    return {
        "ok": ok,
        "jobs": rows,
        "balances": balances,
        "supply": supply,
        "figures": {
            # Summed over the jobs, which run in parallel: not spans of the wall time.
            "training_seconds": round(sum(t["training"] for t in timings), 2),
            "verification_seconds": round(sum(t["verification"] for t in timings), 2),
            "dispute_seconds": round(sum(t["dispute"] for t in timings), 2),
            "steps_trained": trained,
            "steps_reexecuted_by_verifiers": reexecuted,
            "sample_steps_reexecuted": sampled,
            "dispute_steps_reexecuted": truth,
            "reexecuted_fraction": round(reexecuted / trained, 4) if trained else 0.0,
            "sample_fraction": round(sampled / trained, 4) if trained else 0.0,
        },
    }


def _supply(client: HttpChainClient) -> dict[str, Any]:
    try:
        return client.supply()
    except ClientError as exc:
        return {"holds": False, "error": str(exc)}
