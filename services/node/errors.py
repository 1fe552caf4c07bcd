"""Every error the node returns has one shape, ``{"error": {"code", "message"}}``:

ProofNetError (ledger, chain, protocol)   -> its .http_status and .code
malformed JSON body                       -> 400 malformed_json
request not matching the schema           -> 422 validation_error
unknown route / wrong method              -> 404 not_found / 405 method_not_allowed
body larger than max_body_bytes, or over   -> 413 body_too_large
  64 KiB and not one big string (post_prestate)
anything else (a bug)                     -> 500 internal_error (logged)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts_sim.transactions import MAX_SMALL_TRANSACTION_BYTES
from protocol.errors import ProofNetError
from services.node.schemas import ErrorResponse

log = logging.getLogger("proofnet.node")

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Malformed request or transaction"),
        (404, "Unknown id"),
        (409, "Conflicts with the current state (nonce, status, deadline)"),
        (422, "Request does not match the schema, or a rule rejected a proof"),
    )
}


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
"""JSON structural characters (``,``, ``{``, ``[``) a body past ``LARGE_BODY_BYTES`` may hold:
a ``post_prestate`` envelope has a few dozen, so a large body made of many tiny values (which
would cost far more memory to parse than its size) is refused before it is parsed."""


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with a JSON 413 (declared or streamed), and
    large bodies that are not one big string (see ``MAX_LARGE_BODY_STRUCTURE``)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, "body_too_large", self._message())
            await response(scope, receive, send)
            return
        received = structure = 0

        async def limited() -> Message:
            nonlocal received, structure
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                structure += chunk.count(b",") + chunk.count(b"{") + chunk.count(b"[")
                if received > self.max_bytes:  # FastAPI re-raises HTTPExceptions from here
                    raise StarletteHTTPException(413, self._message())
                if received > LARGE_BODY_BYTES and structure > MAX_LARGE_BODY_STRUCTURE:
                    raise StarletteHTTPException(
                        413,
                        f"a body over {LARGE_BODY_BYTES} bytes must be a post_prestate "
                        f"(at most {MAX_LARGE_BODY_STRUCTURE} JSON separators)",
                    )
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"
