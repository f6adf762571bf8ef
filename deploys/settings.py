"""Every knob of the deploys: its default, what it means, and what values it allows.

Settings are pyinfra host and group data. `settings_for(host)` reads them for one host and
`check_inventory()` checks the whole inventory (one head, the same Ray image everywhere, no port
used twice...). Both raise SettingsError, naming the host, the key, the bad value and what is
allowed, before any operation runs. `python -m deploys.settings` prints the README's table.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_RAY_IMAGE = "rayproject/ray:2.60.0-py311-cpu"
DOCKER_SOURCES = ("docker-ce", "distro")
RAY_AUTH_MODES = ("token", "disabled")
SIZE_PATTERN = re.compile(r"^[0-9]+[bkmg]?$")
DURATION_PATTERN = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
BYTE_SIZE_PATTERN = re.compile(r"^[0-9]+(B|KB|MB|GB|TB|PB|EB)$")


class SettingsError(ValueError):
    """Bad host or group data; the message names each host, key, value and what is allowed."""


def _setting(default: Any, help: str, **checks: Any) -> Any:
    """A dataclass field carrying its one-line meaning and its extra checks."""
    factory = default if callable(default) else None
    metadata = {"help": help, **checks}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """The settings of one host, after defaults and checks."""

    # Where things are
    cluster_address: str = _setting("", "Address Ray and the other nodes use for this host (default: its SSH hostname)")
    state_dir: str = _setting(
        "", "Local directory for generated secrets (default: $RAYDEPLOY_STATE_DIR or ./.raydeploy)"
    )
    # Docker
    docker_source: str = _setting(
        "docker-ce", "docker-ce (Docker's apt repository) or distro (Debian/Ubuntu docker.io)", choices=DOCKER_SOURCES
    )
    docker_registry_mirrors: list = _setting(list, "Registry mirrors for daemon.json (URLs)", items=str)
    docker_insecure_registries: list = _setting(list, "Registries reached over plain HTTP (host:port)", items=str)
    docker_data_root: str = _setting("", "Docker's data-root; empty keeps Docker's default (/var/lib/docker)")
    docker_log_max_size: str = _setting("100m", "json-file log rotation: size of one log file", size=True)
    docker_log_max_file: int = _setting(3, "json-file log rotation: files kept per container", minimum=1)
    docker_live_restore: bool = _setting(True, "Keep containers running while dockerd restarts")
    docker_users: list = _setting(list, "Users added to the docker group", items=str)
    # Prerequisites
    min_cpus: int = _setting(1, "Fewest CPUs a node may have", minimum=1)
    min_memory_mb: int = _setting(2048, "Least memory a node may have, in MiB", minimum=256)
    min_disk_free_gb: int = _setting(10, "Least free disk where Docker keeps its data, in GiB", minimum=1)
    min_shm_mb: int = _setting(64, "Smallest /dev/shm a node may have, in MiB", minimum=1)
    # Ray
    ray_image: str = _setting(DEFAULT_RAY_IMAGE, "Ray image, the same on every node (Ray refuses mixed versions)")
    ray_num_cpus: int | None = _setting(None, "CPUs Ray offers on this node (default: all it sees)", minimum=0)
    ray_num_gpus: int | None = _setting(None, "GPUs Ray offers on this node (default: Ray detects)", minimum=0)
    ray_resources: dict = _setting(dict, "Custom Ray resources, name: amount", values=float)
    ray_object_store_memory_mb: int | None = _setting(
        None, "Object store size in MiB (default: Ray's, 30% of memory)", minimum=64
    )
    ray_shm_size: str = _setting("2g", "Size of /dev/shm in the Ray containers (>= object store)", size=True)
    ray_gcs_port: int = _setting(6379, "Head: Ray GCS port (workers join HEAD:port)", port=True)
    ray_dashboard_port: int = _setting(8265, "Head: Ray dashboard and Jobs API port", port=True)
    ray_client_port: int = _setting(10001, "Head: Ray client server port", port=True)
    ray_metrics_export_port: int = _setting(8080, "Every node: port of Ray's Prometheus metrics", port=True)
    ray_auth_mode: str = _setting(
        "token", "token (a generated token guards the cluster) or disabled", choices=RAY_AUTH_MODES
    )
    ray_join_timeout_s: int = _setting(300, "How long to wait for every node to be alive", minimum=10)
    ray_temp_dir: str = _setting("/tmp/ray", "Head: host directory mounted as Ray's /tmp/ray")
    ray_extra_env: dict = _setting(dict, "Extra environment for the Ray containers", values=str)
    # Redis (Ray GCS fault tolerance)
    redis_enabled: bool = _setting(True, "Run Redis beside the head so a restarted head recovers the cluster")
    redis_image: str = _setting("redis:7.0", "Redis image")
    redis_port: int = _setting(6380, "Head: Redis port (host network)", port=True)
    # Monitoring: node-exporter and cAdvisor on every node, Prometheus and Grafana on the monitoring host
    cluster_name: str = _setting("ray", "Name of the cluster in Prometheus (external label `cluster`)")
    monitoring_off_reason: str = _setting("", "Why components are off on this host; the deploy prints it")
    node_exporter_enabled: bool = _setting(True, "Run node-exporter (host metrics) on this node")
    node_exporter_image: str = _setting("prom/node-exporter:v1.5.0", "node-exporter image")
    node_exporter_port: int = _setting(9100, "node-exporter port (host network)", port=True)
    cadvisor_enabled: bool = _setting(True, "Run cAdvisor (container metrics) on this node")
    cadvisor_image: str = _setting("gcr.io/cadvisor/cadvisor:v0.47.2", "cAdvisor image")
    cadvisor_port: int = _setting(8081, "cAdvisor port (host network)", port=True)
    prometheus_enabled: bool = _setting(True, "Monitoring host: run Prometheus")
    prometheus_image: str = _setting("prom/prometheus:v2.42.0", "Prometheus image")
    prometheus_port: int = _setting(9090, "Monitoring host: Prometheus port", port=True)
    prometheus_scrape_interval: str = _setting("15s", "How often Prometheus scrapes every target", duration=True)
    prometheus_evaluation_interval: str = _setting(
        "15s", "How often Prometheus evaluates the alert rules", duration=True
    )
    prometheus_retention_time: str = _setting("15d", "How long Prometheus keeps samples", duration=True)
    prometheus_retention_size: str = _setting(
        "", "Cap on Prometheus's storage, like 10GB (empty: no cap)", byte_size=True
    )
    grafana_enabled: bool = _setting(True, "Monitoring host: run Grafana")
    grafana_image: str = _setting("grafana/grafana:10.4.2", "Grafana image")
    grafana_port: int = _setting(3000, "Monitoring host: Grafana port", port=True)
    grafana_iframe_host: str = _setting(
        "", "URL browsers reach Grafana at, for the charts in the Ray dashboard (default: Grafana's own URL)"
    )
    alert_disk_free_percent: int = _setting(10, "DiskAlmostFull fires below this free share of a filesystem", minimum=1)
    alert_memory_available_percent: int = _setting(
        10, "MemoryPressure fires below this available share of memory", minimum=1
    )
    alert_container_restarts: int = _setting(3, "ContainerRestarting fires at this many restarts in 15 min", minimum=1)
    alert_ray_node_lost_for: str = _setting("1m", "RayNodeLost fires after nodes are missing this long", duration=True)
    # How this machine (validation, the API) reaches the services; default http://<cluster_address>:<port>
    dashboard_access_url: str = _setting("", "Head: URL of the Ray dashboard from the machine running raydeploy")
    prometheus_access_url: str = _setting("", "Monitoring host: URL of Prometheus from the machine running raydeploy")
    grafana_access_url: str = _setting("", "Monitoring host: URL of Grafana from the machine running raydeploy")
    # Containers
    container_restart_policy: str = _setting(
        "unless-stopped", "Docker restart policy of every container", choices=("unless-stopped", "always", "on-failure")
    )

    def ray_ports(self, role: str) -> dict[str, int]:
        """The ports this host's Ray containers listen on, by setting name."""
        if role not in ("head", "worker"):
            return {}
        ports = {"ray_metrics_export_port": self.ray_metrics_export_port}
        if role == "head":
            ports |= {
                "ray_gcs_port": self.ray_gcs_port,
                "ray_dashboard_port": self.ray_dashboard_port,
                "ray_client_port": self.ray_client_port,
            }
            if self.redis_enabled:
                ports["redis_port"] = self.redis_port
        return ports

    def ports(self, role: str, monitoring: bool = False) -> dict[str, int]:
        """The ports this host's containers listen on, by setting name (MONITORING: it is the monitoring host)."""
        ray = self.ray_ports(role)
        ports = {key: port for key, port in ray.items() if key == "ray_metrics_export_port"}
        if self.node_exporter_enabled:
            ports["node_exporter_port"] = self.node_exporter_port
        if self.cadvisor_enabled:
            ports["cadvisor_port"] = self.cadvisor_port
        if monitoring and self.prometheus_enabled:
            ports["prometheus_port"] = self.prometheus_port
        if monitoring and self.grafana_enabled:
            ports["grafana_port"] = self.grafana_port
        return ports | ray


