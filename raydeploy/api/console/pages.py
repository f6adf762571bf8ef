"""The console's pages: each one reads through the API's own route and view functions, as the visitor.

A page that cannot read one part (the cluster does not answer, Prometheus is off) still shows the
others, with that part's problem in words. Live parts: /live/dashboard (polled by static/console.js)
and a run's log (server-sent events through the API's own stream, authenticated by the session).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse

from raydeploy.api.console.access import ConsoleRoute, SignedIn, allowed
from raydeploy.api.console.rendering import page
from raydeploy.api.context import Served, Service
from raydeploy.api.errors import ApiError
from raydeploy.api.routes import cluster as cluster_routes
from raydeploy.api.routes import monitoring as monitoring_routes
from raydeploy.api.routes import nodes as node_routes
from raydeploy.api.routes import runs as run_routes
from raydeploy.api.routes.runs import DAY, EVENT_ID
from raydeploy.api.views import checkpoint_status, cluster_health, node_infos
from raydeploy.approvals import Approvals
from raydeploy.checkpoints import ACTION_NAMES, NAMES, get

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
LOG_TAIL_BYTES = 256 * 1024  # of a run's log, rendered into its page; the live stream goes on from there
# The dashboard polls every 3 s (static/console.js) and takes health at most this old: a change shows within
# POLL + HEALTH_MAX_AGE_S + the checks' own time (the API's answers may be up to 5 s old).
HEALTH_MAX_AGE_S = 2.0
RUN_STATUSES = ("running", "succeeded", "failed", "awaiting-approval", "interrupted", "rejected")


def attempt(read: Callable[[], Any]) -> tuple[Any, str | None]:
    """(READ(), None), or (None, what went wrong in words) when the API would have answered an error."""
    try:
        return read(), None
    except ApiError as error:
        return None, error.message


def dashboard_links(served: Service) -> dict[str, str]:
    """Where the Ray dashboard, Prometheus, Grafana and Alertmanager answer, as the inventory says (deployed ones
    only)."""
    from validate.http_checks import alertmanager_access, dashboard_url, grafana_access, prometheus_access

    cluster = served.loaded().cluster
    settings = cluster.monitoring[0].settings
    links = {"Ray dashboard": dashboard_url(cluster)}
    if settings.prometheus_enabled:
        links["Prometheus"] = prometheus_access(cluster)
    if settings.grafana_enabled:
        links["Grafana"] = grafana_access(cluster)
    if settings.alertmanager_enabled:
        links["Alertmanager (silences)"] = alertmanager_access(cluster)
    return links


def would_do(served: Service, name: str) -> str:
    """What NAME would do now, from its newest plan made by this server (no dry run here), in a few words."""
    if name not in served.latest_plans:
        return ""
    at, plan = served.latest_plans[name]
    age = max(0, round(time.time() - at))
    when = f"{age // 60} min ago" if age >= 60 else f"{age} s ago"
    if not plan.has_changes:
        return f"nothing to change (planned {when})"
    changes = ", ".join(f"{host}: {len(operations)}" for host, operations in sorted(plan.changes.items()))
    return f"changes on {changes} (planned {when}, plan {plan.digest})"


def dashboard_view(request: Request, served: Service, visitor) -> dict:
    """Everything the dashboard shows, each part read as the API reads it."""
    store = served.db()
    lock = store.current_lock()
    health, health_problem = attempt(lambda: cluster_health(served, HEALTH_MAX_AGE_S))
    nodes, nodes_problem = attempt(lambda: node_infos(served)[0])
    links, links_problem = attempt(lambda: dashboard_links(served))
    alerts, alerts_problem = attempt(lambda: monitoring_routes.prometheus_alerts(served, visitor.identity))
    return {
        "health": health,
        "health_problem": health_problem,
        "nodes": nodes or [],
        "nodes_problem": nodes_problem,
        "checkpoints": [(get(name), checkpoint_status(store, name), would_do(served, name)) for name in NAMES],
        "open_approvals": [a for a in Approvals(store, served.separation_of_duties).all() if a["status"] == "valid"],
        "running": store.run(lock.run_id) if lock else None,
        "links": links or {},
        "links_problem": links_problem,
        "alerts": alerts or [],
        "alerts_problem": alerts_problem,
    }


@router.get("/")
def dashboard(request: Request, served: Served, visitor: SignedIn) -> HTMLResponse:
    """Cluster health, nodes, checkpoints, open approvals, the run in progress, links, alerts; it updates itself."""
    return page(request, "dashboard.html", visitor, **dashboard_view(request, served, visitor))


@router.get("/live/dashboard")
def dashboard_live(request: Request, served: Served, visitor: SignedIn) -> HTMLResponse:
    """The dashboard's live part alone, for static/console.js to swap in."""
    return page(request, "dashboard_live.html", visitor, **dashboard_view(request, served, visitor))


