"""Every container a node should run, with its full spec, as the deploys would run it now.

Validation compares each running container's spec label with these digests: a container that
differs from what the inventory says (drift, or a deploy not yet run) is named. SECRET_OF gives a
secret by name from the state directory (validation reads, it never generates).
"""

from __future__ import annotations

from collections.abc import Callable

from deploys.components import (
    CADVISOR,
    GRAFANA,
    NODE_EXPORTER,
    PROMETHEUS,
    RAY_HEAD,
    RAY_REDIS,
    RAY_WORKER,
    monitoring_components,
)
from deploys.containers import ContainerSpec
from deploys.monitoring import cadvisor_spec, grafana_spec, node_exporter_spec, prometheus_spec
from deploys.monitoring_config import grafana_dashboard_providers, grafana_datasources
from deploys.ray_cluster import head_spec, redis_conf_text, redis_spec, worker_spec
from deploys.secret_files import env_file_text
from deploys.topology import Cluster, Node


def container_specs(node: Node, cluster: Cluster, secret_of: Callable[[str], str]) -> dict[str, ContainerSpec]:
    """Container name -> spec for every container NODE runs after a full deploy."""
    settings = node.settings
    specs: dict[str, ContainerSpec] = {}
    token = {"RAY_AUTH_TOKEN": secret_of("ray-auth-token")} if settings.ray_auth_mode == "token" else {}
    if node.role == "head":
        environment = dict(token)
        if settings.redis_enabled:
            password = secret_of("redis-password")
            environment["REDIS_PASSWORD"] = password
            redis_env = env_file_text({"REDISCLI_AUTH": password})
            specs[RAY_REDIS] = redis_spec(settings, redis_conf_text(settings, password), redis_env)
        specs[RAY_HEAD] = head_spec(node, cluster, env_file_text(environment))
    elif node.role == "worker":
        specs[RAY_WORKER] = worker_spec(node, cluster.head, env_file_text(token))
    components = monitoring_components(node, cluster)
    if components.get(NODE_EXPORTER):
        specs[NODE_EXPORTER] = node_exporter_spec(settings)
    if components.get(CADVISOR):
        specs[CADVISOR] = cadvisor_spec(settings)
    if components.get(PROMETHEUS):
        specs[PROMETHEUS] = prometheus_spec(settings)
    if components.get(GRAFANA):
        env_text = env_file_text({"GF_SECURITY_ADMIN_PASSWORD": secret_of("grafana-admin-password")})
        provisioning = grafana_datasources(cluster) + grafana_dashboard_providers(cluster)
        specs[GRAFANA] = grafana_spec(node, cluster, env_text, provisioning)
    return specs
