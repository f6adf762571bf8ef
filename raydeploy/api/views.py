"""What the API answers, computed from the state, the plans and the cluster: each checkpoint's status,
an approval's requirements, the cluster's health, the hosts and their facts.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from raydeploy.api.context import Service
from raydeploy.api.errors import ApiError
from raydeploy.approvals import Approvals
from raydeploy.checkpoints import ACTION_NAMES, get, needs_approval, needs_risk_acknowledgement, risky
from raydeploy.plans import Plan
from raydeploy.state import StateStore

HEALTH_CACHE_S = 5.0
RUNS_SEARCHED = 2000  # a filter looks at the newest runs this far back
STATUS_NAMES = {
    "succeeded": "PASSED",
    "failed": "FAILED",
    "running": "IN_PROGRESS",
    "awaiting-approval": "FAILED",
    "interrupted": "FAILED",
    "rejected": "FAILED",
}


def checkpoint_status(store: StateStore, name: str) -> dict:
    """The seed's CheckpointStatus of NAME, per host, from the last run that ran it."""
    checkpoint = get(name)
    last = store.last_result(name)
    nodes: dict[str, dict] = {}
    if last:
        operations = [
            (row["host"], row["result"]) for row in store.operations(last["run_id"]) if row["checkpoint"] == name
        ]
        checks = [
            (row["host"], row["status"]) for row in store.validations(last["run_id"]) if row["checkpoint"] == name
        ]
        for host, result in operations + checks:
            if host == "cluster":  # a cluster-wide check is no node
                continue
            entry = nodes.setdefault(
                host,
                {
                    "status": "IN_PROGRESS" if last["status"] == "running" else "PASSED",
                    "timestamp": last["finished_at"] or last["started_at"],
                    "approval_required": checkpoint.approval_required,
                    "destructive_operation": checkpoint.destructive,
                },
            )
            if result in ("failed", "fail", "unreachable"):
                entry["status"] = "FAILED"
        for host in json.loads(last["failed_hosts"] or "[]"):
            if host != "cluster":
                nodes.setdefault(
                    host,
                    {
                        "timestamp": last["finished_at"] or last["started_at"],
                        "approval_required": checkpoint.approval_required,
                        "destructive_operation": checkpoint.destructive,
                    },
                )["status"] = "FAILED"
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


def plan_answer(served: Service, plan: Plan) -> dict:
    """A PlanView: PLAN as data and in words, and beside it the hosts the state remembers that the inventory
    now contradicts (a plan of the inventory leaves out a deployed host it no longer names)."""
    return {**plan.as_dict(), "text": plan.describe(), "notices": served.notices()}


def approval_path(name: str) -> str:
    """Where an approver grants NAME's approval (an action's carries its arguments in the body)."""
    return f"/api/v1/actions/{name}/approvals" if name in ACTION_NAMES else f"/api/v1/approvals/{name}"


def approval_info(served: Service, name: str, plan: Plan | None) -> dict:
    """The seed's ApprovalInfo of NAME: its flags, the impact of PLAN per host, the valid approvals."""
    checkpoint = get(name)
    listed = Approvals(served.db(), served.separation_of_duties).all(name)
    impact = [] if plan is None else impact_summary(plan)
    risks = needs_risk_acknowledgement(checkpoint, plan)
    if not needs_approval(checkpoint, plan):
        message = f"{name} runs without an approval" + (
            " (a plan that restarts the whole cluster needs one)" if checkpoint.may_disrupt else ""
        )
    elif plan is not None and not plan.has_changes:
        message = f"{name}'s plan changes nothing: it runs without an approval"
    else:
        message = (
            f"{name} needs an approval bound to plan {plan.digest if plan else '?'}: "
            f"POST {approval_path(name)} with a reason"
            + (f" and acknowledge_risks: true ({risky(checkpoint)})" if risks else "")
            + (
                "; with separation of duties, not by whoever starts the run"
                if risks and served.separation_of_duties
                else ""
            )
        )
    return {
        "checkpoint": name,
        "approval_required": needs_approval(checkpoint, plan),
        "destructive_operation": checkpoint.destructive,
        "disruptive": bool(plan and plan.disruptive),
        "approval_file": str(served.state_dir / "approvals" / f"{name}.json"),
        "message": message,
        "impact_summary": impact,
        "plan_digest": plan.digest if plan else None,
        "has_changes": plan.has_changes if plan else None,
        "separation_of_duties": served.separation_of_duties,
        "approvals": [a for a in listed if a["status"] == "valid"],
    }


def cluster_health(served: Service, max_age_s: float = HEALTH_CACHE_S) -> dict:
    """The seed's ClusterHealth from the validate package's HTTP checks, cached for MAX_AGE_S."""
    cache = served.health_cache
    with served.health_lock:  # one refresh at a time; the others wait for it and share it
        if cache["value"] is None or time.time() - cache["at"] >= max_age_s:
            cache.update(value=compute_health(served.inventory, served.db()), at=time.time())
            return {**cache["value"], "age_s": 0.0}
        # A cached answer is never 0 s old, however soon after the checks it is asked for.
        return {**cache["value"], "age_s": max(round(time.time() - cache["at"], 3), 0.001)}


