"""The cluster as a whole: its health (cached a few seconds) and its deployment progress."""

from __future__ import annotations

from fastapi import APIRouter

from raydeploy.api import models
from raydeploy.api.context import Served, Viewer
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
    }


@router.get("/diagnose", response_model=list[models.NodeFinding])
def diagnose_nodes(served: Served, _: Viewer) -> list[dict]:
    """Why each Ray node is or is not in the cluster: the likely cause and the fix, from each node's own
    host (its container, raylet, versions, the head's GCS port from there, the address it advertises),
    as `raydeploy diagnose` says it. A host that cannot be reached is a finding of its own."""
    from raydeploy.diagnose import diagnose

    return [finding.as_dict() for finding in diagnose(served.loaded())]
