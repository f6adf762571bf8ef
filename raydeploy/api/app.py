"""The FastAPI application: the seed's contract (/api/v1/...), bearer tokens with roles, errors in one shape.

Every error is the seed's `Error` object {error, message, timestamp, details}, never a traceback.
Failed authentication and refused authorisation are audit events (without the token). Request
bodies are capped; each token has a request rate limit. Runs go through the wrapper's own runner,
lock, approvals and audit trail (raydeploy.api.runs), so the API and the CLI never overlap.
"""

import json
import subprocess
import threading
import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from raydeploy import __version__
from raydeploy.api import models, runs
from raydeploy.api.monitoring import UpstreamError, federate, grafana_dashboards, provisioned_dashboards
from raydeploy.api.tokens import Identity, TokenStore
from raydeploy.approvals import ApprovalError, Approvals
from raydeploy.checkpoints import NAMES, get
from raydeploy.plans import Plan, PlanError, make_plan
from raydeploy.runner import new_run_id
from raydeploy.state import LockHeld, StateStore

MAX_BODY_BYTES = 64 * 1024
HEALTH_CACHE_S = 5.0
RATE_LIMIT = (120, 60.0)
CheckpointName = Annotated[str, PathParameter(description="A checkpoint's name", examples=["cleanup-existing"])]
NodeName = Annotated[
    str, PathParameter(description="A host's name in the inventory", examples=["head"])
]  # requests per token per window (seconds)
ERROR_CODES = (400, 401, 403, 404, 405, 409, 413, 429, 500, 503)


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.details = status, error, message, details or {}


