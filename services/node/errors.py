"""Every error the node returns has one shape, ``{"error": {"code", "message"}}``:

ProofNetError (ledger, chain, protocol)   -> its .http_status and .code
malformed JSON body                       -> 400 malformed_json
request not matching the schema           -> 422 validation_error
unknown route / wrong method              -> 404 not_found / 405 method_not_allowed
body larger than max_body_bytes, or over   -> 413 body_too_large
  64 KiB and not one big string (post_prestate);
  a batch (POST /txs/batch) over MAX_BATCH_BYTES
  (or the operator's max_body_bytes)
a batch of more JSON separators than its   -> 413 batch_too_complex (before it is parsed)
  max_batch_txs can need
anything else (a bug)                     -> 500 internal_error (logged)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts_sim.transactions import MAX_SMALL_TRANSACTION_BYTES
from protocol.errors import ProofNetError
from services.errors import BatchTooComplexError
from services.node.schemas import ErrorResponse

log = logging.getLogger("proofnet.node")

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@dataclass(frozen=True)
class ErrorDoc:
    """One way a route can fail, for its OpenAPI ``responses``: the status, the code, when it
    happens and an example message."""

    status: int
    code: str
    when: str
    example: str


def error_responses(*docs: ErrorDoc) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: only the statuses it can answer with, each listing the
    codes behind it, with one example body per code (Swagger UI's example menu)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({doc.status for doc in docs}):
        mine = [doc for doc in docs if doc.status == status]
        examples = {
            doc.code: {
                "summary": doc.when,
                "value": {"error": {"code": doc.code, "message": doc.example}},
            }
            for doc in mine
        }
        responses[status] = {
            "model": ErrorResponse,
            "description": "; ".join(f"`{doc.code}`: {doc.when}" for doc in mine),
            "content": {"application/json": {"examples": examples}},
        }
    return responses


# --- what routes can answer (declared per route, where it can happen) ------------------------

HEX = "ab" * 32

INVALID_ID = ErrorDoc(
    400,
    "invalid_identifier",
    "an id or address is not well formed",
    "job id '12' is not well formed",
)
BAD_PARAMETER = ErrorDoc(
    422,
    "validation_error",
    "a query or path parameter is of the wrong type or out of range",
    "query.limit: Input should be less than or equal to 1000",
)
TX_NOT_FOUND = ErrorDoc(404, "tx_not_found", "no such transaction", f"no transaction {HEX}")
JOB_NOT_FOUND = ErrorDoc(404, "job_not_found", "no such job", f"no job {HEX}")
DISPUTE_NOT_FOUND = ErrorDoc(404, "dispute_not_found", "no such dispute", f"no dispute {HEX}")
BLOCK_NOT_FOUND = ErrorDoc(404, "block_not_found", "no block yet", "no block at height 99")
SAMPLE_SEED_NOT_READY = ErrorDoc(
    409,
    "sample_seed_not_ready",
    "the block after the final commitment is not sealed yet",
    f"job {HEX}: the sample seed is not ready (block 42 not sealed)",
)

SUBMIT_ERRORS: tuple[ErrorDoc, ...] = (
    ErrorDoc(400, "malformed_json", "the body is not JSON", "the request body is not valid JSON"),
    ErrorDoc(
        400,
        "malformed_transaction",
        "an envelope field is malformed (hex, sizes, nonce range)",
        "malformed transaction: public_key must be 64 lowercase hex digits",
    ),
    ErrorDoc(
        400,
        "malformed_body",
        "the body does not fit its kind (the field is named)",
        "body.amount: must be an integer, got 1.5",
    ),
    ErrorDoc(
        400,
        "unknown_transaction_kind",
        "no such kind",
        "unknown transaction kind 'mint_everything'",
    ),
    ErrorDoc(
        400,
        "wrong_chain_id",
        "signed for another chain",
        "transaction is for chain 'other', this is 'proofnet-dev'",
    ),
    ErrorDoc(
        400,
        "invalid_spec",
        "a post_job's spec is invalid (untrainable_spec, unverifiable_job: not here)",
        "body.spec.version: is required",
    ),
    ErrorDoc(
        401,
        "invalid_signature",
        "the signature does not verify (sender_mismatch: sender is not the key's address)",
        "the signature does not verify",
    ),
    ErrorDoc(
        402,
        "insufficient_balance",
        "the sender cannot pay (insufficient_stake: not enough free stake)",
        "0xf0df…d8a1 needs balance 1000000000, has 100000",
    ),
    ErrorDoc(
        403,
        "not_authorized",
        "the sender may not do this (not_your_turn, faucet_disabled, faucet_cap_exceeded)",
        "only the job's solver may commit",
    ),
    ErrorDoc(404, "job_not_found", "the body names an unknown job", f"no job {HEX}"),
    ErrorDoc(404, "dispute_not_found", "the body names an unknown dispute", f"no dispute {HEX}"),
    ErrorDoc(
        409,
        "nonce_too_low",
        "the state forbids it now: nonce_too_low/high, wrong_job_status, deadline_passed, "
        "deadline_not_reached, wrong_dispute_phase, …",
        "nonce 0 is below the account's next nonce 1",
    ),
    ErrorDoc(
        413,
        "body_too_large",
        "the body is larger than the node reads (transaction_too_large: than its kind allows)",
        "the request body is larger than 4096 bytes",
    ),
    ErrorDoc(
        422,
        "validation_error",
        "the envelope or a query parameter does not match the schema",
        "nonce: Input should be a valid integer",
    ),
    ErrorDoc(
        422,
        "invalid_proof",
        "a proof or hash is rejected (hash_mismatch, invalid_commitment, leaf_count_mismatch…)",
        "consistency_proof: does not prove the old root",
    ),
    ErrorDoc(
        429,
        "block_full",
        "the open block is full; retry after the next block",
        "the open block already holds 1000 transactions",
    ),
)
"""Everything a submitted transaction can be refused with (POST /txs, POST /jobs)."""

BATCH_ERRORS: tuple[ErrorDoc, ...] = (
    ErrorDoc(400, "malformed_json", "the body is not JSON", "the request body is not valid JSON"),
    ErrorDoc(
        413,
        "batch_too_large",
        "more transactions than max_batch_txs (body_too_large: over MAX_BATCH_BYTES or "
        "the node's max_body_bytes)",
        "a batch of 1001 transactions; at most 1000",
    ),
    ErrorDoc(
        413,
        "batch_too_complex",
        "more JSON separators than max_batch_txs transactions need (refused unparsed)",
        "a batch with 90000 JSON separators; at most 80640 (about 64 per transaction it may carry)",
    ),
    ErrorDoc(
        422,
        "validation_error",
        "the body is not an object with a list txs",
        "txs: Field required",
    ),
)
"""What refuses a whole batch (POST /txs/batch); an item's own errors are in its result."""


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _describe(errors: Any) -> str:
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _proofnet_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProofNetError)
    status = exc.http_status
    if status >= 500:
        log.error("server-side error %s: %s", exc.code, exc.message)
    return error_response(status, exc.code, exc.message)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(400, "malformed_json", "the request body is not valid JSON")
    return error_response(422, "validation_error", _describe(errors))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 400 and "parsing the body" in message:
        # FastAPI's answer to a body json.loads cannot take (bad UTF-8, huge ints, deep nesting)
        code, message = "malformed_json", "the request body is not valid JSON"
    return error_response(exc.status_code, code, message)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", f"{type(exc).__name__}: internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProofNetError, _proofnet_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