SETTINGS_FIELDS = {setting.name: setting for setting in dataclasses.fields(Settings)}


def _check_value(name: str, raw: Any) -> tuple[Any, str | None]:
    """The value of setting NAME from RAW, or the reason RAW is not allowed."""
    setting = SETTINGS_FIELDS[name]
    meta = setting.metadata
    kind = setting.type
    if raw is None:
        return (None, None) if "None" in str(kind) else (None, "must be set")
    if kind == "bool":
        if isinstance(raw, bool):
            return raw, None
        return None, "must be true or false"
    if kind.startswith("int"):
        if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).strip().isdigit():
            return None, "must be a whole number" + (f" >= {meta['minimum']}" if "minimum" in meta else "")
        value = int(raw)
        if "minimum" in meta and value < meta["minimum"]:
            return None, f"must be >= {meta['minimum']}"
        if meta.get("port") and not 1 <= value <= 65535:
            return None, "must be a port number, 1 to 65535"
        return value, None
    if kind == "str":
        if not isinstance(raw, str):
            return None, "must be a string"
        if "choices" in meta and raw not in meta["choices"]:
            return None, f"must be one of: {', '.join(meta['choices'])}"
        if meta.get("size") and not SIZE_PATTERN.match(raw.lower()):
            return None, "must be a size like 512m or 2g"
        if meta.get("duration") and not DURATION_PATTERN.match(raw):
            return None, "must be a duration like 30s, 5m, 15d"
        if meta.get("byte_size") and raw and not BYTE_SIZE_PATTERN.match(raw):
            return None, "must be empty or a size like 512MB or 10GB"
        return raw, None
    if kind == "list":
        if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
            return None, "must be a list of strings"
        return list(raw), None
    if kind == "dict":
        if not isinstance(raw, dict):
            return None, "must be a mapping"
        convert: Callable[[Any], Any] = meta["values"]
        try:
            return {str(key): convert(value) for key, value in raw.items()}, None
        except (TypeError, ValueError):
            return None, f"must map names to {convert.__name__} values"
    raise AssertionError(f"unhandled setting type {kind} for {name}")