class BodyTooLarge(StarletteHTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(error: str, message: str, details: dict | None = None) -> dict:
    return {"error": error, "message": message, "timestamp": now(), "details": details or {}}


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


STATUS_NAMES = {
    "succeeded": "PASSED",
    "failed": "FAILED",
    "running": "IN_PROGRESS",
    "awaiting-approval": "FAILED",
    "interrupted": "FAILED",
    "rejected": "FAILED",
}
HTTP_ERROR_NAMES = {
    400: "INVALID_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
}


def json_errors(media_type: str, description: str) -> dict:
    """Responses of a route whose success is MEDIA_TYPE text: its errors are still the JSON Error."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: dict = {code: {"description": "Error", "content": error} for code in ERROR_CODES}
    responses[200] = {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}
    return responses


def create_app(
    inventory: str,
    state_dir: Path,
    separation_of_duties: bool = True,
    cors_origins: list[str] | None = None,
    rate_limit: int | None = None,
) -> FastAPI:
    """The API over INVENTORY and the wrapper's STATE_DIR; RATE_LIMIT requests per token per minute."""
    state_dir = Path(state_dir)
    limit = (rate_limit, 60.0) if rate_limit else RATE_LIMIT
    local = threading.local()

    def db() -> StateStore:
        """This thread's connection to the state (SQLite connections are not shared between threads)."""
        if getattr(local, "store", None) is None:
            local.store = StateStore(state_dir)
            local.tokens = TokenStore(local.store)
        return local.store

    def tokens() -> TokenStore:
        db()
        return local.tokens

    app = FastAPI(
        title="raydeploy API",
        version=__version__,
        description=(
            "The raydeploy wrapper's operations over HTTP: the Ray Cluster Management API contract, extended. "
            "Every path but /healthz needs `Authorization: Bearer <token>` (raydeploy api token create); "
            "roles: viewer < operator < approver < admin."
        ),
        responses={code: {"model": models.Error, "description": "Error"} for code in ERROR_CODES},
    )
    app.add_middleware(CapBody)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.state.store, app.state.inventory = db(), inventory
    recent: dict[str, deque] = defaultdict(deque)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.error, error.message, error.details), status_code=error.status)

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

    # Who is asking -------------------------------------------------------------------------------

    def identify(request: Request) -> Identity:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        identity = tokens().identify(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if identity is None:
            db().audit.append(
                "anonymous",
                "api authentication failed",
                request.url.path,
                client=request.client.host if request.client else "",
                reason="no token" if not header else "unknown or revoked token",
            )
            raise ApiError(401, "UNAUTHORIZED", "a valid bearer token is required (raydeploy api token create)")
        window = recent[identity.token_id]
        moment = time.monotonic()
        while window and moment - window[0] > limit[1]:
            window.popleft()
        if len(window) >= limit[0]:
            raise ApiError(429, "RATE_LIMITED", f"more than {limit[0]} requests in {limit[1]:.0f} s; slow down")
        window.append(moment)
        return identity

    def refuse(identity: Identity, path: str, message: str, error: str = "FORBIDDEN", **details) -> ApiError:
        db().audit.append(identity.name, "api authorisation refused", path, role=identity.role, why=error, **details)
        return ApiError(403, error, message, details)

    def require(role: str):
        def check(request: Request, identity: Annotated[Identity, Depends(identify)]) -> Identity:
            if not identity.has(role):
                raise refuse(
                    identity,
                    request.url.path,
                    f"this needs the {role} role; the token {identity.name} is {identity.role}",
                    needs=role,
                )
            return identity

        return check

    Viewer = Annotated[Identity, Depends(require("viewer"))]
    Operator = Annotated[Identity, Depends(require("operator"))]
    Approver = Annotated[Identity, Depends(require("approver"))]
    Admin = Annotated[Identity, Depends(require("admin"))]

    # State ---------------------------------------------------------------------------------------

    def checkpoint_status(name: str) -> dict:
        store = db()
        checkpoint = get(name)
        last = store.last_result(name)
        nodes: dict[str, dict] = {}
        if last:
            for row in store.operations(last["run_id"]):
                if row["checkpoint"] != name or row["host"] == "cluster":
                    continue
                entry = nodes.setdefault(
                    row["host"],
                    {
                        "status": "IN_PROGRESS" if last["status"] == "running" else "PASSED",
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

    def plan_of(name: str) -> Plan:
        try:
            return make_plan(inventory, get(name))
        except PlanError as error:
            raise ApiError(503, "PLAN_FAILED", str(error)[:4000], {"checkpoint": name}) from None

    def approval_info(name: str, plan: Plan | None) -> dict:
        checkpoint = get(name)
        listed = Approvals(db(), separation_of_duties).all(name)
        impact = [] if plan is None else impact_summary(plan)
        if not checkpoint.approval_required:
            message = f"{name} runs without an approval"
        elif plan is not None and not plan.has_changes:
            message = f"{name}'s plan changes nothing: it runs without an approval"
        else:
            message = (
                f"{name} needs an approval bound to plan {plan.digest if plan else '?'}: "
                f"POST /api/v1/approvals/{name} with a reason"
                + (" and acknowledge_risks: true (destructive)" if checkpoint.destructive else "")
                + (
                    "; with separation of duties, not by whoever starts the run"
                    if checkpoint.destructive and separation_of_duties
                    else ""
                )
            )
        return {
            "checkpoint": name,
            "approval_required": checkpoint.approval_required,
            "destructive_operation": checkpoint.destructive,
            "approval_file": str(state_dir / "approvals" / f"{name}.json"),
            "message": message,
            "impact_summary": impact,
            "plan_digest": plan.digest if plan else None,
            "has_changes": plan.has_changes if plan else None,
            "separation_of_duties": separation_of_duties,
            "approvals": [a for a in listed if a["status"] == "valid"],
        }

    health_cache: dict = {"at": 0.0, "value": None}
    health_lock = threading.Lock()

    def cluster_health(max_age_s: float = HEALTH_CACHE_S) -> dict:
        """The seed's ClusterHealth from the validate package's HTTP checks, cached for MAX_AGE_S."""
        with health_lock:  # one refresh at a time; the others wait for it and share it
            moment = time.time()
            if health_cache["value"] is None or moment - health_cache["at"] >= max_age_s:
                health_cache.update(value=compute_health(inventory, db()), at=time.time())
            return {**health_cache["value"], "age_s": round(time.time() - health_cache["at"], 2)}

    # Cluster -------------------------------------------------------------------------------------

    @app.get("/api/v1/cluster/health", tags=["Cluster Status"], response_model=models.ClusterHealth)
    def get_cluster_health(_: Viewer) -> dict:
        """Health of the Ray cluster and the monitoring stack (answers up to 5 s old; see checked_at, age_s)."""
        return cluster_health()

    @app.get("/api/v1/cluster/status", tags=["Cluster Status"], response_model=models.ClusterStatus)
    def get_cluster_status(_: Viewer) -> dict:
        """Deployment progress (the checkpoints' last results) and the cluster's health."""
        details = {name: checkpoint_status(name) for name in NAMES}
        completed = [name for name, status in details.items() if status["status"] == "PASSED"]
        if any(status["status"] == "IN_PROGRESS" for status in details.values()):
            deployment = "IN_PROGRESS"
        elif len(completed) == len(NAMES):
            deployment = "COMPLETED"
        elif any(status["status"] == "FAILED" for status in details.values()):
            deployment = "FAILED"
        else:
            deployment = "IN_PROGRESS"
        last = db().last_run()
        return {
            "deployment_status": deployment,
            "completed_checkpoints": completed,
            "total_checkpoints": len(NAMES),
            "checkpoint_details": details,
            "cluster_health": cluster_health(),
            "last_updated": (last or {}).get("finished_at") or (last or {}).get("started_at"),
        }

    # Nodes ---------------------------------------------------------------------------------------

    def node_infos() -> tuple[list[dict], object]:
        from deploys.components import expected_containers
        from validate import http_checks
        from validate.inventory import InventoryError, load
        from validate.runner import SecretReader

        try:
            loaded = load(inventory)
        except InventoryError as error:
            raise ApiError(503, "INVENTORY_UNREADABLE", str(error)) from None
        cluster = loaded.cluster
        try:
            alive = {
                str(node.get("node_ip"))
                for node in http_checks.alive_nodes(cluster, http_checks.ray_headers(cluster, SecretReader(cluster)))
            }
            known = True
        except Exception:  # the head does not answer: nobody's state is known
            alive, known = set(), False
        infos = []
        for node in cluster.hosts:
            if node.role == "monitoring" or not known:
                status = "UNKNOWN"
            else:
                status = "ONLINE" if node.settings.cluster_address in alive else "OFFLINE"
            infos.append(
                {
                    "name": node.name,
                    "ip": node.settings.cluster_address,
                    "role": node.role,
                    "status": status,
                    "containers": sorted(expected_containers(node, cluster)),
                }
            )
        return infos, loaded

    @app.get("/api/v1/nodes", tags=["Nodes"], response_model=list[models.NodeInfo])
    def list_nodes(_: Viewer) -> list[dict]:
        """The inventory's hosts; ONLINE/OFFLINE is the Ray head's view of each node."""
        return node_infos()[0]

    @app.get("/api/v1/nodes/{node_name}", tags=["Nodes"], response_model=models.NodeDetails)
    def get_node(node_name: NodeName, _: Viewer) -> dict:
        """One host, with its system facts and containers read over SSH; 404 lists the valid names."""
        infos, loaded = node_infos()
        info = next((item for item in infos if item["name"] == node_name), None)
        if info is None:
            raise ApiError(404, "NOT_FOUND", f"unknown node {node_name!r}", {"valid": [item["name"] for item in infos]})
        details = {**info, "system_info": {}, "containers": [], "checkpoints": []}
        details["system_info"], details["containers"] = node_facts(loaded, node_name)
        for name in NAMES:
            status = checkpoint_status(name)["nodes"].get(node_name)
            if status:
                details["checkpoints"].append({"checkpoint": name, **status})
        return details

    # Checkpoints, plans, approvals ---------------------------------------------------------------

    @app.get("/healthz", tags=["Service"], response_model=models.Healthz)
    def healthz() -> dict:
        """Liveness of the API itself (no authentication)."""
        return {"status": "ok", "version": __version__}

    @app.get("/api/v1/checkpoints", tags=["Checkpoints"], response_model=list[models.CheckpointStatus])
    def list_checkpoints(_: Viewer) -> list[dict]:
        """Status of every checkpoint, from the last run that ran it."""
        return [checkpoint_status(name) for name in NAMES]

    @app.get("/api/v1/checkpoints/{checkpoint_name}", tags=["Checkpoints"], response_model=models.CheckpointStatus)
    def get_checkpoint(checkpoint_name: CheckpointName, _: Viewer) -> dict:
        """One checkpoint's status; 404 lists the valid names."""
        return checkpoint_status(known_checkpoint(checkpoint_name))

    @app.post(
        "/api/v1/checkpoints/{checkpoint_name}",
        tags=["Checkpoints"],
        status_code=202,
        response_model=models.CheckpointExecution,
        responses={
            400: {"model": models.ApprovalRequired, "description": "Approval required, or a bad request"},
            409: {
                "model": models.Error,
                "description": "A run is in progress, or an earlier checkpoint has not passed",
            },
        },
    )
    def execute_checkpoint(
        checkpoint_name: CheckpointName,
        request: Request,
        identity: Operator,
        body: Annotated[models.CheckpointExecutionRequest | None, Body()] = None,
    ) -> dict:
        """Start a checkpoint: 202 with the run's id at once (it runs in the background; follow
        /api/v1/runs/{id}/log), 400 APPROVAL_REQUIRED with the plan's impact when an approval is
        missing, 409 when a run holds the lock or an earlier checkpoint has not passed (force: true)."""
        name = known_checkpoint(checkpoint_name)
        body = body or models.CheckpointExecutionRequest()
        checkpoint, store = get(name), db()
        run_id = new_run_id()
        try:
            lock = store.acquire(run_id, identity.name)
        except LockHeld as error:
            held = store.current_lock()
            raise ApiError(409, "RUN_IN_PROGRESS", str(error), {"run_id": held.run_id if held else None}) from None
        started = False  # until the run owns the lock, every way out of here gives it back
        try:
            if not body.force:
                missing = [
                    earlier
                    for earlier in NAMES[: NAMES.index(name)]
                    if (store.last_result(earlier) or {}).get("status") != "succeeded"
                ]
                if missing:
                    raise ApiError(
                        409,
                        "PREREQUISITES_NOT_MET",
                        f"{name} comes after {', '.join(missing)}, which ha{'s' if len(missing) == 1 else 've'} "
                        'not passed; run them first, or send {"force": true}',
                        {"not_passed": missing},
                    )
            if checkpoint.approval_required:
                plan = plan_of(name)
                if plan.has_changes:
                    decision = Approvals(store, separation_of_duties).find(plan, requested_by=identity.name)
                    if decision.approval is None and body.approve:
                        approve_on_execute(identity, request.url.path, plan)
                    elif decision.approval is None:
                        info = approval_info(name, plan)
                        store.audit.append(
                            identity.name, "approval requested", name, plan_digest=plan.digest, via="api"
                        )
                        return JSONResponse(
                            {
                                **error_body(
                                    "APPROVAL_REQUIRED",
                                    f"{name} needs an approval for plan {plan.digest}"
                                    + (f" ({decision.reason})" if decision.reason else "")
                                    + f"; nothing was changed. {info['message']}",
                                ),
                                "checkpoint": name,
                                "approval_info": info,
                            },
                            status_code=400,
                        )
            runs.start(inventory, state_dir, lock, name, identity.name, separation_of_duties)
            started = True
        finally:
            if not started:
                store.release(lock)
        return {
            "checkpoint": name,
            "execution_id": run_id,
            "status": "STARTED",
            "started_at": now(),
            "message": f"run {run_id} started {name}; follow its log at /api/v1/runs/{run_id}/log",
            "run_url": f"/api/v1/runs/{run_id}",
            "log_url": f"/api/v1/runs/{run_id}/log",
        }

    def approve_on_execute(identity: Identity, path: str, plan: Plan) -> None:
        """{"approve": true}: the caller approves PLAN itself, when its role and the rules allow."""
        checkpoint = get(plan.checkpoint)
        if not identity.has("approver"):
            raise refuse(
                identity, path, f"approve: true needs the approver role; the token {identity.name} is {identity.role}"
            )
        if checkpoint.destructive:
            raise refuse(
                identity,
                path,
                f"{checkpoint.name} is destructive: approve: true cannot approve it. An approver reads the plan "
                f"(GET /api/v1/approvals/{checkpoint.name}) and grants it with POST /api/v1/approvals/"
                f"{checkpoint.name} and acknowledge_risks: true"
                + (
                    "; with separation of duties, someone other than whoever starts the run"
                    if separation_of_duties
                    else ""
                ),
                "APPROVAL_NOT_ALLOWED",
            )
        Approvals(db(), separation_of_duties).grant(
            plan, identity.name, "approve: true on execute", source="api", actor=identity.name
        )

    @app.get("/api/v1/plan/{checkpoint_name}", tags=["Checkpoints"], response_model=models.PlanView)
    def get_plan(checkpoint_name: CheckpointName, _: Viewer) -> dict:
        """What the checkpoint would change now, per host (pyinfra's dry run; nothing changes), and the
        digest an approval binds to."""
        plan = plan_of(known_checkpoint(checkpoint_name))
        return {**plan.as_dict(), "text": plan.describe()}

    @app.get("/api/v1/approvals/{checkpoint_name}", tags=["Approvals"], response_model=models.ApprovalInfo)
    def get_approval(checkpoint_name: CheckpointName, _: Viewer) -> dict:
        """Whether the checkpoint needs an approval, its current plan's impact per host, and the valid approvals."""
        name = known_checkpoint(checkpoint_name)
        return approval_info(name, plan_of(name) if get(name).approval_required else None)

    @app.post("/api/v1/approvals/{checkpoint_name}", tags=["Approvals"], response_model=models.ApprovalResponse)
    def grant_approval(
        checkpoint_name: CheckpointName, request: Request, identity: Approver, body: models.ApprovalRequest
    ) -> dict:
        """Approve the checkpoint's current plan as this token's identity (approved_by, if sent, must be it).
        The approval is bound to the plan's digest, used once, and expires (ttl_minutes)."""
        name = known_checkpoint(checkpoint_name)
        checkpoint = get(name)
        if body.approved_by is not None and body.approved_by.strip() != identity.name:
            raise refuse(
                identity,
                request.url.path,
                f"approved_by {body.approved_by!r} is not this token's identity {identity.name!r}: the approver is "
                "whoever holds the token (leave approved_by out, or send your own name)",
                "IDENTITY_MISMATCH",
                claimed=body.approved_by[:200],
            )
        if checkpoint.destructive and separation_of_duties:
            waiting = next(
                (r for r in db().runs(50) if r["status"] == "awaiting-approval" and r["failed_checkpoint"] == name),
                None,
            )
            if waiting and waiting["requested_by"] == identity.name:
                raise refuse(
                    identity,
                    request.url.path,
                    f"{identity.name} requested run {waiting['id']}, which waits for this approval; with separation "
                    "of duties another approver must approve a destructive checkpoint",
                    "SEPARATION_OF_DUTIES",
                    run_id=waiting["id"],
                )
        if not checkpoint.approval_required:
            raise ApiError(400, "APPROVAL_NOT_NEEDED", f"{name} needs no approval; it runs without one")
        plan = plan_of(name)
        try:
            approval = Approvals(db(), separation_of_duties).grant(
                plan,
                identity.name,
                body.reason,
                body.acknowledge_risks,
                ttl=timedelta(minutes=body.ttl_minutes),
                source="api",
                actor=identity.name,
            )
        except ApprovalError as error:
            raise ApiError(400, "APPROVAL_REFUSED", str(error), {"checkpoint": name}) from None
        return {
            "checkpoint": name,
            "approved": True,
            "approved_by": approval["approved_by"],
            "approved_at": approval["created_at"],
            "approval_token": approval["id"],
            "plan_digest": approval["plan_digest"],
            "expires_at": approval["expires_at"],
        }

    @app.post("/api/v1/approvals/{checkpoint_name}/reject", tags=["Approvals"], response_model=models.RejectionResponse)
    def reject_approval(checkpoint_name: CheckpointName, identity: Approver, body: models.RejectionRequest) -> dict:
        """Reject the checkpoint's current plan: every valid approval of it is closed; audited."""
        name = known_checkpoint(checkpoint_name)
        if not get(name).approval_required:
            raise ApiError(400, "APPROVAL_NOT_NEEDED", f"{name} needs no approval; there is nothing to reject")
        plan = plan_of(name)
        try:
            Approvals(db(), separation_of_duties).reject(plan, identity.name, body.reason)
        except ApprovalError as error:
            raise ApiError(400, "INVALID_REQUEST", str(error)) from None
        return {
            "checkpoint": name,
            "rejected": True,
            "rejected_by": identity.name,
            "rejected_at": now(),
            "plan_digest": plan.digest,
        }

    # Runs and audit ------------------------------------------------------------------------------

    @app.get("/api/v1/runs", tags=["Runs"], response_model=list[models.Run])
    def list_runs(_: Viewer, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict]:
        """Past runs, newest first (API and CLI runs alike)."""
        return db().runs(limit)

    def known_run(run_id: str) -> dict:
        found = db().run(run_id)
        if found is None:
            raise ApiError(404, "NOT_FOUND", f"no run {run_id!r}", {"recent": [r["id"] for r in db().runs(5)]})
        return found

    @app.get("/api/v1/runs/{run_id}", tags=["Runs"], response_model=models.RunDetails)
    def get_run(run_id: str, _: Viewer) -> dict:
        """One run with each checkpoint's result."""
        return {**known_run(run_id), "checkpoint_runs": db().checkpoint_runs(run_id)}

    @app.get(
        "/api/v1/runs/{run_id}/log",
        tags=["Runs"],
        response_class=StreamingResponse,
        responses=json_errors("text/event-stream", "The run's log, live"),
    )
    def run_log(
        run_id: str,
        _: Viewer,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """The run's log as server-sent events, live until the run ends: `log` events (id is a byte
        offset: reconnect with Last-Event-ID to resume), then one `end` event with the run's status."""
        known_run(run_id)
        offset = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        return StreamingResponse(
            runs.stream(state_dir, run_id, offset),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/api/v1/audit", tags=["Audit"], response_model=list[models.AuditEvent])
    def audit(_: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
        """The newest audit events (admin only)."""
        return [json.loads(event.as_json()) for event in db().audit.events(limit)]

    # Monitoring ----------------------------------------------------------------------------------

    def monitoring_cluster():
        from validate.inventory import InventoryError, load

        try:
            return load(inventory).cluster
        except InventoryError as error:
            raise ApiError(503, "INVENTORY_UNREADABLE", str(error)) from None

    def upstream(error: UpstreamError) -> ApiError:
        return ApiError(error.status, error.error, str(error))

    @app.get(
        "/api/v1/monitoring/prometheus",
        tags=["Monitoring"],
        response_class=PlainTextResponse,
        responses=json_errors("text/plain", "Metrics in Prometheus' text format"),
    )
    def prometheus_metrics(
        _: Viewer,
        match: Annotated[
            str, Query(max_length=400, description='A series selector, e.g. {job="ray"} or up')
        ] = '{job=~".+"}',
    ) -> PlainTextResponse:
        """The latest samples of the cluster's series, in Prometheus' text format, from the configured
        Prometheus' /federate (never from an address in the request)."""
        from validate.http_checks import prometheus_access

        cluster = monitoring_cluster()
        if not cluster.monitoring[0].settings.prometheus_enabled:
            raise ApiError(404, "NOT_DEPLOYED", "Prometheus is not deployed on this cluster (prometheus_enabled)")
        try:
            return PlainTextResponse(federate(prometheus_access(cluster), match), media_type="text/plain")
        except UpstreamError as error:
            raise upstream(error) from None

    @app.get("/api/v1/monitoring/grafana/dashboards", tags=["Monitoring"], response_model=list[models.Dashboard])
    def dashboards(_: Viewer) -> list[dict]:
        """Grafana's dashboards (the configured Grafana's search API); 404 when Grafana is not deployed."""
        from validate.http_checks import grafana_access
        from validate.runner import SecretReader

        cluster = monitoring_cluster()
        settings = cluster.monitoring[0].settings
        if not settings.grafana_enabled:
            why = settings.monitoring_off_reason or (
                "grafana_enabled is false on the monitoring host; set grafana_enabled: true in its host data "
                "and deploy monitoring-deployment"
            )
            raise ApiError(
                404,
                "NOT_DEPLOYED",
                f"Grafana is not deployed on this cluster: {why}",
                {"provisioned_when_deployed": provisioned_dashboards()},
            )
        try:
            password = SecretReader(cluster)("grafana-admin-password")
        except Exception:
            raise ApiError(
                503, "SECRET_MISSING", "the Grafana admin password is not in the state directory; deploy first"
            ) from None
        try:
            return grafana_dashboards(grafana_access(cluster), password)
        except UpstreamError as error:
            raise upstream(error) from None

    return app


def impact_summary(plan: Plan) -> list[str]:
    """The plan's impact, a line per host: how many operations change, which, and the deploy's notes."""
    lines = [f"{host}: UNREACHABLE, not planned" for host in plan.unreachable]
    for host, entry in plan.summary().items():
        parts = [f"{entry['changes']} change(s)", *entry["operations"], *entry["notes"]]
        lines.append(f"{host}: " + "; ".join(parts))
    return lines or ["no host changes"]


def _level(statuses: list[str]) -> str:
    if not statuses:
        return "UNKNOWN"
    if all(status in ("pass", "not-deployed") for status in statuses):
        return "HEALTHY"
    if any(status == "pass" for status in statuses):
        return "DEGRADED"
    return "FAILED"


def compute_health(inventory: str, store: StateStore) -> dict:
    """ClusterHealth from the HTTP checks (Ray dashboard, Prometheus, Grafana); containers from the last validation."""
    from validate import http_checks
    from validate.inventory import InventoryError, load
    from validate.results import NOT_DEPLOYED
    from validate.runner import SecretReader

    checked_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        cluster = load(inventory).cluster
    except InventoryError as error:
        unknown = {"status": "UNKNOWN"}
        return {
            "overall_status": "UNKNOWN",
            "ray_cluster": {**unknown, "nodes": 0},
            "monitoring": {**unknown, "services": []},
            "containers": {"total": 0, "running": 0},
            "endpoints": {"healthy": 0, "total": 0},
            "checked_at": checked_at,
            "message": str(error),
        }
    secret_of = SecretReader(cluster)
    seen: dict = {}
    ray = http_checks.ray_dashboard(cluster, secret_of, seen)
    monitoring = http_checks.prometheus(cluster) + http_checks.grafana(cluster, secret_of)
    alive = len(seen.get("alive_nodes", []))  # the dashboard's own check says why when it is missing
    services = sorted({r.check.split()[0] for r in monitoring if r.status != NOT_DEPLOYED})
    endpoints = [
        r
        for r in ray + monitoring
        if r.check in ("ray dashboard", "prometheus", "grafana") and r.status != NOT_DEPLOYED
    ]
    ray_level, monitoring_level = _level([r.status for r in ray]), _level([r.status for r in monitoring])
    overall = (
        "HEALTHY"
        if (ray_level, monitoring_level) == ("HEALTHY", "HEALTHY")
        else "FAILED"
        if ray_level == "FAILED"
        else "DEGRADED"
    )
    containers = {"total": 0, "running": 0}
    for run in store.runs(20):
        rows = [r for r in store.operations(run["id"]) if r["operation"].startswith("validate: container ")]
        if rows:
            containers = {
                "total": sum(1 for r in rows if r["result"] != NOT_DEPLOYED),
                "running": sum(1 for r in rows if r["result"] == "pass"),
                "checked_at": run["finished_at"],
            }
            break
    return {
        "overall_status": overall,
        "ray_cluster": {"status": ray_level, "nodes": alive, "expected_nodes": len(cluster.nodes)},
        "monitoring": {"status": monitoring_level, "services": services},
        "containers": containers,
        "endpoints": {"healthy": sum(1 for r in endpoints if r.status == "pass"), "total": len(endpoints)},
        "problems": [f"{r.check}: {r.detail}" for r in ray + monitoring if r.status not in ("pass", NOT_DEPLOYED)],
        "checked_at": checked_at,
    }


def node_facts(loaded, name: str) -> tuple[dict, list[dict]]:
    """(system_info, containers) of host NAME over SSH; empty with an "error" when it cannot be reached."""
    import tempfile

    import testinfra

    from validate.inventory import write_ssh_config

    with tempfile.TemporaryDirectory(prefix="raydeploy-api-") as scratch:
        config = write_ssh_config({name: loaded.ssh[name]}, Path(scratch))
        host = testinfra.get_host(f"ssh://{name}", ssh_config=str(config))
        try:
            facts = host.run(
                'set -e; . /etc/os-release; echo "$PRETTY_NAME"; python3 --version 2>&1; '
                "awk '/MemTotal/ {printf \"%.1f GiB\\n\", $2/1048576}' /proc/meminfo; "
                "df -h --output=avail / | tail -1 | tr -d ' '; nproc; "
                "docker ps -a --format '{{.Names}}\t{{.Status}}\t{{.Image}}' 2>/dev/null || true"
            )
        except RuntimeError as error:
            return {"error": f"cannot reach {name}: {error}"}, []
        finally:
            subprocess.run(["ssh", "-F", str(config), "-O", "exit", name], capture_output=True, check=False)
    if facts.rc != 0:
        return {"error": f"cannot read facts of {name}: {facts.stderr.strip()[:300]}"}, []
    lines = facts.stdout.splitlines()
    system = dict(zip(("os", "python", "memory", "disk_free", "cpu_cores"), lines[:5], strict=False))
    containers = []
    for line in lines[5:]:
        parts = line.split("\t")
        if len(parts) == 3:
            containers.append({"name": parts[0], "status": parts[1], "image": parts[2]})
    return system, containers
