"""HTTP checks from this machine: the Ray dashboard, Prometheus, Grafana and Alertmanager, as the inventory
expects them.

URLs: `dashboard_access_url`, `prometheus_access_url`, `grafana_access_url`, `alertmanager_access_url` when the inventory
sets them (the lab publishes its head on 127.0.0.1), else http://<cluster_address>:<port>.
Answers are untrusted input: anything unexpected is a failure with what was seen, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from deploys.topology import Cluster
from facts import ray_answers
from facts.alertmanager_answers import ALERTMANAGERS_PATH, active_alertmanagers, sends_to_port
from facts.prometheus_answers import TARGETS_PATH, describe_down, targets
from facts.ray_answers import NODES_PATH
from validate.results import CLUSTER, NOT_DEPLOYED, Result, failed, passed, verdict

RAY = "ray-deployment"
MONITORING = "monitoring-deployment"
TIMEOUT_S = 5
MIB = 1024 * 1024


def dashboard_url(cluster: Cluster) -> str:
    head = cluster.head.settings
    return (head.dashboard_access_url or f"http://{head.cluster_address}:{head.ray_dashboard_port}").rstrip("/")


def prometheus_access(cluster: Cluster) -> str:
    monitor = cluster.monitoring[0].settings
    return (monitor.prometheus_access_url or f"http://{monitor.cluster_address}:{monitor.prometheus_port}").rstrip("/")


def grafana_access(cluster: Cluster) -> str:
    monitor = cluster.monitoring[0].settings
    return (monitor.grafana_access_url or f"http://{monitor.cluster_address}:{monitor.grafana_port}").rstrip("/")


def alertmanager_access(cluster: Cluster) -> str:
    monitor = cluster.monitoring[0].settings
    return (monitor.alertmanager_access_url or f"http://{monitor.cluster_address}:{monitor.alertmanager_port}").rstrip(
        "/"
    )


def ray_headers(cluster: Cluster, secret_of: Callable[[str], str]) -> dict[str, str]:
    if cluster.head.settings.ray_auth_mode != "token":
        return {}
    return {"Authorization": f"Bearer {secret_of('ray-auth-token')}"}


def _get(url: str, **kwargs) -> requests.Response:
    return requests.get(url, timeout=TIMEOUT_S, **kwargs)


def expected_ray_version(cluster: Cluster) -> str | None:
    """The Ray version in the image tag (rayproject/ray:2.60.0-py311-cpu -> 2.60.0), when it has one."""
    tag = cluster.head.settings.ray_image.rpartition(":")[2]
    version = tag.split("-")[0]
    return version if version[:1].isdigit() else None


def alive_nodes(cluster: Cluster, headers: dict[str, str]) -> dict[str, dict]:
    """The head's alive nodes by IP (each with node_id and resources), asked as the deploys ask them."""
    response = _get(f"{dashboard_url(cluster)}{NODES_PATH}", headers=headers)
    response.raise_for_status()
    nodes = ray_answers.alive_nodes(response.text)
    if nodes is None:
        raise ValueError(f"not an answer of Ray's state API: {response.text[:200]!r}")
    return nodes


def ray_dashboard(cluster: Cluster, secret_of: Callable[[str], str], seen: dict | None = None) -> list[Result]:
    """The dashboard answers with the inventory's Ray version, every node alive, the expected totals.

    SEEN, when given, receives the alive nodes under "alive_nodes" (one request serves both).
    """
    url = dashboard_url(cluster)
    try:
        headers = ray_headers(cluster, secret_of)
    except Exception as error:  # the state directory lacks the token
        return [failed(RAY, "ray dashboard", CLUSTER, f"cannot authenticate: {error}")]
    results = []
    try:
        response = _get(f"{url}/api/version", headers=headers)
        response.raise_for_status()
        version = str(response.json().get("ray_version"))
    except (requests.RequestException, ValueError, AttributeError) as error:
        return [failed(RAY, "ray dashboard", CLUSTER, f"{url}/api/version: {error}")]
    wanted = expected_ray_version(cluster)
    problems = [f"Ray {version}, the inventory's image has {wanted}"] if wanted and version != wanted else []
    results.append(verdict(RAY, "ray dashboard", CLUSTER, problems, f"{url}: Ray {version}"))
    try:
        nodes = alive_nodes(cluster, headers)
    except (requests.RequestException, ValueError, KeyError, TypeError) as error:
        return [*results, failed(RAY, "ray nodes alive", CLUSTER, f"{url}/api/v0/nodes: {error}")]
    if seen is not None:
        seen["alive_nodes"] = nodes
    missing = [
        f"{n.name} ({n.settings.cluster_address}) not alive"
        for n in cluster.nodes
        if n.settings.cluster_address not in nodes
    ]
    expected_addresses = {n.settings.cluster_address for n in cluster.nodes}
    strangers = sorted(set(nodes) - expected_addresses)
    problems = missing + ([f"alive but not in the inventory: {', '.join(strangers)}"] if strangers else [])
    results.append(
        verdict(RAY, "ray nodes alive", CLUSTER, problems, f"{len(cluster.nodes)} of {len(cluster.nodes)} alive")
    )
    totals = {"CPU": 0.0, "memory": 0.0, "object_store_memory": 0.0}
    for node in nodes.values():
        for key in totals:
            totals[key] += node["resources"].get(key, 0.0)
    problems = []
    if cluster.expected_cpus is not None and totals["CPU"] != cluster.expected_cpus:
        problems.append(f"{totals['CPU']:g} CPUs, the inventory expects {cluster.expected_cpus}")
    stores = [n.settings.ray_object_store_memory_mb for n in cluster.nodes]
    if None not in stores and abs(totals["object_store_memory"] / MIB - sum(stores)) > len(stores):
        problems.append(
            f"object store {totals['object_store_memory'] / MIB:.0f} MiB, the inventory expects {sum(stores)} MiB"
        )
    detail = (
        f"{totals['CPU']:g} CPUs, memory {totals['memory'] / MIB / 1024:.1f} GiB, "
        f"object store {totals['object_store_memory'] / MIB:.0f} MiB"
    )
    results.append(verdict(RAY, "ray resources", CLUSTER, problems, detail))
    return results