LARGE_BODY_BYTES = MAX_SMALL_TRANSACTION_BYTES
"""Past this size a body can only be a ``post_prestate``, whose bulk is one hex string."""
MAX_LARGE_BODY_STRUCTURE = 256
"""JSON structural characters (``,``, ``{``, ``[``) a body past ``LARGE_BODY_BYTES`` may hold
besides one per ``LARGE_BODY_BYTES_PER_SEPARATOR`` bytes: a ``post_prestate`` envelope has a
few dozen, a ``post_pieces`` one a few dozen per 4 KiB chunk (8 KiB of hex), so a large body
made of many tiny values (which would cost far more memory to parse than its size) is refused
before it is parsed."""
LARGE_BODY_BYTES_PER_SEPARATOR = 256


def large_body_structure(size: int) -> int:
    """The structural characters a body of ``size`` bytes (past ``LARGE_BODY_BYTES``) may hold:
    values of ``LARGE_BODY_BYTES_PER_SEPARATOR`` bytes on average cost less memory parsed
    than the body itself."""
    return MAX_LARGE_BODY_STRUCTURE + size // LARGE_BODY_BYTES_PER_SEPARATOR


def json_separators(encoded: bytes) -> int:
    """The JSON structural characters (``,``, ``{``, ``[``) in ``encoded``, counted with
    ``bytes.count`` (a memchr: about a millisecond for 4 MiB), an upper bound on the values
    parsing it would build."""
    return encoded.count(b",") + encoded.count(b"{") + encoded.count(b"[")


