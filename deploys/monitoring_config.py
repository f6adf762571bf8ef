"""The monitoring stack's files, rendered from templates/ for a cluster: pure, so tests render the same.

Prometheus: `prometheus.yml` (itself, node-exporter and cAdvisor on every node that runs them,
every Ray node through the head's service-discovery endpoint) and `rules/raydeploy.yml` (the
alerts). Grafana: a datasource, the dashboard providers, and our hosts and containers dashboards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from deploys.host_secrets import ALERT_SECRET_FILES, ALERTMANAGER_MOUNT
from deploys.topology import Cluster, Node
from templates import TEMPLATES

# Where Prometheus and Grafana see their files inside their containers.
PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
PROMETHEUS_RAY_TOKEN = f"{PROMETHEUS_CONFIG_DIR}/ray-auth-token"
DASHBOARDS = ("hosts.json", "containers.json")
# Filesystems the disk alert ignores: memory-backed, images, and container layers.
IGNORED_FSTYPES = "tmpfs|ramfs|squashfs|overlay|nsfs|fuse.lxcfs"
# Slack's message: Alertmanager's own Go templates, one line per alert.
SLACK_TITLE = "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.cluster }})"
SLACK_TEXT = "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}"

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


def alertmanager_url(cluster: Cluster) -> str:
    node = monitoring_node(cluster)
    return f"http://{node.settings.cluster_address}:{node.settings.alertmanager_port}"


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
        # Alertmanager runs on the same host, on the host network.
        alertmanager=f"127.0.0.1:{monitor.alertmanager_port}" if monitor.alertmanager_enabled else "",
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


def alert_routes(cluster: Cluster) -> dict[str, list[str]]:
    """Severity -> the receivers its alerts go to, for the severities that go anywhere."""
    monitor = monitoring_node(cluster).settings
    routes = {"critical": monitor.alert_critical_receivers, "warning": monitor.alert_warning_receivers}
    return {severity: list(kinds) for severity, kinds in routes.items() if kinds}


def alertmanager_config(cluster: Cluster, webhook_url: str = "") -> str:
    """alertmanager.yml for CLUSTER; WEBHOOK_URL is the generic webhook's (a secret: the file is 0600)."""
    monitor = monitoring_node(cluster).settings
    routes = alert_routes(cluster)
    used = {kind for kinds in routes.values() for kind in kinds}
    smtp = None
    if "email" in used:
        smtp = {
            "smarthost": monitor.alert_smtp_smarthost,
            "sender": monitor.alert_smtp_from,
            "to": monitor.alert_smtp_to,
            "username": monitor.alert_smtp_username,
            "require_tls": monitor.alert_smtp_require_tls,
            "password_file": f"{ALERTMANAGER_MOUNT}/{ALERT_SECRET_FILES['email']}",
        }
    return _render(
        "alertmanager/alertmanager.yml.j2",
        cluster_name=monitor.cluster_name,
        smtp=smtp,
        group_by=monitor.alert_group_by,
        group_wait=monitor.alert_group_wait,
        group_interval=monitor.alert_group_interval,
        repeat_interval=monitor.alert_repeat_interval,
        routes=routes,
        webhook_url=webhook_url,
        send_resolved=monitor.alert_send_resolved,
        slack_url_file=f"{ALERTMANAGER_MOUNT}/{ALERT_SECRET_FILES['slack']}",
        slack_channel=monitor.alert_slack_channel,
        slack_title=SLACK_TITLE,
        slack_text=SLACK_TEXT,
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