def _not_deployed(cluster: Cluster, component: str) -> list[Result]:
    """[a not-deployed result] when the monitoring host's inventory turns COMPONENT off, else []."""
    settings = cluster.monitoring[0].settings
    if getattr(settings, f"{component}_enabled"):
        return []
    reason = settings.monitoring_off_reason or f"{component}_enabled is false"
    return [Result(MONITORING, component, CLUSTER, NOT_DEPLOYED, reason)]


def _not_ready(component: str, url: str) -> list[Result]:
    """[a failure] unless URL/-/ready answers 200 (Prometheus and Alertmanager both serve it), else []."""
    try:
        ready = _get(f"{url}/-/ready")
    except requests.RequestException as error:
        return [failed(MONITORING, component, CLUSTER, f"{url}: {error}")]
    if ready.status_code != 200:
        return [failed(MONITORING, component, CLUSTER, f"{url}/-/ready answered {ready.status_code}")]
    return []


def prometheus(cluster: Cluster) -> list[Result]:
    url = prometheus_access(cluster)
    unavailable = _not_deployed(cluster, "prometheus") or _not_ready("prometheus", url)
    if unavailable:
        return unavailable
    try:
        response = _get(f"{url}{TARGETS_PATH}")
        response.raise_for_status()
        found = targets(response.text)
    except (requests.RequestException, ValueError) as error:
        return [failed(MONITORING, "prometheus", CLUSTER, f"{url}: {error}")]
    results = [passed(MONITORING, "prometheus", CLUSTER, f"{url}: ready")]
    down = [describe_down(t) for t in found if t["health"] != "up"]
    results.append(verdict(MONITORING, "prometheus targets up", CLUSTER, down, f"{len(found)} targets up"))
    ray_nodes = {t["node"] for t in found if t["job"] == "ray"}
    missing = [node.name for node in cluster.nodes if node.name not in ray_nodes]
    results.append(
        verdict(
            MONITORING,
            "prometheus scrapes every ray node",
            CLUSTER,
            [f"no Ray target for {', '.join(missing)}"] if missing else [],
            f"{len(cluster.nodes)} Ray nodes",
        )
    )
    return results


def grafana(cluster: Cluster, secret_of: Callable[[str], str]) -> list[Result]:
    off = _not_deployed(cluster, "grafana")
    if off:
        return off
    url = grafana_access(cluster)
    try:
        health = _get(f"{url}/api/health")
        health.raise_for_status()
        database = health.json().get("database")
    except (requests.RequestException, ValueError, AttributeError) as error:
        return [failed(MONITORING, "grafana", CLUSTER, f"{url}/api/health: {error}")]
    results = [
        verdict(MONITORING, "grafana", CLUSTER, [] if database == "ok" else [f"database {database}"], f"{url}: healthy")
    ]
    try:
        auth = ("admin", secret_of("grafana-admin-password"))
        source = _get(f"{url}/api/datasources/uid/prometheus", auth=auth)
        source.raise_for_status()
        found = source.json().get("url")
    except Exception as error:
        return [
            *results,
            failed(MONITORING, "grafana datasource", CLUSTER, f"{url}/api/datasources/uid/prometheus: {error}"),
        ]
    from deploys.monitoring_config import prometheus_url

    wanted = prometheus_url(cluster)
    results.append(
        verdict(
            MONITORING,
            "grafana datasource",
            CLUSTER,
            [] if found == wanted else [f"url {found}, expected {wanted}"],
            f"Prometheus at {found}",
        )
    )
    return results


def alertmanager(cluster: Cluster) -> list[Result]:
    """Alertmanager is ready, and Prometheus (when it runs) sends its alerts to it."""
    url = alertmanager_access(cluster)
    unavailable = _not_deployed(cluster, "alertmanager") or _not_ready("alertmanager", url)
    if unavailable:
        return unavailable
    results = [passed(MONITORING, "alertmanager", CLUSTER, f"{url}: ready")]
    if not cluster.monitoring[0].settings.prometheus_enabled:
        return results
    prometheus_url = prometheus_access(cluster)
    try:
        response = _get(f"{prometheus_url}{ALERTMANAGERS_PATH}")
        response.raise_for_status()
        urls = active_alertmanagers(response.text)
    except (requests.RequestException, ValueError) as error:
        return [*results, failed(MONITORING, "prometheus sends alerts", CLUSTER, f"{prometheus_url}: {error}")]
    port = cluster.monitoring[0].settings.alertmanager_port
    problems = [] if sends_to_port(urls, port) else [f"Prometheus sends alerts to {urls or 'no Alertmanager'}"]
    results.append(verdict(MONITORING, "prometheus sends alerts", CLUSTER, problems, f"to {', '.join(urls)}"))
    return results
