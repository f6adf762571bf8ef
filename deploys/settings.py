"""Every knob of the deploys: its default, what it means, and what values it allows.

Settings are pyinfra host and group data, checked by pydantic: each key has a type below (a kind
of value with the words a refusal uses), a default and a one-line meaning. `settings_from_data()`
reads them for one host and `check_cluster()` checks the hosts together (one head, the same Ray
image everywhere, no port used twice...). Both raise SettingsError, naming the host, the key, the
bad value and what is allowed, before any operation runs. `python -m deploys.settings` prints the
README's table.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import sys
from collections.abc import Iterable
from typing import Annotated, Any, Literal, get_args, get_origin

from annotated_types import Ge
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.fields import FieldInfo

from deploys.ray_versions import release_of, same_release

DEFAULT_RAY_IMAGE = "rayproject/ray:2.60.0-py311-cpu"
PORT_WORDS = "must be a port number, 1 to 65535"
LONGEST_VALUE_SHOWN = 80


class SettingsError(ValueError):
    """Bad host or group data; the message names each host, key, value and what is allowed."""


class Allowed:
    """What a kind of setting allows, in the words a refusal uses: WORDS, or the words for one pydantic error
    type (a number of the right kind but out of range says so). `{ge}` stands for the key's minimum."""

    def __init__(self, words: str, **by_error_type: str) -> None:
        self.words, self.by_error_type = words, by_error_type

    def say(self, error_type: str, minimum: int | None) -> str:
        return self.by_error_type.get(error_type, self.words).format(ge=minimum)


def _ascii_digits_as_int(raw: Any) -> Any:
    """A whole number written as a string ("16") is that number; anything else goes on to pydantic's strict
    check, which refuses true/false and 16.5 (its lax mode would take True as 1)."""
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        return int(raw.strip())  # ValueError past 4,300 digits: refused like any other bad number
    return raw


def _tuple_as_list(raw: Any) -> Any:
    """A tuple in Python group data is a list; a set is not (its order would change daemon.json run to run)."""
    return list(raw) if isinstance(raw, tuple) else raw


def _scalar_as_text(raw: Any) -> Any:
    """An environment value given as a number (or true/false) is its text, as the container will see it."""
    return str(raw) if isinstance(raw, bool | int | float) else raw


Text = Annotated[str, Strict(), Allowed("must be a string")]
Flag = Annotated[bool, Strict(), Allowed("must be true or false")]
Count = Annotated[
    int,
    BeforeValidator(_ascii_digits_as_int),
    Strict(),
    Allowed("must be a whole number >= {ge}", greater_than_equal="must be >= {ge}"),
]
Port = Annotated[
    int,
    BeforeValidator(_ascii_digits_as_int),
    Strict(),
    Field(ge=1, le=65535),
    Allowed("must be a whole number", greater_than_equal=PORT_WORDS, less_than_equal=PORT_WORDS),
]
Size = Annotated[str, Strict(), Field(pattern=r"^[0-9]+[bkmgBKMG]?$"), Allowed("must be a size like 512m or 2g")]
Duration = Annotated[
    str, Strict(), Field(pattern=r"^([0-9]+(ms|s|m|h|d|w|y))+$"), Allowed("must be a duration like 30s, 5m, 15d")
]
Uid = Annotated[
    int,
    BeforeValidator(_ascii_digits_as_int),
    Strict(),
    Field(ge=0),
    Allowed("must be a numeric user id", greater_than_equal="must be a numeric user id, >= 0"),
]
StorageCap = Annotated[
    str,
    Strict(),
    Field(pattern=r"^([0-9]+(B|KB|MB|GB|TB|PB|EB))?$"),
    Allowed("must be empty or a size like 512MB or 10GB"),
]
Names = Annotated[list[Text], BeforeValidator(_tuple_as_list), Strict(), Allowed("must be a list of strings")]
Amounts = Annotated[
    dict[str, Annotated[float, Field(allow_inf_nan=False)]],
    Allowed("must map names to float values", dict_type="must be a mapping"),
]
Environment = Annotated[
    dict[str, Annotated[str, BeforeValidator(_scalar_as_text), Strict()]],
    Allowed("must map names to str values", dict_type="must be a mapping"),
]
DockerSource = Literal["docker-ce", "distro"]
RayAuthMode = Literal["token", "disabled"]
RestartPolicy = Literal["unless-stopped", "always", "on-failure"]
GpuKind = Literal["none", "nvidia"]
Labels = Annotated[
    dict[str, Annotated[str, BeforeValidator(_scalar_as_text), Strict()]],
    Allowed("must map label names to str values", dict_type="must be a mapping"),
]
AlertReceiver = Literal["webhook", "slack", "email"]
Receivers = Annotated[
    list[AlertReceiver],
    BeforeValidator(_tuple_as_list),
    Strict(),
    Allowed(f"must be a list of: {', '.join(get_args(AlertReceiver))}"),
]