def node_infos(served: Service) -> tuple[list[dict], object]:
    """The inventory's hosts with the Ray head's view of each (ONLINE/OFFLINE/UNKNOWN), and the inventory."""
    from deploys.components import expected_containers
    from raydeploy.node_groups import offers
    from validate import http_checks
    from validate.runner import SecretReader

    loaded = served.loaded()
    cluster = loaded.cluster
    try:
        alive = http_checks.alive_nodes(cluster, http_checks.ray_headers(cluster, SecretReader(cluster)))
        known = True
    except Exception:  # the head does not answer: nobody's state is known
        alive, known = {}, False
    infos = []
    for node in cluster.hosts:
        if node.role == "monitoring" or not known:
            status = "UNKNOWN"
        else:
            status = "ONLINE" if node.settings.cluster_address in alive else "OFFLINE"
        resources = alive.get(node.settings.cluster_address, {}).get("resources", {})
        infos.append(
            {
                "name": node.name,
                "ip": node.settings.cluster_address,
                "role": node.role,
                "group": node.group,
                "status": status,
                "containers": sorted(expected_containers(node, cluster)),
                "cpus": resources.get("CPU"),
                "gpus": resources.get("GPU"),
                "memory_gib": round(resources["memory"] / 2**30, 1) if "memory" in resources else None,
                "resources": {key: value for key, value in resources.items() if not key.startswith("node:")},
                "offers": offers(node),
            }
        )
    return infos, loaded


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
        rows = [r for r in store.validations(run["id"]) if r["check_name"].startswith("container ")]
        if rows:
            containers = {
                "total": sum(1 for r in rows if r["status"] != NOT_DEPLOYED),
                "running": sum(1 for r in rows if r["status"] == "pass"),
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
    """(system_info, containers) of host NAME over SSH; 503 NODE_UNREACHABLE naming it when they cannot be read.

    Read with the deploys' own facts (validate/probes.py), so the API shows what they see.
    """
    import tempfile

    import testinfra

    from validate.inventory import write_ssh_config

    with tempfile.TemporaryDirectory(prefix="raydeploy-api-") as scratch:
        config = write_ssh_config({name: loaded.ssh[name]}, Path(scratch))
        host = testinfra.get_host(f"ssh://{name}", ssh_config=str(config))
        try:
            return _system_info(host, name), _containers(host)
        except RuntimeError as error:
            # testinfra raises with the failed command's result: its stderr says why (ssh's words), not its repr
            result = error.args[0] if error.args else None
            raise unreachable(name, getattr(result, "stderr", None) or str(error)) from None
        finally:
            subprocess.run(["ssh", "-F", str(config), "-O", "exit", name], capture_output=True, check=False)


def unreachable(name: str, why: str) -> ApiError:
    why = " ".join(why.split())[:500]
    return ApiError(503, "NODE_UNREACHABLE", f"the facts of {name} cannot be read: {why}", {"node": name})


def _system_info(host, name: str) -> dict:
    from pyinfra.facts.server import Command, OsRelease

    from facts.resources import HostResources
    from validate.probes import read_fact

    resources = read_fact(host, HostResources, path="/")
    if not resources:
        raise unreachable(name, "its resources (memory, disk, CPUs) did not answer")
    return {
        "os": (read_fact(host, OsRelease) or {}).get("pretty_name") or "unknown",
        "python": read_fact(host, Command, command="python3 --version 2>&1") or "unknown",
        "memory": f"{resources['memory_mb'] / 1024:.1f} GiB",
        "disk_free": f"{resources['disk_free_gb']} GiB",
        "cpu_cores": str(resources["cpus"]),
    }


def _containers(host) -> list[dict]:
    from facts.containers import Containers
    from validate.probes import read_fact

    found = read_fact(host, Containers)
    return [
        {
            "name": name,
            "status": found[name]["status"] + (f" ({health})" if (health := found[name]["health"]) else ""),
            "image": found[name]["image"],
        }
        for name in sorted(found)
    ]


def filtered_runs(
    store: StateStore,
    limit: int,
    status: str | None = None,
    checkpoint: str | None = None,
    requested_by: str | None = None,
    since: str | None = None,
) -> list[dict]:
    """The newest LIMIT runs with STATUS, of CHECKPOINT, started by REQUESTED_BY, on or after day SINCE."""
    wanted = []
    for run in store.runs(RUNS_SEARCHED):
        if status and run["status"] != status:
            continue
        if checkpoint and checkpoint not in json.loads(run["checkpoints"] or "[]"):
            continue
        if requested_by and run["requested_by"] != requested_by:
            continue
        if since and run["started_at"][:10] < since:
            continue
        wanted.append(run)
        if len(wanted) == limit:
            break
    return wanted


def run_results(store: StateStore, run_id: str) -> dict:
    """Run RUN_ID's results: per checkpoint, per host per operation, per host per check, and the approvals used."""
    used = [
        {key: approval[key] for key in ("id", "checkpoint", "approved_by", "reason", "plan_digest", "created_at")}
        for approval in store.approvals()
        if approval["used_by_run"] == run_id
    ]
    return {
        "checkpoint_runs": store.checkpoint_runs(run_id),
        "operations": store.operations(run_id),
        "validations": store.validations(run_id),
        "approvals_used": used,
    }


def searched_events(store: StateStore, limit: int, text: str | None = None) -> list[dict]:
    """The newest LIMIT audit events, or the newest LIMIT whose JSON holds TEXT (any case)."""
    events = [json.loads(event.as_json()) for event in store.audit.events(None if text else limit)]
    if text:
        needle = text.lower()
        events = [event for event in events if needle in json.dumps(event, ensure_ascii=False).lower()][-limit:]
    return events
