"""The FastAPI application: the seed's contract (/api/v1/...), bearer tokens with roles, errors in one shape.

Every error is the seed's `Error` object {error, message, timestamp, details}, never a traceback.
Failed authentication and refused authorisation are audit events (without the token). Request
bodies are capped; each token has a request rate limit.
"""

import json
import subprocess
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
HEALTH_CACHE_S = 5.0
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

    health_cache: dict = {"at": 0.0, "value": None}

    def cluster_health(max_age_s: float = HEALTH_CACHE_S) -> dict:
        """The seed's ClusterHealth from the validate package's HTTP checks, cached for MAX_AGE_S."""
        now = time.time()
        if health_cache["value"] is not None and now - health_cache["at"] < max_age_s:
            return {**health_cache["value"], "age_s": round(now - health_cache["at"], 2)}
        value = compute_health(inventory, store)
        health_cache.update(at=now, value=value)
        return {**value, "age_s": 0.0}

    @app.get("/api/v1/cluster/health", tags=["Cluster Status"])
    def get_cluster_health(_: Viewer) -> dict:
        """Health of the Ray cluster and the monitoring stack (answers up to 5 s old; see checked_at, age_s)."""
        return cluster_health()

    @app.get("/api/v1/cluster/status", tags=["Cluster Status"])
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
        last = store.last_run()
        return {
            "deployment_status": deployment,
            "completed_checkpoints": completed,
            "total_checkpoints": len(NAMES),
            "checkpoint_details": details,
            "cluster_health": cluster_health(),
            "last_updated": (last or {}).get("finished_at") or (last or {}).get("started_at"),
        }

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

    @app.get("/api/v1/nodes", tags=["Nodes"])
    def list_nodes(_: Viewer) -> list[dict]:
        """The inventory's hosts; ONLINE/OFFLINE is the Ray head's view of each node."""
        return node_infos()[0]

    @app.get("/api/v1/nodes/{node_name}", tags=["Nodes"])
    def get_node(node_name: str, _: Viewer) -> dict:
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
    ray = http_checks.ray_dashboard(cluster, secret_of)
    monitoring = http_checks.prometheus(cluster) + http_checks.grafana(cluster, secret_of)
    alive = 0
    try:
        alive = len(http_checks.alive_nodes(cluster, http_checks.ray_headers(cluster, secret_of)))
    except Exception:  # the dashboard's own check already says why
        alive = 0
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