def setting(default: Any, meaning: str, **constraints: Any) -> Any:
    """A key's DEFAULT (`list` or `dict`: a fresh one per host), its one-line MEANING (the README's table) and
    any pydantic CONSTRAINTS beyond its type's (ge: the least value allowed)."""
    if callable(default):
        return Field(default_factory=default, description=meaning, **constraints)
    return Field(default, description=meaning, **constraints)


class Settings(BaseModel):
    """The settings of one host, after defaults and checks. Keys of host data that are not settings are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # Where things are
    cluster_address: Text = setting("", "Address Ray and the other nodes use for this host (default: its SSH hostname)")
    state_dir: Text = setting(
        "", "Local directory for generated secrets (default: $RAYDEPLOY_STATE_DIR or ./.raydeploy)"
    )
    # Docker
    docker_source: DockerSource = setting(
        "docker-ce", "docker-ce (Docker's apt repository) or distro (Debian/Ubuntu docker.io)"
    )
    docker_registry_mirrors: Names = setting(list, "Registry mirrors for daemon.json (URLs)")
    docker_insecure_registries: Names = setting(list, "Registries reached over plain HTTP (host:port)")
    docker_data_root: Text = setting("", "Docker's data-root; empty keeps Docker's default (/var/lib/docker)")
    docker_log_max_size: Size = setting("100m", "json-file log rotation: size of one log file")
    docker_log_max_file: Count = setting(3, "json-file log rotation: files kept per container", ge=1)
    docker_live_restore: Flag = setting(True, "Keep containers running while dockerd restarts")
    docker_users: Names = setting(list, "Users added to the docker group")
    # Prerequisites
    min_cpus: Count = setting(1, "Fewest CPUs a node may have", ge=1)
    min_memory_mb: Count = setting(2048, "Least memory a node may have, in MiB", ge=256)
    min_disk_free_gb: Count = setting(10, "Least free disk where Docker keeps its data, in GiB", ge=1)
    min_shm_mb: Count = setting(64, "Smallest /dev/shm a node may have, in MiB", ge=1)
    # Ray
    ray_image: Text = setting(
        DEFAULT_RAY_IMAGE, "Ray image; one Ray release (and Python version) on every node, Ray refuses mixed versions"
    )
    ray_num_cpus: Count | None = setting(None, "CPUs Ray offers on this node (default: all it sees)", ge=0)
    ray_num_gpus: Count | None = setting(
        None, "GPUs Ray offers on this node (default: as many as nvidia-smi lists on a gpu: nvidia host)", ge=0
    )
    ray_memory_mb: Count | None = setting(
        None, "Memory Ray offers for tasks and actors, in MiB (default: Ray's)", ge=64
    )
    ray_resources: Amounts = setting(dict, "Custom Ray resources, name: amount")
    ray_labels: Labels = setting(dict, "Ray node labels, name: value (tasks select nodes by them)")
    ray_object_store_memory_mb: Count | None = setting(
        None, "Object store size in MiB (default: Ray's, 30% of memory)", ge=64
    )
    ray_shm_size: Size = setting("2g", "Size of /dev/shm in the Ray containers (>= object store)")
    ray_gcs_port: Port = setting(6379, "Head: Ray GCS port (workers join HEAD:port)")
    ray_dashboard_port: Port = setting(8265, "Head: Ray dashboard and Jobs API port")
    ray_client_port: Port = setting(10001, "Head: Ray client server port")
    ray_metrics_export_port: Port = setting(8080, "Every node: port of Ray's Prometheus metrics")
    ray_auth_mode: RayAuthMode = setting("token", "token (a generated token guards the cluster) or disabled")
    ray_join_timeout_s: Count = setting(300, "How long to wait for every node to be alive", ge=10)
    ray_temp_dir: Text = setting("/tmp/ray", "Head: host directory mounted as Ray's /tmp/ray")
    ray_extra_env: Environment = setting(dict, "Extra environment for the Ray containers")
    ray_container_uid: Uid = setting(
        1000, "User id the Ray image runs as (rayproject/ray: ray, 1000); owns its secret files"
    )
    # GPUs
    gpu: GpuKind = setting("none", "nvidia: the host has NVIDIA GPUs (Container Toolkit, --gpus, the GPU image)")
    gpu_devices: Names = setting(list, "GPUs given to the Ray container, by index or UUID (default: all)")
    ray_gpu_image: Text = setting(
        "", "Ray image on gpu: nvidia hosts (default: ray_image with its -cpu tag suffix as -gpu); same Ray release"
    )
    # Redis (Ray GCS fault tolerance)
    redis_enabled: Flag = setting(True, "Run Redis beside the head so a restarted head recovers the cluster")
    redis_image: Text = setting("redis:7.0", "Redis image")
    redis_port: Port = setting(6380, "Head: Redis port (host network)")
    redis_container_uid: Uid = setting(999, "User id Redis runs as in its image (redis: redis, 999); owns redis.conf")
    # Monitoring: node-exporter and cAdvisor on every node, Prometheus and Grafana on the monitoring host
    cluster_name: Text = setting("ray", "Name of the cluster in Prometheus (external label `cluster`)")
    monitoring_off_reason: Text = setting("", "Why components are off on this host; the deploy prints it")
    node_exporter_enabled: Flag = setting(True, "Run node-exporter (host metrics) on this node")
    node_exporter_image: Text = setting("prom/node-exporter:v1.5.0", "node-exporter image")
    node_exporter_port: Port = setting(9100, "node-exporter port (host network)")
    cadvisor_enabled: Flag = setting(True, "Run cAdvisor (container metrics) on this node")
    cadvisor_image: Text = setting("gcr.io/cadvisor/cadvisor:v0.47.2", "cAdvisor image")
    cadvisor_port: Port = setting(8081, "cAdvisor port (host network)")
    dcgm_exporter_enabled: Flag = setting(True, "gpu: nvidia hosts: run NVIDIA's DCGM exporter (GPU health metrics)")
    dcgm_exporter_image: Text = setting(
        "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04", "DCGM exporter image"
    )
    dcgm_exporter_port: Port = setting(9400, "gpu: nvidia hosts: DCGM exporter port (host network)")
    prometheus_enabled: Flag = setting(True, "Monitoring host: run Prometheus")
    prometheus_image: Text = setting("prom/prometheus:v2.42.0", "Prometheus image")
    prometheus_port: Port = setting(9090, "Monitoring host: Prometheus port")
    prometheus_container_uid: Uid = setting(
        65534, "User id the Prometheus image runs as (prom/prometheus: nobody, 65534); owns its Ray token file"
    )
    prometheus_scrape_interval: Duration = setting("15s", "How often Prometheus scrapes every target")
    prometheus_evaluation_interval: Duration = setting("15s", "How often Prometheus evaluates the alert rules")
    prometheus_retention_time: Duration = setting("15d", "How long Prometheus keeps samples")
    prometheus_retention_size: StorageCap = setting("", "Cap on Prometheus's storage, like 10GB (empty: no cap)")
    grafana_enabled: Flag = setting(True, "Monitoring host: run Grafana")
    grafana_image: Text = setting("grafana/grafana:10.4.2", "Grafana image")
    grafana_port: Port = setting(3000, "Monitoring host: Grafana port")
    grafana_container_uid: Uid = setting(
        472, "User id the Grafana image runs as (grafana/grafana: grafana, 472); owns its password file"
    )
    grafana_iframe_host: Text = setting(
        "", "URL browsers reach Grafana at, for the charts in the Ray dashboard (default: Grafana's own URL)"
    )
    # Alertmanager, on the monitoring host: where Prometheus's alerts go. The receivers' secrets are files in
    # <state_dir>/secrets: alert-webhook-url, alert-slack-url, alert-smtp-password (README: "Alerts").
    alertmanager_enabled: Flag = setting(True, "Monitoring host: run Alertmanager, which delivers the alerts")
    alertmanager_image: Text = setting("prom/alertmanager:v0.25.0", "Alertmanager image")
    alertmanager_port: Port = setting(9093, "Monitoring host: Alertmanager port")
    alertmanager_container_uid: Uid = setting(
        65534, "User id the Alertmanager image runs as (prom/alertmanager: nobody, 65534); owns its files"
    )
    alert_critical_receivers: Receivers = setting(
        list, "Where critical alerts go: any of webhook, slack, email (none: kept in Alertmanager only)"
    )
    alert_warning_receivers: Receivers = setting(list, "Where warning alerts go: any of webhook, slack, email")
    alert_group_by: Names = setting(
        lambda: ["alertname", "cluster"], "Labels whose alerts Alertmanager sends together in one notice"
    )
    alert_group_wait: Duration = setting("10s", "How long a new group of alerts waits for others before its notice")
    alert_group_interval: Duration = setting(
        "5m", "How long a group waits before a notice of its changes (new, resolved)"
    )
    alert_repeat_interval: Duration = setting("4h", "How often an alert still firing is sent again")
    alert_send_resolved: Flag = setting(True, "Also send a notice when an alert resolves")
    alert_slack_channel: Text = setting("", "Slack: channel to post in (default: the incoming webhook's own)")
    alert_smtp_smarthost: Text = setting("", "E-mail: SMTP server as host:port")
    alert_smtp_from: Text = setting("", "E-mail: sender address")
    alert_smtp_to: Text = setting("", "E-mail: recipient addresses, comma-separated")
    alert_smtp_username: Text = setting("", "E-mail: SMTP user (empty: no authentication)")
    alert_smtp_require_tls: Flag = setting(True, "E-mail: require STARTTLS")
    alert_disk_free_percent: Count = setting(10, "DiskAlmostFull fires below this free share of a filesystem", ge=1)
    alert_memory_available_percent: Count = setting(
        10, "MemoryPressure fires below this available share of memory", ge=1
    )
    alert_container_restarts: Count = setting(3, "ContainerRestarting fires at this many restarts in 15 min", ge=1)
    alert_ray_node_lost_for: Duration = setting("1m", "RayNodeLost fires after nodes are missing this long")
    # How this machine (validation, the API) reaches the services; default http://<cluster_address>:<port>
    dashboard_access_url: Text = setting("", "Head: URL of the Ray dashboard from the machine running raydeploy")
    prometheus_access_url: Text = setting("", "Monitoring host: URL of Prometheus from the machine running raydeploy")
    grafana_access_url: Text = setting("", "Monitoring host: URL of Grafana from the machine running raydeploy")
    alertmanager_access_url: Text = setting(
        "", "Monitoring host: URL of Alertmanager from the machine running raydeploy"
    )
    # Containers
    container_restart_policy: RestartPolicy = setting("unless-stopped", "Docker restart policy of every container")

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
        if self.gpu == "nvidia" and self.dcgm_exporter_enabled:
            ports["dcgm_exporter_port"] = self.dcgm_exporter_port
        if monitoring and self.prometheus_enabled:
            ports["prometheus_port"] = self.prometheus_port
        if monitoring and self.grafana_enabled:
            ports["grafana_port"] = self.grafana_port
        if monitoring and self.alertmanager_enabled:
            ports["alertmanager_port"] = self.alertmanager_port
        return ports | ray


def choices(field: FieldInfo) -> tuple[str, ...]:
    """The values a one-of-these setting allows, in order; () for any other."""
    return get_args(field.annotation) if get_origin(field.annotation) is Literal else ()


def allowed(field: FieldInfo) -> Allowed:
    """What FIELD allows: its choices, or the Allowed of its type (inside `| None` for an optional one)."""
    if choices(field):
        return Allowed(f"must be one of: {', '.join(choices(field))}")
    inner = [item for part in get_args(field.annotation) for item in getattr(part, "__metadata__", ())]
    return next(item for item in (*field.metadata, *inner) if isinstance(item, Allowed))


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= LONGEST_VALUE_SHOWN else f"{shown[: LONGEST_VALUE_SHOWN - 3]}..."


def refusals(host_name: str, given: dict[str, Any], error: ValidationError) -> list[str]:
    """Pydantic's ERROR in our words, one line per bad key: host, key, the value given, what is allowed."""
    lines: dict[str, str] = {}
    for problem in error.errors():
        name = str(problem["loc"][0])
        if name in lines:
            continue  # a mapping with several bad values is one bad key
        field = Settings.model_fields[name]
        minimum = next((item.ge for item in field.metadata if isinstance(item, Ge)), None)
        lines[name] = f"{host_name}: {name}={_shown(given[name])} {allowed(field).say(problem['type'], minimum)}"
    return list(lines.values())


