"""The FastAPI application: the seed's contract (/api/v1/...), extended, one router per resource, and the
web console (raydeploy.api.console) at /.

Errors are the seed's `Error` shape (raydeploy.api.errors); who may do what is a dependency
(raydeploy.api.context); runs go through the wrapper's own runner, lock, approvals and audit
trail (raydeploy.api.runs), so the API and the CLI never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from raydeploy import __version__, webhook_delivery
from raydeploy.api import errors, models
from raydeploy.api.console import access as console_access
from raydeploy.api.console import forms as console_forms
from raydeploy.api.console import pages as console_pages
from raydeploy.api.console import planning as console_planning
from raydeploy.api.console import signin as console_signin
from raydeploy.api.console.rendering import HERE as CONSOLE_DIR
from raydeploy.api.context import Service
from raydeploy.api.routes import actions, approvals, checkpoints, cluster, monitoring, nodes, runs, webhooks
from raydeploy.validation_schedule import Schedule

ROUTERS = (
    cluster.router,
    checkpoints.router,
    actions.router,
    approvals.router,
    nodes.router,
    monitoring.router,
    runs.router,
    webhooks.router,
)
# The web console: sign-in, pages, forms (each behind a session, but for signing in).
CONSOLE = (console_signin.router, console_pages.router, console_planning.router, console_forms.router)
# Answered without a token: liveness, and the API's own documents (the contract is no secret: it is
# committed as raydeploy/api/openapi.json, and the /docs page must load /openapi.json without a header).
PUBLIC_PATHS = ("/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
FLUSH_EVERY_S = 10.0


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Record the bursts of failed authentications as their windows pass, and the open ones at shutdown;
    send the webhook queue (what an earlier process left in it too); validate on the schedule, if any."""
    service: Service = app.state.service
    webhook_delivery.start(service.state_dir)
    schedule = None
    if app.state.validate_every is not None:
        schedule = Schedule(service.state_dir, service.inventory, app.state.validate_every).start()

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            await asyncio.to_thread(lambda: service.failed_auth.flush(service.db()))

    flusher = asyncio.create_task(flush_periodically())
    try:
        yield
    finally:
        flusher.cancel()
        await asyncio.to_thread(lambda: service.failed_auth.flush(service.db(), everything=True))
        if schedule is not None:
            await asyncio.to_thread(schedule.stop)
        await asyncio.to_thread(webhook_delivery.stop_all)


def create_app(
    inventory: str,
    state_dir: Path,
    separation_of_duties: bool = True,
    cors_origins: list[str] | None = None,
    rate_limit: int | None = None,
    failed_auth_limit: int | None = None,
    validate_every: timedelta | None = None,
) -> FastAPI:
    """The API over INVENTORY and the wrapper's STATE_DIR; RATE_LIMIT requests per token per minute,
    FAILED_AUTH_LIMIT failed authentications per client address per minute; a validation every
    VALIDATE_EVERY (None: never)."""
    app = FastAPI(
        title="raydeploy API",
        version=__version__,
        description=(
            "The raydeploy wrapper's operations over HTTP: the Ray Cluster Management API contract, extended. "
            "Every path under /api/v1 needs `Authorization: Bearer <token>` (raydeploy api token create); "
            "/healthz and the API's own documents (/openapi.json, /docs, /redoc) need none. "
            "Roles: viewer < operator < approver < admin."
        ),
        responses={code: {"model": models.Error, "description": "Error"} for code in errors.ERROR_CODES},
        lifespan=lifespan,
    )
    app.state.service = Service(inventory, state_dir, separation_of_duties, rate_limit, failed_auth_limit)
    app.state.store = app.state.service.db()
    app.state.validate_every = validate_every
    errors.install(app)
    app.add_middleware(console_access.SecurityHeaders)
    app.add_middleware(errors.CapBody)
    if cors_origins:  # closed unless configured: no header at all answers a browser's preflight
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(errors.CapRequest)  # outermost: an oversized request reaches nothing else

    @app.get("/healthz", tags=["Service"], response_model=models.Healthz)
    def healthz() -> dict:
        """Liveness of the API itself (no authentication)."""
        return {"status": "ok", "version": __version__}

    for router in ROUTERS:
        app.include_router(router)
    # The web console: pages at /, its own static files, the same identities and route functions.
    for router in CONSOLE:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=CONSOLE_DIR / "static"), name="static")
    return app