BATCH_SEPARATORS_PER_TX = 64
"""JSON separators a batch may hold per transaction it may carry: a signed transfer has
about ten, a job spec a few dozen; a blob kind's chunks are paid for by its bytes
(``large_body_structure``)."""


def batch_structure(size: int, max_batch_txs: int) -> int:
    """The JSON separators a batch of ``size`` bytes may hold: what ``max_batch_txs`` small
    transactions need, plus what a body of large values may hold."""
    return max_batch_txs * BATCH_SEPARATORS_PER_TX + large_body_structure(size)


def check_batch_structure(encoded: bytes, max_batch_txs: int) -> None:
    """Raise ``BatchTooComplexError`` for a batch with more JSON separators than
    ``batch_structure`` allows, before it is parsed."""
    separators = json_separators(encoded)
    limit = batch_structure(len(encoded), max_batch_txs)
    if separators > limit:
        raise BatchTooComplexError(separators, limit)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with a JSON 413 (declared or streamed), and
    large bodies that are not one big string (see ``MAX_LARGE_BODY_STRUCTURE``); a batch
    (``BATCH_PATH``) is held to ``max_batch_bytes`` instead (its structure is checked before
    it is parsed: ``check_batch_structure``)."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_batch_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_batch_bytes = max_batch_bytes or MAX_BATCH_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        batch = scope.get("path") == BATCH_PATH
        max_bytes = self.max_batch_bytes if batch else self.max_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > max_bytes:
            response = error_response(413, "body_too_large", self._message(max_bytes))
            await response(scope, receive, send)
            return
        received = structure = 0

        async def limited() -> Message:
            nonlocal received, structure
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > max_bytes:  # FastAPI re-raises HTTPExceptions from here
                    raise StarletteHTTPException(413, self._message(max_bytes))
                if batch:  # many small values by nature: check_batch_structure, once read
                    return message
                structure += json_separators(chunk)
                if received > LARGE_BODY_BYTES and structure > large_body_structure(received):
                    raise StarletteHTTPException(
                        413,
                        f"a body over {LARGE_BODY_BYTES} bytes must be one of few large "
                        f"values (at most {large_body_structure(received)} JSON separators)",
                    )
            return message

        await self.app(scope, limited, send)

    @staticmethod
    def _message(max_bytes: int) -> str:
        return f"the request body is larger than {max_bytes} bytes"


BATCH_PATH = "/txs/batch"
MAX_BATCH_BYTES = 4 << 20
"""The largest batch body read (less if the operator's ``max_body_bytes`` is less): a thousand
transfers take about 420 KB. A batch is many small values, so parsing it costs memory many
times its size: this cap and ``batch_structure``, not the transactions' limits, bound that."""
