"""Every error the API answers is the seed's `Error` object {error, message, timestamp, details}, never a traceback."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from raydeploy.audit import AuditKeyError

MAX_BODY_BYTES = 64 * 1024
# What the server reads of a request before anything else: its target (path and query) and its header
# section. uvicorn's h11 refuses a head that arrives in pieces beyond MAX_HEAD_BYTES; one that arrives in
# a single read is whole before h11 can judge it, so CapRequest measures every request again.
MAX_TARGET_BYTES = 4 * 1024
MAX_HEADER_BYTES = 8 * 1024
MAX_HEADERS = 64
MAX_HEAD_BYTES = MAX_TARGET_BYTES + MAX_HEADER_BYTES + 1024
# What an invalid request's answer repeats of it: field names come from the client.
MAX_PROBLEMS, MAX_FIELD_CHARS = 20, 120
# The codes any operation may answer with an Error (documented on every operation).
ERROR_CODES = (400, 401, 403, 404, 405, 409, 413, 414, 422, 429, 431, 500, 503)
HTTP_ERROR_NAMES = {
    400: "INVALID_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    422: "INVALID_REQUEST",
    431: "HEADERS_TOO_LARGE",
}


class ApiError(Exception):
    """An answer in the Error shape: STATUS, a stable ERROR name, a MESSAGE that says what to do, DETAILS,
    and any HEADERS the status calls for (Retry-After with a 429)."""

    def __init__(
        self, status: int, error: str, message: str, details: dict | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.error, self.message, self.details = status, error, message, details or {}
        self.headers = headers or {}


class BodyTooLarge(StarletteHTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(error: str, message: str, details: dict | None = None) -> dict:
    return {"error": error, "message": message, "timestamp": now(), "details": details or {}}


def json_errors(media_type: str, description: str) -> dict:
    """Responses of a route whose success is MEDIA_TYPE text: its errors are still the JSON Error."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: dict = {code: {"description": "Error", "content": error} for code in ERROR_CODES}
    responses[200] = {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}
    return responses


def too_large(scope) -> tuple[int, str] | None:
    """(status, message) when the request's target or header section is over its cap, else None."""
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
    if target > MAX_TARGET_BYTES:
        return 414, f"request targets (path and query) are limited to {MAX_TARGET_BYTES} bytes"
    headers = scope["headers"]
    if len(headers) > MAX_HEADERS or sum(len(name) + len(value) + 4 for name, value in headers) > MAX_HEADER_BYTES:
        return 431, f"requests are limited to {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all"
    return None


class CapRequest:
    """ASGI middleware, outermost: a request whose target or headers are over their caps is answered
    414 or 431 before anything reads it (no route, no authentication, no audit event)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        refused = too_large(scope) if scope["type"] == "http" else None
        if refused is None:
            return await self.app(scope, receive, send)
        status, message = refused
        response = JSONResponse(error_body(HTTP_ERROR_NAMES[status], message), status_code=status)
        return await response(scope, receive, send)


class CapBody:
    """ASGI middleware: a body over MAX_BODY_BYTES is refused (413), whether its length is declared or streamed."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            response = JSONResponse(error_body("PAYLOAD_TOO_LARGE", BodyTooLarge().detail), status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def capped():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise BodyTooLarge()
            return message

        return await self.app(scope, capped, send)


def invalid_request(errors: list[dict]) -> dict:
    """The answer to a request that is not valid: 422 when its body is at fault (as FastAPI answers; the
    seed's 400 on execute means APPROVAL_REQUIRED and nothing else), 400 for a header, query or path value."""
    problems = [
        {"field": ".".join(str(part) for part in item.get("loc", ()))[:MAX_FIELD_CHARS], "problem": item.get("msg", "")}
        for item in errors[:MAX_PROBLEMS]
    ]
    status = 422 if any(tuple(item.get("loc", ()))[:1] == ("body",) for item in errors) else 400
    body = error_body("INVALID_REQUEST", "the request is not valid; see details", {"problems": problems})
    return {"content": body, "status_code": status}


def install(app: FastAPI) -> None:
    """Answer every error of APP in the Error shape."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        body = error_body(error.error, error.message, error.details)
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        # The framework answers 400 for only one thing, a body it cannot parse (not UTF-8, say): that is a
        # malformed body, 422, since the seed's 400 on execute means APPROVAL_REQUIRED and nothing else.
        status = 422 if error.status_code == 400 else error.status_code
        name = HTTP_ERROR_NAMES.get(status, "HTTP_ERROR")
        # The exception's headers are part of the answer: Allow with a 405 (RFC 9110).
        return JSONResponse(error_body(name, str(error.detail)), status_code=status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(**invalid_request(error.errors()))

    @app.exception_handler(AuditKeyError)
    async def audit_key_missing(_request: Request, _error: AuditKeyError) -> JSONResponse:
        # The key's path is the server's business: its operator reads it from `raydeploy audit --verify`.
        message = (
            "the audit trail cannot be written: its key is missing on the server; nothing was done. The server's "
            "operator must restore the key (`raydeploy audit --verify` names it)"
        )
        return JSONResponse(error_body("AUDIT_UNAVAILABLE", message), status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("INTERNAL_ERROR", f"the server could not answer ({type(error).__name__})"), status_code=500
        )
