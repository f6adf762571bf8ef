"""Every container a node should run, with its full spec, as the deploys would run it now.

Validation compares each running container's spec label with these digests: a container that
differs from what the inventory says (drift, or a deploy not yet run) is named. SECRET_OF gives a
secret by name from the state directory (validation reads, it never generates).
"""

from __future__ import annotations

from deploys.alertmanager import alertmanager_spec
from deploys.components import (
    ALERTMANAGER,
    CADVISOR,
    DCGM_EXPORTER,
    GRAFANA,
    NODE_EXPORTER,
    PROMETHEUS,
    RAY_HEAD,
    RAY_REDIS,
    RAY_WORKER,
    monitoring_components,
)
from deploys.containers import ContainerSpec
from deploys.host_secrets import SecretOf, grafana_password_file
from deploys.monitoring import cadvisor_spec, dcgm_exporter_spec, grafana_spec, node_exporter_spec, prometheus_spec
from deploys.monitoring_config import alertmanager_url, grafana_dashboard_providers, grafana_datasources
from deploys.ray_cluster import head_spec, ray_secret_files, redis_spec, worker_spec
from deploys.topology import Cluster, Node


def container_specs(
    node: Node, cluster: Cluster, secret_of: SecretOf, gpus_found: int | None = None
) -> dict[str, ContainerSpec]:
    """Container name -> spec for every container NODE runs after a full deploy (GPUS_FOUND: how many GPUs
    nvidia-smi lists on a GPU host, which sets Ray's --num-gpus unless a setting does)."""
    settings = node.settings
    specs: dict[str, ContainerSpec] = {}
    if node.role in ("head", "worker"):
        secrets = ray_secret_files(node, secret_of)
        if secrets.get("redis-conf"):
            specs[RAY_REDIS] = redis_spec(settings, secrets["redis-conf"])
        if node.role == "head":
            specs[RAY_HEAD] = head_spec(node, cluster, secrets["token"], secrets.get("redis-password"), gpus_found)
        else:
            specs[RAY_WORKER] = worker_spec(node, cluster.head, secrets["token"], gpus_found)
    components = monitoring_components(node, cluster)
    if components.get(NODE_EXPORTER):
        specs[NODE_EXPORTER] = node_exporter_spec(settings)
    if components.get(CADVISOR):
        specs[CADVISOR] = cadvisor_spec(settings)
    if components.get(DCGM_EXPORTER):
        specs[DCGM_EXPORTER] = dcgm_exporter_spec(settings)
    if components.get(PROMETHEUS):
        specs[PROMETHEUS] = prometheus_spec(settings)
    if components.get(GRAFANA):
        provisioning = grafana_datasources(cluster) + grafana_dashboard_providers(cluster)
        specs[GRAFANA] = grafana_spec(node, cluster, grafana_password_file(settings, secret_of), provisioning)
    if components.get(ALERTMANAGER):
        specs[ALERTMANAGER] = alertmanager_spec(settings, alertmanager_url(cluster))
    return specs
