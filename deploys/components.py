"""Which of our containers belong on which node: one place, read by the deploys and the cleanup."""

from __future__ import annotations

from deploys.topology import Cluster, Node

RAY_HEAD, RAY_WORKER, RAY_REDIS = "ray-head", "ray-worker", "ray-redis"
RAY_COMPONENTS = (RAY_HEAD, RAY_WORKER, RAY_REDIS)


def wanted_ray_components(node: Node) -> set[str]:
    """The Ray containers NODE should run, named by component (also their container names)."""
    if node.role == "head":
        return {RAY_HEAD} | ({RAY_REDIS} if node.settings.redis_enabled else set())
    return {RAY_WORKER}


def expected_containers(node: Node, cluster: Cluster) -> set[str]:
    """Every container NODE should run after a full deploy."""
    return wanted_ray_components(node)