def settings_from_data(
    host_name: str, data: dict[str, Any], ssh_hostname: str | None = None, label: str | None = None
) -> Settings:
    """Settings for one host from its data (keys not ours are ignored, None keeps a default); every bad key
    reported at once, each line starting with LABEL (default: the host's name; "gpu-1 (group gpu)")."""
    fields = Settings.model_fields
    given = {
        name: value
        for name, value in data.items()
        if name in fields and not (value is None and fields[name].default is not None)
    }
    try:
        settings = Settings.model_validate(given)
    except ValidationError as error:
        raise SettingsError("\n".join(refusals(label or host_name, given, error))) from None
    derived = {
        "cluster_address": settings.cluster_address or ssh_hostname or host_name,
        "state_dir": settings.state_dir or os.environ.get("RAYDEPLOY_STATE_DIR") or ".raydeploy",
        "ray_image": node_ray_image(settings),
    }
    return settings.model_copy(update=derived)


def node_ray_image(settings: Settings) -> str:
    """The Ray image this host runs: on a GPU host the GPU build of the same release, so that one
    ray_image for the whole cluster still gives GPU nodes CUDA (`rayproject/ray:2.60.0-py311-gpu`)."""
    if settings.gpu != "nvidia":
        return settings.ray_image
    if settings.ray_gpu_image:
        return settings.ray_gpu_image
    # A digest pins the CPU build's bytes, not the GPU build's: the GPU build is named by its tag.
    return re.sub(r"-cpu(@sha256:[0-9a-f]+)?$", "-gpu", settings.ray_image)