def settings_from_data(host_name: str, data: dict[str, Any], ssh_hostname: str | None = None) -> Settings:
    """Settings for one host from its data (keys not ours are ignored); every bad key reported at once."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, setting in SETTINGS_FIELDS.items():
        if name not in data or (data[name] is None and setting.default is not None):
            continue
        value, problem = _check_value(name, data[name])
        if problem:
            problems.append(f"{host_name}: {name}={data[name]!r} {problem}")
        else:
            values[name] = value
    if problems:
        raise SettingsError("\n".join(problems))
    settings = Settings(**values)
    if not settings.cluster_address:
        settings = dataclasses.replace(settings, cluster_address=ssh_hostname or host_name)
    if not settings.state_dir:
        settings = dataclasses.replace(settings, state_dir=os.environ.get("RAYDEPLOY_STATE_DIR") or ".raydeploy")
    return settings


def check_cluster(hosts: Iterable[tuple[str, str, Settings]], monitoring: Iterable[str] = ()) -> None:
    """Checks across hosts, given (name, role, settings) for each and the monitoring group: all problems at once."""
    hosts = list(hosts)
    monitoring = list(monitoring)
    problems: list[str] = []
    if len(monitoring) > 1:
        problems.append(
            f"inventory: group 'monitoring' may hold one host; found {len(monitoring)} ({', '.join(monitoring)})"
        )
    monitoring_host = monitoring[0] if monitoring else next((name for name, role, _ in hosts if role == "head"), None)
    heads = [name for name, role, _ in hosts if role == "head"]
    if len(heads) != 1:
        found = ", ".join(heads) or "none"
        problems.append(f"inventory: group 'head' must hold exactly one host; found {len(heads)} ({found})")
    both = [name for name, role, _ in hosts if role == "head+worker"]
    if both:
        problems.append(f"inventory: {', '.join(both)} is in both 'head' and 'workers'; a host has one role")
    ray_nodes = [(name, role, settings) for name, role, settings in hosts if role != "monitoring"]
    images = {settings.ray_image for _, _, settings in ray_nodes}
    if len(images) > 1:
        per_host = ", ".join(f"{name}={settings.ray_image}" for name, _, settings in ray_nodes)
        problems.append(
            f"inventory: ray_image differs across nodes ({per_host}); Ray refuses mixed versions, "
            f"set one ray_image for all"
        )
    addresses: dict[str, str] = {}
    for name, role, settings in hosts:
        if settings.cluster_address in addresses:
            problems.append(
                f"{name}: cluster_address={settings.cluster_address!r} is also {addresses[settings.cluster_address]}'s; "
                f"every node needs its own"
            )
        addresses[settings.cluster_address] = name
        try:
            ipaddress.ip_address(settings.cluster_address)
        except ValueError:
            if not re.match(r"^[A-Za-z0-9.-]+$", settings.cluster_address):
                problems.append(f"{name}: cluster_address={settings.cluster_address!r} is not an address or hostname")
        used: dict[int, str] = {}
        for key, port in settings.ports(role, monitoring=name == monitoring_host).items():
            if port in used:
                problems.append(f"{name}: {key}={port} clashes with {used[port]}={port}; give each a port of its own")
            used[port] = key
    if problems:
        raise SettingsError("\n".join(problems))


def markdown_table() -> str:
    """The README's configuration table, made from this module."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for name, setting in SETTINGS_FIELDS.items():
        default = setting.default_factory() if setting.default_factory is not dataclasses.MISSING else setting.default
        shown = "" if default in ("", None) else f"`{default!r}`" if not isinstance(default, str) else f"`{default}`"
        allowed = f" ({' / '.join(setting.metadata['choices'])})" if "choices" in setting.metadata else ""
        lines.append(f"| `{name}` | {shown} | {setting.metadata['help']}{allowed} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
