"""monitoring-deployment: Prometheus, Grafana, node-exporter and cAdvisor (the monitoring issue).

This release does not deploy the monitoring stack yet; the checkpoint runs, changes nothing and
says so, and the head's /tmp/ray is already a host directory for Prometheus and Grafana to read.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy

from deploys.topology import Cluster, Node


@deploy("Monitoring stack")
def monitoring_stack(node: Node, cluster: Cluster) -> None:
    """Nothing yet: reports that the monitoring stack is not part of this release.

    + node: the node being deployed
    + cluster: the whole cluster
    """
    host.log("monitoring-deployment: not deployed, the monitoring stack is not part of this release", logger.warning)
