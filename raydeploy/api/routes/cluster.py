"""The cluster as a whole: its health (cached a few seconds) and its deployment progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from raydeploy.api import models
from raydeploy.api.context import Served, Viewer
from raydeploy.api.errors import ApiError
from raydeploy.api.views import checkpoint_status, cluster_health
from raydeploy.checkpoints import NAMES

router = APIRouter(prefix="/api/v1/cluster", tags=["Cluster Status"])


@router.get("/health", response_model=models.ClusterHealth)
def get_cluster_health(served: Served, _: Viewer) -> dict:
    """Health of the Ray cluster and the monitoring stack (answers up to 5 s old; see checked_at, age_s)."""
    return cluster_health(served)


@router.get("/status", response_model=models.ClusterStatus)
def get_cluster_status(served: Served, _: Viewer) -> dict:
    """Deployment progress (the checkpoints' last results) and the cluster's health."""
    store = served.db()
    details = {name: checkpoint_status(store, name) for name in NAMES}
    completed = [name for name, status in details.items() if status["status"] == "PASSED"]
    if any(status["status"] == "IN_PROGRESS" for status in details.values()):
        deployment = "IN_PROGRESS"
    elif len(completed) == len(NAMES):
        deployment = "COMPLETED"
    elif any(status["status"] == "FAILED" for status in details.values()):
        deployment = "FAILED"
    else:
        deployment = "IN_PROGRESS"
    last = store.last_run() or {}
    health = cluster_health(served)
    return {
        "deployment_status": deployment,
        "completed_checkpoints": completed,
        "total_checkpoints": len(NAMES),
        "checkpoint_details": details,
        "cluster_health": health,
        # A string, as the seed says: with no run yet, the newest thing this answer knows is the health.
        "last_updated": last.get("finished_at") or last.get("started_at") or health["checked_at"],
        "notices": served.notices(),
    }


HostNames = Annotated[
    list[str] | None,
    Query(
        alias="host",
        max_length=100,
        description="Only these Ray nodes (inventory names, repeatable); default: every one",
        examples=[["worker-2"]],
    ),
]


@router.get(
    "/diagnose",
    response_model=list[models.NodeFinding],
    responses={400: {"model": models.Error, "description": "INVALID_REQUEST: a host that is no Ray node"}},
)
def diagnose_nodes(served: Served, _: Viewer, hosts: HostNames = None) -> list[dict]:
    """Why each Ray node (or each `host` asked about) is or is not in the cluster: the likely cause and the
    fix, from each node's own host (its container, raylet, versions, the head's GCS port from there, the
    address it advertises), as `raydeploy diagnose [HOST]...` says it. A host that cannot be reached is a
    finding of its own; a name that is no Ray node is 400, listing the ones there are (nothing is asked)."""
    from raydeploy.diagnose import diagnose
    from raydeploy.host_names import UnknownHosts

    try:
        return [finding.as_dict() for finding in diagnose(served.loaded(), hosts)]
    except UnknownHosts as problem:
        details = {"unknown": problem.unknown, "known": problem.known}
        raise ApiError(400, "INVALID_REQUEST", str(problem), details) from None
