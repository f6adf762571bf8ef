"""Which of our containers belong on which node: one place, read by the deploys and the cleanup."""

from __future__ import annotations

from deploys.topology import Cluster, Node

RAY_HEAD, RAY_WORKER, RAY_REDIS = "ray-head", "ray-worker", "ray-redis"
RAY_COMPONENTS = (RAY_HEAD, RAY_WORKER, RAY_REDIS)
# The monitoring stack's containers (names as the product this replaces gave them; ours carry labels).
NODE_EXPORTER, CADVISOR, PROMETHEUS, GRAFANA = "node-exporter", "cadvisor", "prometheus", "grafana"
ALERTMANAGER = "alertmanager"
NODE_COMPONENTS = (NODE_EXPORTER, CADVISOR)  # on every host
DCGM_EXPORTER = "dcgm-exporter"
GPU_COMPONENTS = (DCGM_EXPORTER,)  # on every gpu: nvidia host
MONITORING_HOST_COMPONENTS = (PROMETHEUS, GRAFANA, ALERTMANAGER)  # on the monitoring host
MONITORING_COMPONENTS = NODE_COMPONENTS + GPU_COMPONENTS + MONITORING_HOST_COMPONENTS


def wanted_ray_components(node: Node) -> set[str]:
    """The Ray containers NODE should run, named by component (also their container names)."""
    if node.role == "head":
        return {RAY_HEAD} | ({RAY_REDIS} if node.settings.redis_enabled else set())
    if node.role == "worker":
        return {RAY_WORKER}
    return set()


def is_monitoring_host(node: Node, cluster: Cluster) -> bool:
    return node.name == cluster.monitoring[0].name


def monitoring_components(node: Node, cluster: Cluster) -> dict[str, bool]:
    """Each monitoring component that belongs on NODE, and whether the inventory turns it on."""
    settings = node.settings
    components = {NODE_EXPORTER: settings.node_exporter_enabled, CADVISOR: settings.cadvisor_enabled}
    if settings.gpu == "nvidia":
        components[DCGM_EXPORTER] = settings.dcgm_exporter_enabled
    if is_monitoring_host(node, cluster):
        components |= {
            PROMETHEUS: settings.prometheus_enabled,
            GRAFANA: settings.grafana_enabled,
            ALERTMANAGER: settings.alertmanager_enabled,
        }
    return components


def expected_containers(node: Node, cluster: Cluster) -> set[str]:
    """Every container NODE should run after a full deploy."""
    enabled = {name for name, on in monitoring_components(node, cluster).items() if on}
    return wanted_ray_components(node) | enabled
