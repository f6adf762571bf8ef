"""Every error the API answers is the seed's `Error` object {error, message, timestamp, details}, never a traceback."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

MAX_BODY_BYTES = 64 * 1024
# The codes any operation may answer with an Error (documented on every operation).
ERROR_CODES = (400, 401, 403, 404, 405, 409, 413, 429, 500, 503)
HTTP_ERROR_NAMES = {400: "INVALID_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


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


def install(app: FastAPI) -> None:
    """Answer every error of APP in the Error shape."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        body = error_body(error.error, error.message, error.details)
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        name = HTTP_ERROR_NAMES.get(error.status_code, "HTTP_ERROR")
        return JSONResponse(error_body(name, str(error.detail)), status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(part) for part in item.get("loc", ())), "problem": item.get("msg", "")}
            for item in error.errors()
        ]
        return JSONResponse(
            error_body("INVALID_REQUEST", "the request is not valid; see details", {"problems": problems}),
            status_code=400,
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("INTERNAL_ERROR", f"the server could not answer ({type(error).__name__})"), status_code=500
        )
