"""Each Ray node's group and what its settings offer Ray, from the inventory alone (no host contacted):
one view behind `raydeploy plan`, `raydeploy status`, the API's nodes and the console's node tables."""

from __future__ import annotations

import json
from typing import Any

from deploys.topology import Cluster, Node


def offers(node: Node) -> dict[str, Any]:
    """What NODE's settings give Ray: None where Ray decides (cpus: all it sees; gpus on a GPU host
    without a count: every GPU nvidia-smi lists there)."""
    from deploys.gpus import offered_gpus  # pyinfra's operations: loaded only when a node is shown

    settings = node.settings
    return {
        "cpus": settings.ray_num_cpus,
        "gpus": offered_gpus(settings, None) if settings.gpu == "nvidia" else settings.ray_num_gpus or 0,
        "gpu": settings.gpu,
        "memory_mb": settings.ray_memory_mb,
        "resources": dict(settings.ray_resources),
        "labels": dict(settings.ray_labels),
        "image": settings.ray_image,
    }


def node_groups(cluster: Cluster) -> list[dict[str, Any]]:
    """Per Ray node (head first): its name, role, group and what it offers Ray."""
    return [{"name": node.name, "role": node.role, "group": node.group, **offers(node)} for node in cluster.nodes]


def describe(row: dict[str, Any]) -> str:
    """One node's line: "worker-2  group gpu  cpus all, gpus 2 (nvidia), resources {"big": 4.0}, image ..."."""
    cpus = "all" if row["cpus"] is None else row["cpus"]
    gpus = "every one nvidia-smi lists" if row["gpus"] is None else row["gpus"]
    parts = [f"cpus {cpus}", f"gpus {gpus}" + (f" ({row['gpu']})" if row["gpu"] != "none" else "")]
    if row["memory_mb"] is not None:
        parts.append(f"memory {row['memory_mb']} MiB")
    for key in ("resources", "labels"):
        if row[key]:
            parts.append(f"{key} {json.dumps(row[key], sort_keys=True)}")
    parts.append(f"image {row['image']}")
    return f"{row['name']:<12} group {row['group']:<10} " + ", ".join(parts)
