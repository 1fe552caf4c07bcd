from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from contracts_sim.blocks import Receipt
from protocol.errors import ProofNetError
from services.node.deps import ChainDep, RuntimeDep
from services.node.errors import (
    BATCH_ERRORS,
    INVALID_ID,
    SUBMIT_ERRORS,
    TX_NOT_FOUND,
    error_responses,
)
from services.node.schemas import ReceiptPublic, TxBatchResult
from services.node.tx_schemas import openapi_examples
from services.node.views import parse_id

router = APIRouter(prefix="/txs", tags=["transactions"])

WaitQuery = Annotated[bool, Query(description="return once the transaction is in a block")]
TimeoutQuery = Annotated[
    float | None, Query(ge=0, le=600, description="longest wait in seconds (default: node's)")
]
SIGNED_TX_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/TxEnvelope"},
                "examples": openapi_examples("transfer", "faucet", "stake", "bid", "attest"),
            }
        },
    }
}
"""The body, read by hand (``NodeRuntime.read_envelope``: refused by size before it is
parsed), documented as FastAPI would document a declared ``TxEnvelope``."""
BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["txs"],
                    "additionalProperties": False,
                    "properties": {
                        "txs": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/TxEnvelope"},
                            "description": "at most the node's max_batch_txs, judged in order",
                        }
                    },
                },
                "example": {"txs": [openapi_examples("transfer")["transfer"]["value"]]},
            }
        },
    }
}


def receipt_response(receipt: Receipt, response: Response) -> dict[str, Any]:
    response.status_code = 202 if receipt.status == "pending" else 200
    return receipt.to_json()


@router.post(
    "",
    response_model=ReceiptPublic,
    status_code=202,
    summary="Submit a signed transaction",
    responses={
        200: {"model": ReceiptPublic, "description": "Included in a block (with ?wait=true)"},
        **error_responses(*SUBMIT_ERRORS),
    },
    openapi_extra=SIGNED_TX_BODY,
)
async def submit_tx(
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    wait: WaitQuery = False,
    timeout: TimeoutQuery = None,
) -> dict[str, Any]:
    """Submit a signed transaction. It is checked against the head state plus the pending
    transactions at once: a transaction that would fail is rejected (4xx) and changes nothing.
    202 with a pending receipt, or with ``?wait=true`` 200 with the receipt of its block.
    Re-submitting a pending or applied transaction returns its receipt (idempotent).
    A transaction larger than its kind allows is refused with 413 before it is parsed.
    The body's schema depends on ``kind``: pick one in the schema's menu."""
    envelope = await runtime.read_envelope(request)
    with runtime.metrics.submission(envelope["kind"]):
        receipt = await runtime.submit(envelope, wait, timeout)
    return receipt_response(receipt, response)


@router.post(
    "/batch",
    response_model=TxBatchResult,
    response_model_exclude_none=True,
    summary="Submit signed transactions in one request",
    responses=error_responses(*BATCH_ERRORS),
    openapi_extra=BATCH_BODY,
)
async def submit_batch(runtime: RuntimeDep, request: Request) -> JSONResponse:
    """Submit up to ``max_batch_txs`` signed transactions, judged in order exactly as that
    many ``POST /txs`` would be (signatures verified in parallel, before sequencing).

    **Per item, not all or nothing**: each result is the item's hash (accepted into the open
    block, or a copy of a pending or applied transaction) or the error that refused it, and a
    refused item changes nothing: the next is judged as if it had not been sent. The whole
    batch is refused (4xx, nothing judged) only if it is not JSON, not ``{"txs": [...]}``, over
    ``max_batch_txs`` items, over 4 MiB (or the node's ``max_body_bytes``) or made of more JSON
    values than ``max_batch_txs`` transactions need (``batch_too_complex``, before parsing).
    Each item is held to its kind's size limit, as on ``POST /txs``. Receipts:
    ``GET /txs/{tx_hash}``."""
    items = await runtime.read_batch(request)
    results = await runtime.submit_batch(items)
    entries: list[dict[str, Any]] = [
        {"error": {"code": r.code, "message": r.message}}
        if isinstance(r, ProofNetError)
        else {"tx_hash": r}
        for r in results
    ]
    accepted = sum(1 for r in results if isinstance(r, str))
    # Built to the schema here: a JSONResponse skips validating a thousand items again.
    content = {"accepted": accepted, "refused": len(results) - accepted, "results": entries}
    return JSONResponse(content)


@router.get(
    "/{tx_hash}",
    response_model=ReceiptPublic,
    summary="A transaction's receipt",
    responses=error_responses(INVALID_ID, TX_NOT_FOUND),
)
def get_receipt(tx_hash: str, chain: ChainDep) -> dict[str, Any]:
    """A transaction's receipt: pending, applied (height, index, events) or failed (error)."""
    return chain.receipt(parse_id(tx_hash, "transaction hash")).to_json()
