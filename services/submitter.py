"""The submitter's side, for the CLI, the demo and tests: post a job (funded from the dev
faucet when needed), describe it, and download its model only when it is the settled job's
committed, bound final state (``verified_model``)."""

from __future__ import annotations

from typing import Any

from contracts_sim.codec import to_json_value
from contracts_sim.params import Params
from contracts_sim.records import JobStatus
from contracts_sim.transactions import FaucetBody, PostJobBody
from protocol.layout import state_blob_size
from protocol.merkle import root_of
from protocol.spec import JobSpec
from protocol.state_commitment import blob_has_root
from protocol.types import Amount
from services.agents.blobs import BlobSource
from services.agents.views import (
    DisputeResolved,
    JobDetail,
    JobView,
    decode_account,
    decode_job,
    decode_params,
)
from services.client import HttpChainClient, Wallet
from services.errors import DownloadRefusedError

DEFAULT_TERMS: dict[str, int] = {"bid_blocks": 10, "train_blocks": 2000}


def job_terms(spec_terms: dict[str, Any], params: Params) -> dict[str, int]:
    """The spec file's terms, with defaults that fit the chain's params."""
    terms = {**DEFAULT_TERMS, **spec_terms}
    terms.setdefault("verification_fee", 0)
    terms.setdefault("sample_count", 1)
    terms.setdefault("payment", 1)
    terms["min_stake"] = max(int(terms.get("min_stake", 0)), params.min_solver_stake)
    terms["bid_blocks"] = min(int(terms["bid_blocks"]), params.max_bid_blocks)
    terms["train_blocks"] = min(int(terms["train_blocks"]), params.max_train_blocks)
    return {k: int(v) for k, v in terms.items()}


def job_posting(spec: JobSpec, terms: dict[str, int]) -> PostJobBody:
    """The ``post_job`` of ``spec`` on ``terms`` (``job_terms``)."""
    return PostJobBody(
        spec=spec,
        payment=Amount(terms["payment"]),
        verification_fee=Amount(terms["verification_fee"]),
        min_stake=Amount(terms["min_stake"]),
        sample_count=terms["sample_count"],
        bid_blocks=terms["bid_blocks"],
        train_blocks=terms["train_blocks"],
    )


def fund_from_faucet(client: HttpChainClient, wallet: Wallet, params: Params, needed: int) -> None:
    """Top the wallet's balance up to ``needed`` from the dev faucet (where the chain has one),
    ``faucet_max`` at a time, each top-up waited for."""
    balance = int(decode_account(client.get_account(wallet.address)).balance)
    while balance < needed and params.faucet_enabled:
        amount = min(needed - balance, params.faucet_max)
        wallet.send(FaucetBody(Amount(amount)), wait=True)
        balance += amount


def submit_job(
    client: HttpChainClient, wallet: Wallet, spec: JobSpec, spec_terms: dict[str, Any]
) -> str:
    """Fund the submitter from the dev faucet if needed and post the job; returns its id."""
    params = decode_params(client.params())
    terms = job_terms(spec_terms, params)
    fund_from_faucet(client, wallet, params, terms["payment"] + terms["verification_fee"])
    tx = wallet.sign(job_posting(spec, terms))
    return client.post_job(tx, wait=True).job_id


UNSETTLED_MEANING: dict[JobStatus, str] = {
    JobStatus.SLASHED: "its solver was caught cheating (or missed a deadline); the model it "
    "committed is not the job's training",
    JobStatus.COMMITTED: "verifiers may still challenge its final commitment",
    JobStatus.ASSIGNED: "its solver is still training",
    JobStatus.OPEN: "no solver has trained it yet",
    JobStatus.EXPIRED: "no solver took it",
    JobStatus.CANCELLED: "it was cancelled",
}


def verified_model(
    source: BlobSource, job: JobView | dict[str, Any], *, require_settled: bool = True
) -> bytes:
    """The settled job's final model, checked end to end; DownloadRefusedError otherwise.

    Bound means: the job settled (not slashed, not still open to challenge); the leaf list the
    solver serves is the committed trajectory (its root is ``final_root``); its last leaf is the
    declared ``final_state_hash``; and the model served hashes to that leaf. Both fetches are
    bounded (the leaf count, the state blob's size). ``require_settled=False`` (``download
    --force``) skips only the first check: the model is then the solver's *commitment*, which
    for a slashed job is a trajectory the protocol refuted. ``job``: a view, or the chain's
    answer (decoded here).
    """
    view = job if isinstance(job, JobView) else decode_job(job)
    record, spec = view.record, view.spec
    job_id, solver, status = view.job_id, str(view.solver), view.status
    if require_settled and status is not JobStatus.SETTLED:
        raise DownloadRefusedError(
            f"job {job_id[:12]}… is {status}, not settled: "
            + UNSETTLED_MEANING.get(status, "its model is not final")
            + "; --force downloads it anyway"
        )
    if not record.final_root or not record.final_state_hash:
        raise DownloadRefusedError(f"job {job_id[:12]}… has no committed final state")
    leaves = source.leaves(solver, job_id, spec.num_leaves)
    if leaves is None or root_of(leaves) != record.final_root:
        raise DownloadRefusedError("the solver did not serve the committed leaf list")
    if leaves[-1] != record.final_state_hash:
        raise DownloadRefusedError("the declared final state is not the committed last leaf")
    blob = source.model(solver, job_id, state_blob_size(spec))
    if blob is None:
        raise DownloadRefusedError("the solver did not serve the model (or it is too large)")
    if not blob_has_root(blob, leaves[-1]):
        raise DownloadRefusedError("the served model does not hash to the committed final state")
    return blob


def describe_job(detail: JobDetail) -> dict[str, Any]:
    """A job's lifecycle (``decode_job_detail`` of ``get_job``) as JSON, for ``status``."""
    job = detail.job.record
    return {
        "job_id": job.job_id,
        "status": job.status.value,
        "solver": job.solver,
        "price": int(job.price),
        "final_root": _hex(job.final_root),
        "final_state_hash": _hex(job.final_state_hash),
        "attesters": list(job.attesters),
        "disputes": [to_json_value(d) for d in detail.dispute_summaries],
        "located_steps": [r.located_step for r in detail.events(DisputeResolved)],
        "events": [e.kind for e in detail.history],
    }


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()
