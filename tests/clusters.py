"""Clusters built from host data without an inventory, for tests of pure rendering."""

from __future__ import annotations

from deploys.settings import settings_from_data
from deploys.topology import Cluster, Node


def make_cluster(workers: int = 2, monitoring: str | None = None, **data) -> Cluster:
    """A head (10.0.0.1) and WORKERS workers (10.0.0.2...) sharing DATA; MONITORING names a separate host."""
    head = Node("head", "head", settings_from_data("head", {"cluster_address": "10.0.0.1", **data}))
    members = tuple(
        Node(f"worker-{number}", "worker", settings_from_data("w", {"cluster_address": f"10.0.0.{number + 1}", **data}))
        for number in range(1, workers + 1)
    )
    if monitoring is None:
        return Cluster(head=head, workers=members, monitoring=(head,))
    extra = Node(monitoring, "monitoring", settings_from_data(monitoring, {"cluster_address": "10.0.0.100", **data}))
    return Cluster(head=head, workers=members, monitoring=(extra,), monitoring_only=(extra,))
