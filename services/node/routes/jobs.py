from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from contracts_sim.jobs import compute_job_id
from contracts_sim.records import JobStatus
from contracts_sim.transactions import PostJobBody, Transaction, parse_body
from services.errors import WrongKindError
from services.node.deps import ChainDep, RuntimeDep
from services.node.errors import (
    BAD_PARAMETER,
    INVALID_ID,
    JOB_NOT_FOUND,
    SUBMIT_ERRORS,
    ErrorDoc,
    error_responses,
)
from services.node.routes.txs import TimeoutQuery
from services.node.schemas import JobDetail, JobPublic, JobSubmitted
from services.node.tx_schemas import openapi_examples
from services.node.views import (
    MAX_JOB_IDS,
    job_detail_view,
    job_view,
    parse_address,
    parse_id,
)

router = APIRouter(prefix="/jobs", tags=["jobs"])


WRONG_KIND = ErrorDoc(
    400,
    WrongKindError.code,
    "the transaction is not a post_job",
    "this endpoint takes a 'post_job' transaction, got 'transfer'",
)


POST_JOB_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/TxEnvelope"},
                "examples": openapi_examples("post_job"),
            }
        },
    }
}
"""The body, read by hand (``NodeRuntime.read_envelope``: refused by size before it is
parsed), documented as FastAPI would document a declared ``TxEnvelope``."""


@router.post(
    "",
    response_model=JobSubmitted,
    status_code=201,
    summary="Post a job (a signed post_job)",
    responses={
        202: {"model": JobSubmitted, "description": "Accepted, not yet in a block"},
        **error_responses(*SUBMIT_ERRORS, WRONG_KIND),
    },
    openapi_extra=POST_JOB_BODY,
)
async def post_job(
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    wait: Annotated[bool, Query(description="return once the job is in a block")] = True,
    timeout: TimeoutQuery = None,
) -> dict[str, Any]:
    """The submitter's entry point: a signed ``post_job`` transaction. Returns the job id
    (known before inclusion: it hashes the spec, the submitter and the nonce) and the receipt.
    A transaction larger than its kind allows is refused with 413 before it is parsed."""
    data = await runtime.read_envelope(request)
    with runtime.metrics.submission(data["kind"]):
        tx = Transaction.from_json(data)
        if tx.kind != PostJobBody.kind:
            raise WrongKindError(PostJobBody.kind, tx.kind)
        body: PostJobBody = parse_body(tx.kind, tx.body)
        job_id = compute_job_id(body.spec, tx.sender, tx.nonce)
        receipt = await runtime.submit(data, wait, timeout)
    response.status_code = 202 if receipt.status == "pending" else 201
    return {"job_id": job_id, "receipt": receipt.to_json()}


@router.get(
    "",
    response_model=list[JobPublic],
    summary="Jobs, filtered by status, submitter or solver",
    responses=error_responses(INVALID_ID, BAD_PARAMETER),
)
def list_jobs(
    chain: ChainDep,
    status: JobStatus | None = None,
    submitter: str | None = None,
    solver: str | None = None,
    job_id: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_JOB_IDS,
            description=f"only these jobs (repeat the parameter, at most {MAX_JOB_IDS}); "
            "an unknown id is left out",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Jobs at the head block, by id; filter by status, submitter, solver or a list of ids
    (an agent following ``/events`` re-reads the jobs the events name in one request)."""
    jobs = chain.list_jobs(
        status=None if status is None else status.value,
        submitter=None if submitter is None else parse_address(submitter),
        solver=None if solver is None else parse_address(solver),
        job_ids=None if job_id is None else {parse_id(j, "job id") for j in job_id},
    )
    return [job_view(job) for job in jobs[offset : offset + limit]]


@router.get(
    "/{job_id}",
    response_model=JobDetail,
    summary="A job's whole lifecycle",
    responses=error_responses(INVALID_ID, JOB_NOT_FOUND),
)
def get_job(job_id: str, chain: ChainDep) -> dict[str, Any]:
    """A job's whole lifecycle: status, spec, terms, bids, assignment, progress and final
    commitments, attestations, challenges and their disputes, settlement, and its events."""
    return job_detail_view(chain, parse_id(job_id, "job id"))
