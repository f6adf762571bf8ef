"""The inventory's hosts: Ray's view of each, and one host's facts and containers read over SSH."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParameter

from raydeploy.api import models
from raydeploy.api.context import Served, Viewer
from raydeploy.api.errors import ApiError
from raydeploy.api.views import checkpoint_status, node_facts, node_infos
from raydeploy.checkpoints import NAMES

router = APIRouter(prefix="/api/v1/nodes", tags=["Nodes"])
NodeName = Annotated[str, PathParameter(description="A host's name in the inventory", examples=["head"])]


@router.get("", response_model=list[models.NodeInfo])
def list_nodes(served: Served, _: Viewer) -> list[dict]:
    """The Ray cluster's nodes (head and workers); ONLINE/OFFLINE is the Ray head's view of each. A host
    only in the monitoring group is no Ray node (the seed's roles are head and worker): GET /nodes/{name}."""
    return [info for info in node_infos(served)[0] if info["role"] != "monitoring"]


@router.get("/{node_name}", response_model=models.NodeDetails)
def get_node(node_name: NodeName, served: Served, _: Viewer) -> dict:
    """One host, with its system facts and containers read over SSH; 404 lists the valid names, 503
    NODE_UNREACHABLE names the host whose facts cannot be read."""
    infos, loaded = node_infos(served)
    info = next((item for item in infos if item["name"] == node_name), None)
    if info is None:
        raise ApiError(
            404, "NOT_FOUND", f"unknown node {node_name[:80]!r}", {"valid": [item["name"] for item in infos]}
        )
    details = {**info, "system_info": {}, "containers": [], "checkpoints": []}
    details["system_info"], details["containers"] = node_facts(loaded, node_name)
    store = served.db()
    for name in NAMES:
        status = checkpoint_status(store, name)["nodes"].get(node_name)
        if status:
            details["checkpoints"].append({"checkpoint": name, **status})
    return details