# Keys of group data that are pyinfra's own (connection, operation arguments), not settings.
CONNECTION_KEY = re.compile(r"^(_|ssh_|winrm_|chroot_|local_)")


def unknown_group_keys(group: str, members: Iterable[str], data: dict[str, Any]) -> list[str]:
    """A line per key of worker group GROUP's data that is no setting, for each of its MEMBERS: a
    misspelt key would otherwise be ignored, and the group deployed without what it asked for."""
    problems = []
    for key in data:
        if key in Settings.model_fields or CONNECTION_KEY.match(key):
            continue
        near = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        problems += [
            f"{member} (group {group}): {key} is not a setting{hint}; the settings are the README's table"
            for member in members
        ]
    return problems


def mixed_releases(images: list[tuple[str, str]]) -> list[str]:
    """A problem when the Ray nodes' images (node label, ray_image) carry different Ray releases or Python
    minor versions (deploys/ray_versions.py): images of one release (a CPU and a GPU image) may differ."""
    first = images[0][1] if images else ""
    if all(same_release(first, image) for _, image in images):
        return []
    per_node = "; ".join(
        f"{name}: ray_image={image} is {release_of(image) or 'an image whose tag names no Ray release'}"
        for name, image in images
    )
    return [
        f"inventory: the Ray nodes' images carry different Ray releases ({per_node}); Ray refuses mixed "
        "versions in one cluster: give every node and group a ray_image of one release (and one Python version)"
    ]


