from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from contracts_sim.blocks import Receipt
from services.node.deps import ChainDep, RuntimeDep
from services.node.errors import INVALID_ID, SUBMIT_ERRORS, TX_NOT_FOUND, error_responses
from services.node.schemas import ReceiptPublic, TxEnvelope
from services.node.tx_schemas import openapi_examples
from services.node.views import parse_id

router = APIRouter(prefix="/txs", tags=["transactions"])

WaitQuery = Annotated[bool, Query(description="return once the transaction is in a block")]
TimeoutQuery = Annotated[
    float | None, Query(ge=0, le=600, description="longest wait in seconds (default: node's)")
]
SignedTxBody = Annotated[
    TxEnvelope,
    Body(openapi_examples=openapi_examples("transfer", "faucet", "stake", "bid", "attest")),
]


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
)
async def submit_tx(
    envelope: SignedTxBody,
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
    A transaction larger than its kind allows is refused with 413 before it is checked.
    The body's schema depends on ``kind``: pick one in the schema's menu."""
    with runtime.metrics.submission(envelope.kind):
        await runtime.check_size(request, envelope.kind)
        receipt = await runtime.submit(envelope.model_dump(), wait, timeout)
    return receipt_response(receipt, response)


@router.get(
    "/{tx_hash}",
    response_model=ReceiptPublic,
    summary="A transaction's receipt",
    responses=error_responses(INVALID_ID, TX_NOT_FOUND),
)
def get_receipt(tx_hash: str, chain: ChainDep) -> dict[str, Any]:
    """A transaction's receipt: pending, applied (height, index, events) or failed (error)."""
    return chain.receipt(parse_id(tx_hash, "transaction hash")).to_json()
