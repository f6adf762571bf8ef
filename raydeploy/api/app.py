"""The FastAPI application: the seed's contract (/api/v1/...), bearer tokens with roles, errors in one shape.

Every error is the seed's `Error` object {error, message, timestamp, details}, never a traceback.
Failed authentication and refused authorisation are audit events (without the token). Request
bodies are capped; each token has a request rate limit.
"""

import json
import time
from collections import defaultdict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from raydeploy import __version__
from raydeploy.api.tokens import Identity, TokenStore
from raydeploy.checkpoints import CHECKPOINTS, NAMES
from raydeploy.state import StateStore

MAX_BODY_BYTES = 64 * 1024
RATE_LIMIT = (120, 60.0)  # requests per token per window (seconds)


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.details = status, error, message, details or {}


def error_body(error: str, message: str, details: dict | None = None) -> dict:
    return {
        "error": error,
        "message": message,
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "details": details or {},
    }


STATUS_NAMES = {
    "succeeded": "PASSED",
    "failed": "FAILED",
    "running": "IN_PROGRESS",
    "awaiting-approval": "FAILED",
    "interrupted": "FAILED",
    "rejected": "FAILED",
}


def create_app(inventory: str, state_dir: Path) -> FastAPI:
    store = StateStore(state_dir)
    tokens = TokenStore(store)
    app = FastAPI(
        title="raydeploy API",
        version=__version__,
        description="The raydeploy wrapper's operations over HTTP (the Ray Cluster Management API contract, extended).",
    )
    app.state.store, app.state.tokens, app.state.inventory = store, tokens, inventory
    recent: dict[str, deque] = defaultdict(deque)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.error, error.message, error.details), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        name = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "HTTP_ERROR")
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

    @app.middleware("http")
    async def cap_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(
                error_body("PAYLOAD_TOO_LARGE", f"request bodies are limited to {MAX_BODY_BYTES} bytes"),
                status_code=413,
            )
        return await call_next(request)

    def identify(request: Request) -> Identity:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        identity = tokens.identify(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if identity is None:
            store.audit.append(
                "anonymous",
                "api authentication failed",
                request.url.path,
                client=request.client.host if request.client else "",
                reason="no token" if not header else "unknown or revoked token",
            )
            raise ApiError(401, "UNAUTHORIZED", "a valid bearer token is required (raydeploy api token create)")
        window = recent[identity.token_id]
        now = time.monotonic()
        while window and now - window[0] > RATE_LIMIT[1]:
            window.popleft()
        if len(window) >= RATE_LIMIT[0]:
            raise ApiError(
                429, "RATE_LIMITED", f"more than {RATE_LIMIT[0]} requests in {RATE_LIMIT[1]:.0f} s; slow down"
            )
        window.append(now)
        return identity

    def require(role: str):
        def check(request: Request, identity: Annotated[Identity, Depends(identify)]) -> Identity:
            if not identity.has(role):
                store.audit.append(
                    identity.name, "api authorisation refused", request.url.path, role=identity.role, needs=role
                )
                raise ApiError(
                    403, "FORBIDDEN", f"this needs the {role} role; the token {identity.name} is {identity.role}"
                )
            return identity

        return check

    Viewer = Annotated[Identity, Depends(require("viewer"))]
    Admin = Annotated[Identity, Depends(require("admin"))]

    def checkpoint_status(name: str) -> dict:
        checkpoint = next(cp for cp in CHECKPOINTS if cp.name == name)
        last = store.last_result(name)
        nodes: dict[str, dict] = {}
        if last:
            for row in store.operations(last["run_id"]):
                if row["checkpoint"] != name or row["host"] == "cluster":
                    continue
                entry = nodes.setdefault(
                    row["host"],
                    {
                        "status": "PASSED",
                        "timestamp": last["finished_at"] or last["started_at"],
                        "approval_required": checkpoint.approval_required,
                        "destructive_operation": checkpoint.destructive,
                    },
                )
                if row["result"] in ("failed", "fail", "unreachable"):
                    entry["status"] = "FAILED"
            for host in json.loads(last["failed_hosts"] or "[]"):
                nodes.setdefault(host, {"status": "FAILED", "timestamp": last["finished_at"]})["status"] = "FAILED"
        status = STATUS_NAMES.get(last["status"], "FAILED") if last else "NOT_FOUND"
        message = checkpoint.description if not last else f"{last['status']} in run {last['run_id']}"
        if last and last["error"]:
            message += f": {last['error'][:500]}"
        return {
            "checkpoint": name,
            "status": status,
            "nodes": nodes,
            "total_nodes": len(nodes),
            "passed_nodes": sum(1 for node in nodes.values() if node["status"] == "PASSED"),
            "message": message,
        }

    def known_checkpoint(name: str) -> str:
        if name not in NAMES:
            raise ApiError(404, "NOT_FOUND", f"unknown checkpoint {name!r}", {"valid": list(NAMES)})
        return name

    @app.get("/healthz", tags=["Service"])
    def healthz() -> dict:
        """Liveness of the API itself (no authentication)."""
        return {"status": "ok", "version": __version__}

    @app.get("/api/v1/checkpoints", tags=["Checkpoints"])
    def list_checkpoints(_: Viewer) -> list[dict]:
        """Status of every checkpoint, from the last run that ran it."""
        return [checkpoint_status(name) for name in NAMES]

    @app.get("/api/v1/checkpoints/{checkpoint_name}", tags=["Checkpoints"])
    def get_checkpoint(checkpoint_name: str, _: Viewer) -> dict:
        """One checkpoint's status; 404 lists the valid names."""
        return checkpoint_status(known_checkpoint(checkpoint_name))

    @app.get("/api/v1/runs", tags=["Runs"])
    def runs(_: Viewer, limit: int = 20) -> list[dict]:
        """Past runs, newest first."""
        return store.runs(max(1, min(limit, 200)))

    @app.get("/api/v1/runs/{run_id}", tags=["Runs"])
    def run(run_id: str, _: Viewer) -> dict:
        """One run with each checkpoint's result."""
        found = store.run(run_id)
        if found is None:
            raise ApiError(404, "NOT_FOUND", f"no run {run_id!r}", {"recent": [r["id"] for r in store.runs(5)]})
        return {**found, "checkpoint_runs": store.checkpoint_runs(run_id)}

    @app.get("/api/v1/audit", tags=["Audit"])
    def audit(_: Admin, limit: int = 100) -> list[dict]:
        """The newest audit events."""
        return [json.loads(event.as_json()) for event in store.audit.events(max(1, min(limit, 1000)))]

    return app