@router.get("/runs")
def runs_page(
    request: Request,
    served: Served,
    visitor: SignedIn,
    status: Annotated[str, Query(max_length=40)] = "",
    checkpoint: Annotated[str, Query(max_length=80)] = "",
    who: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(pattern=f"{DAY}|^$")] = "",
) -> HTMLResponse:
    """Runs, newest first, filtered by status, checkpoint, who started them and day."""
    found = run_routes.list_runs(
        served, visitor.identity, 200, status or None, checkpoint or None, who or None, since or None
    )
    filters = {"status": status, "checkpoint": checkpoint, "who": who, "since": since}
    return page(
        request, "runs.html", visitor, runs=found, filters=filters, statuses=RUN_STATUSES, names=NAMES + ACTION_NAMES
    )


def log_tail(served: Service, run_id: str) -> tuple[str, int]:
    """The last LOG_TAIL_BYTES of the run's log in whole lines, and the byte offset after them."""
    path = served.db().log_path(run_id)
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(0, size - LOG_TAIL_BYTES)
            handle.seek(start)
            data = handle.read(size - start)
    except FileNotFoundError:
        return "", 0
    if start:  # begin at a whole line
        cut = data.find(b"\n") + 1
        data, start = data[cut:], start + cut
    end = data.rfind(b"\n") + 1  # a line still being written is left to the live stream
    return data[:end].decode("utf-8", errors="replace"), start + end


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, served: Served, visitor: SignedIn) -> HTMLResponse:
    """One run: who started it, its checkpoints, each host's results, the approvals it used, its log (live)."""
    run = run_routes.get_run(run_id, served, visitor.identity)
    text, offset = log_tail(served, run_id)
    hosts: dict[str, list[dict]] = {}
    for row in run["operations"]:
        hosts.setdefault(row["host"], []).append(row)
    return page(request, "run.html", visitor, run=run, hosts=hosts, log_text=text, log_offset=offset)


@router.get("/runs/{run_id}/log")
def run_log(
    request: Request,
    run_id: str,
    served: Served,
    visitor: SignedIn,
    after: Annotated[str | None, Query(pattern=EVENT_ID)] = None,
    last_event_id: Annotated[str | None, Header(pattern=EVENT_ID)] = None,
):
    """The run's log as the API streams it (GET /api/v1/runs/{id}/log), from AFTER or the Last-Event-ID the
    browser's EventSource sends when it reconnects; the session authenticates it."""
    return run_routes.run_log(run_id, served, visitor.identity, last_event_id or after)


@router.get("/audit")
def audit_page(
    request: Request, served: Served, visitor: SignedIn, q: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    """The audit trail (admins only): search, and the verification of its hash chain."""
    allowed("admin", request, served, visitor)
    events = run_routes.audit(served, visitor.identity, 500, q or None)
    verification = run_routes.verify_audit(served, visitor.identity)
    return page(request, "audit.html", visitor, events=list(reversed(events)), q=q, verification=verification)


def node_info(served: Service, name: str) -> dict:
    """The inventory's NAME with Ray's view of it; 404 naming the nodes there are."""
    infos, _loaded = node_infos(served)
    info = next((item for item in infos if item["name"] == name), None)
    if info is None:
        raise ApiError(404, "NOT_FOUND", f"no node {name[:80]!r}; the nodes are {', '.join(i['name'] for i in infos)}")
    return info


def node_facts(served: Service, visitor, name: str) -> dict:
    """NAME's host facts, containers and checkpoints, read over SSH (GET /api/v1/nodes/NAME), or why not."""
    details, problem = attempt(lambda: node_routes.get_node(name, served, visitor.identity))
    return {"details": details, "facts_problem": problem, "behind": None}


@router.get("/nodes/{name}")
def node_page(
    request: Request,
    name: str,
    served: Served,
    visitor: SignedIn,
    diagnose: Annotated[bool, Query()] = False,
    wait: Annotated[bool, Query()] = False,
) -> HTMLResponse:
    """One node: Ray's view, its day-2 actions, and its host facts and containers, read over SSH behind the page
    (/live/nodes/NAME; WAIT reads them in the request); with DIAGNOSE, why it is or is not in the cluster
    (GET /api/v1/cluster/diagnose, this node's finding)."""
    info = node_info(served, name)
    facts = node_facts(served, visitor, name) if wait else {"behind": f"/live/nodes/{name}"}
    findings = cluster_routes.diagnose_nodes(served, visitor.identity) if diagnose else []
    finding = next((item for item in findings if item["host"] == name), None)
    return page(request, "node.html", visitor, info=info, finding=finding, **facts)


@router.get("/live/nodes/{name}")
def node_live(request: Request, name: str, served: Served, visitor: SignedIn) -> HTMLResponse:
    """NAME's host facts and containers, read now, for static/console.js to swap in."""
    return page(request, "node_live.html", visitor, info=node_info(served, name), **node_facts(served, visitor, name))