def node_label(name: str, group: str | None) -> str:
    """How refusals name a host: with its worker group when it has one ("gpu-1 (group gpu)")."""
    return f"{name} (group {group})" if group else name


def alert_problems(name: str, settings: Settings) -> list[str]:
    """What the monitoring host's alert settings lack for the receivers they route to."""
    routed = {*settings.alert_critical_receivers, *settings.alert_warning_receivers}
    if "email" not in routed:
        return []
    needed = ("alert_smtp_smarthost", "alert_smtp_from", "alert_smtp_to")
    return [
        f"{name}: {key} is empty, and alerts are routed to email (alert_critical_receivers / alert_warning_receivers)"
        for key in needed
        if not getattr(settings, key)
    ]


def check_cluster(
    hosts: Iterable[tuple[str, str, Settings]], monitoring: Iterable[str] = (), groups: dict[str, str] | None = None
) -> None:
    """Checks across hosts, given (name, role, settings) for each, the monitoring group and each worker's
    group (GROUPS, name -> group): all problems at once."""
    hosts = list(hosts)
    groups = groups or {}
    monitoring = list(monitoring)
    problems: list[str] = []
    if len(monitoring) > 1:
        problems.append(
            f"inventory: group 'monitoring' may hold one host; found {len(monitoring)} ({', '.join(monitoring)})"
        )
    monitoring_host = monitoring[0] if monitoring else next((name for name, role, _ in hosts if role == "head"), None)
    problems += [
        problem for name, _, settings in hosts if name == monitoring_host for problem in alert_problems(name, settings)
    ]
    heads = [name for name, role, _ in hosts if role == "head"]
    if len(heads) != 1:
        found = ", ".join(heads) or "none"
        problems.append(f"inventory: group 'head' must hold exactly one host; found {len(heads)} ({found})")
    both = [name for name, role, _ in hosts if role == "head+worker"]
    if both:
        problems.append(f"inventory: {', '.join(both)} is in both 'head' and 'workers'; a host has one role")
    ray_nodes = [(name, role, settings) for name, role, settings in hosts if role != "monitoring"]
    problems += mixed_releases(
        [(node_label(name, groups.get(name)), settings.ray_image) for name, _, settings in ray_nodes]
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
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "" if default in ("", None) else f"`{default!r}`" if not isinstance(default, str) else f"`{default}`"
        listed = f" ({' / '.join(choices(field))})" if choices(field) else ""
        lines.append(f"| `{name}` | {shown} | {field.description}{listed} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
