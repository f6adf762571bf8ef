"""The monitoring stack's files, rendered from templates/ for a cluster: pure, so tests render the same.

Prometheus: `prometheus.yml` (itself, node-exporter and cAdvisor on every node that runs them,
every Ray node through the head's service-discovery endpoint) and `rules/raydeploy.yml` (the
alerts). Grafana: a datasource, the dashboard providers, and our hosts and containers dashboards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from deploys.topology import Cluster, Node
from templates import TEMPLATES

# Where Prometheus and Grafana see their files inside their containers.
PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
PROMETHEUS_RAY_TOKEN = f"{PROMETHEUS_CONFIG_DIR}/ray-auth-token"
DASHBOARDS = ("hosts.json", "containers.json")
# Filesystems the disk alert ignores: memory-backed, images, and container layers.
IGNORED_FSTYPES = "tmpfs|ramfs|squashfs|overlay|nsfs|fuse.lxcfs"

_environment = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Target:
    node: str
    address: str

    @property
    def address_regex(self) -> str:
        return re.escape(self.address) + ":[0-9]+"


def monitoring_node(cluster: Cluster) -> Node:
    """The host that runs Prometheus and Grafana."""
    return cluster.monitoring[0]


def prometheus_url(cluster: Cluster) -> str:
    node = monitoring_node(cluster)
    return f"http://{node.settings.cluster_address}:{node.settings.prometheus_port}"


def grafana_url(cluster: Cluster) -> str:
    node = monitoring_node(cluster)
    return f"http://{node.settings.cluster_address}:{node.settings.grafana_port}"


def ray_sd_url(cluster: Cluster) -> str:
    head = cluster.head.settings
    return f"http://{head.cluster_address}:{head.ray_dashboard_port}/api/prometheus/sd"


def _render(template: str, **context) -> str:
    return _environment.get_template(template).render(**context)


def prometheus_config(cluster: Cluster) -> str:
    """prometheus.yml for CLUSTER."""
    monitor = monitoring_node(cluster).settings
    return _render(
        "prometheus/prometheus.yml.j2",
        cluster_name=monitor.cluster_name,
        scrape_interval=monitor.prometheus_scrape_interval,
        evaluation_interval=monitor.prometheus_evaluation_interval,
        prometheus_port=monitor.prometheus_port,
        monitoring_node=monitoring_node(cluster).name,
        node_exporters=[
            Target(node.name, f"{node.settings.cluster_address}:{node.settings.node_exporter_port}")
            for node in cluster.hosts
            if node.settings.node_exporter_enabled
        ],
        cadvisors=[
            Target(node.name, f"{node.settings.cluster_address}:{node.settings.cadvisor_port}")
            for node in cluster.hosts
            if node.settings.cadvisor_enabled
        ],
        dcgm_exporters=[
            Target(node.name, f"{node.settings.cluster_address}:{node.settings.dcgm_exporter_port}")
            for node in cluster.hosts
            if node.settings.gpu == "nvidia" and node.settings.dcgm_exporter_enabled
        ],
        ray_sd_url=ray_sd_url(cluster),
        sd_refresh_interval=monitor.prometheus_scrape_interval,
        ray_token_file=PROMETHEUS_RAY_TOKEN if cluster.head.settings.ray_auth_mode == "token" else "",
        ray_nodes=[Target(node.name, node.settings.cluster_address) for node in cluster.nodes],
    )


def alert_rules(cluster: Cluster) -> str:
    """The alert rules for CLUSTER (thresholds from the monitoring host's settings)."""
    monitor = monitoring_node(cluster).settings
    return _render(
        "prometheus/alerts.yml.j2",
        cluster_name=monitor.cluster_name,
        expected_ray_nodes=len(cluster.nodes),
        head_node=cluster.head.name,
        host_down_for="1m",
        ray_node_lost_for=monitor.alert_ray_node_lost_for,
        gcs_unhealthy_for="1m",
        ignored_fstypes=IGNORED_FSTYPES,
        disk_free_percent=monitor.alert_disk_free_percent,
        memory_available_percent=monitor.alert_memory_available_percent,
        container_restarts=monitor.alert_container_restarts,
    )


def grafana_datasources(cluster: Cluster) -> str:
    monitor = monitoring_node(cluster).settings
    return _render(
        "grafana/datasources.yml.j2",
        prometheus_url=prometheus_url(cluster),
        scrape_interval=monitor.prometheus_scrape_interval,
    )


def grafana_dashboard_providers(cluster: Cluster) -> str:
    """Our dashboards always; Ray's own only where Grafana runs on the head, which writes them."""
    return _render("grafana/dashboards.yml.j2", ray_dashboards=monitoring_node(cluster).name == cluster.head.name)


def dashboards() -> dict[str, str]:
    """Our Grafana dashboards, by file name."""
    return {name: (TEMPLATES / "grafana" / "dashboards" / name).read_text() for name in DASHBOARDS}
