"""The FastAPI application: the seed's contract (/api/v1/...), extended, one router per resource.

Errors are the seed's `Error` shape (raydeploy.api.errors); who may do what is a dependency
(raydeploy.api.context); runs go through the wrapper's own runner, lock, approvals and audit
trail (raydeploy.api.runs), so the API and the CLI never overlap.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from raydeploy import __version__
from raydeploy.api import errors, models
from raydeploy.api.context import Service
from raydeploy.api.routes import approvals, checkpoints, cluster, monitoring, nodes, runs

ROUTERS = (cluster.router, checkpoints.router, approvals.router, nodes.router, monitoring.router, runs.router)


def create_app(
    inventory: str,
    state_dir: Path,
    separation_of_duties: bool = True,
    cors_origins: list[str] | None = None,
    rate_limit: int | None = None,
) -> FastAPI:
    """The API over INVENTORY and the wrapper's STATE_DIR; RATE_LIMIT requests per token per minute."""
    app = FastAPI(
        title="raydeploy API",
        version=__version__,
        description=(
            "The raydeploy wrapper's operations over HTTP: the Ray Cluster Management API contract, extended. "
            "Every path but /healthz needs `Authorization: Bearer <token>` (raydeploy api token create); "
            "roles: viewer < operator < approver < admin."
        ),
        responses={code: {"model": models.Error, "description": "Error"} for code in errors.ERROR_CODES},
    )
    app.state.service = Service(inventory, state_dir, separation_of_duties, rate_limit)
    app.state.store = app.state.service.db()
    errors.install(app)
    app.add_middleware(errors.CapBody)
    if cors_origins:  # closed unless configured: no header at all answers a browser's preflight
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.get("/healthz", tags=["Service"], response_model=models.Healthz)
    def healthz() -> dict:
        """Liveness of the API itself (no authentication)."""
        return {"status": "ok", "version": __version__}

    for router in ROUTERS:
        app.include_router(router)
    return app
