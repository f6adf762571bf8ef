"""monitoring-deployment: node-exporter and cAdvisor on every host, Prometheus, Grafana and Alertmanager on the
monitoring host (Alertmanager: deploys/alertmanager.py).

Prometheus scrapes itself, every node-exporter and cAdvisor, and every Ray node through the Ray
head's service-discovery endpoint; its config and alert rules come from templates/ (see
deploys/monitoring_config.py). A change to them reloads Prometheus (POST /-/reload), it does not
restart it; its data lives in a volume. Grafana gets its datasource and dashboards from provisioning
files and its admin password, generated once, from a mounted 0600 file owned by its user. A component turned off in the
inventory is removed if it ran, and reported as off, with the inventory's reason.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import deploy, operation
from pyinfra.operations import files

from deploys.alertmanager import alertmanager
from deploys.components import (
    ALERTMANAGER,
    CADVISOR,
    DCGM_EXPORTER,
    GRAFANA,
    MONITORING_HOST_COMPONENTS,
    NODE_EXPORTER,
    PROMETHEUS,
    monitoring_components,
)
from deploys.containers import (
    ContainerSpec,
    HealthCheck,
    container,
    container_absent,
    http_ready,
    images_present,
    wget_command,
)
from deploys.credentials import secret
from deploys.host_scripts import python_script
from deploys.host_secrets import (
    CONFIG_DIR,
    OLD_GRAFANA_ENV_FILE,
    SecretFile,
    grafana_password_file,
    prometheus_token_file,
)
from deploys.monitoring_config import (
    alert_rules,
    dashboards,
    grafana_dashboard_providers,
    grafana_datasources,
    prometheus_config,
)
from deploys.ray_cluster import files_digest, old_env_files_absent, put_secret_files
from deploys.secret_files import digest
from deploys.settings import Settings
from deploys.topology import Cluster, Node
from facts.prometheus import PrometheusTargets

PROMETHEUS_DIR = f"{CONFIG_DIR}/prometheus"
PROMETHEUS_VOLUME = "raydeploy-prometheus-data"
GRAFANA_DIR = f"{CONFIG_DIR}/grafana"
GRAFANA_VOLUME = "raydeploy-grafana-data"


def node_exporter_spec(settings: Settings) -> ContainerSpec:
    port = settings.node_exporter_port
    return ContainerSpec(
        name=NODE_EXPORTER,
        component=NODE_EXPORTER,
        image=settings.node_exporter_image,
        command=(
            "--path.rootfs=/host",
            f"--web.listen-address=:{port}",
            "--collector.filesystem.mount-points-exclude=^/(dev|proc|run|sys|var/lib/docker/.+)($|/)",
        ),
        restart=settings.container_restart_policy,
        volumes=("/:/host:ro,rslave",),
        extra_args=("--pid=host",),
        health=HealthCheck(command=wget_command(port, "/metrics"), start_period="10s"),
    )


def cadvisor_spec(settings: Settings) -> ContainerSpec:
    port = settings.cadvisor_port
    docker_root = settings.docker_data_root or "/var/lib/docker"
    return ContainerSpec(
        name=CADVISOR,
        component=CADVISOR,
        image=settings.cadvisor_image,
        command=(f"--port={port}", "--docker_only=true", "--housekeeping_interval=10s"),
        restart=settings.container_restart_policy,
        volumes=(
            "/:/rootfs:ro",
            "/var/run:/var/run:ro",
            "/sys:/sys:ro",
            f"{docker_root}:/var/lib/docker:ro",
            "/dev/disk:/dev/disk:ro",
        ),
        # cAdvisor's documented way to run: it reads every cgroup and the kernel log.
        extra_args=("--privileged", "--device=/dev/kmsg"),
        health=HealthCheck(command=wget_command(port, "/healthz"), start_period="30s"),
    )


def dcgm_exporter_spec(settings: Settings) -> ContainerSpec:
    """NVIDIA's DCGM exporter, run as NVIDIA documents it (all GPUs, host network, SYS_ADMIN for DCGM's
    profiling metrics): GPU health that Ray's own GPU metrics lack (temperature, power, ECC and XID
    errors, clocks, NVLink), per GPU and whoever uses it."""
    port = settings.dcgm_exporter_port
    return ContainerSpec(
        name=DCGM_EXPORTER,
        component=DCGM_EXPORTER,
        image=settings.dcgm_exporter_image,
        env=(("DCGM_EXPORTER_LISTEN", f":{port}"),),
        restart=settings.container_restart_policy,
        extra_args=("--runtime=nvidia", "--gpus=all", "--cap-add=SYS_ADMIN"),
        # Its Ubuntu image has bash but no promise of curl or wget: the port answering is the check.
        health=HealthCheck(command=f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'", start_period="30s"),
    )


def prometheus_spec(settings: Settings) -> ContainerSpec:
    port = settings.prometheus_port
    flags = [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        f"--storage.tsdb.retention.time={settings.prometheus_retention_time}",
        f"--web.listen-address=:{port}",
        # POST /-/reload: a config change is loaded in place, and the POST answers when it is.
        "--web.enable-lifecycle",
    ]
    if settings.prometheus_retention_size:
        flags.append(f"--storage.tsdb.retention.size={settings.prometheus_retention_size}")
    # Its config files are not part of the spec: a change to them reloads Prometheus instead.
    return ContainerSpec(
        name=PROMETHEUS,
        component=PROMETHEUS,
        image=settings.prometheus_image,
        command=tuple(flags),
        restart=settings.container_restart_policy,
        volumes=(f"{PROMETHEUS_DIR}:/etc/prometheus:ro", f"{PROMETHEUS_VOLUME}:/prometheus"),
        health=HealthCheck(command=wget_command(port, "/-/ready"), interval="5s", start_period="30s"),
    )


def grafana_spec(node: Node, cluster: Cluster, password: SecretFile, provisioning: str) -> ContainerSpec:
    settings = node.settings
    port = settings.grafana_port
    environment = {
        "GF_SERVER_HTTP_PORT": str(port),
        "GF_SECURITY_ADMIN_USER": "admin",
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        # The Ray dashboard embeds Grafana's panels in iframes.
        "GF_SECURITY_ALLOW_EMBEDDING": "true",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        # Grafana reads any setting from the file a `__FILE` variable names.
        "GF_SECURITY_ADMIN_PASSWORD__FILE": password.mounted,
    }
    volumes = [
        password.volume,
        f"{GRAFANA_DIR}/provisioning:/etc/grafana/provisioning:ro",
        f"{GRAFANA_DIR}/dashboards:/var/lib/grafana/dashboards/raydeploy:ro",
        f"{GRAFANA_VOLUME}:/var/lib/grafana",
    ]
    if node.name == cluster.head.name:
        volumes.append(f"{cluster.head.settings.ray_temp_dir}:/tmp/ray:ro")
    return ContainerSpec(
        name=GRAFANA,
        component=GRAFANA,
        image=settings.grafana_image,
        restart=settings.container_restart_policy,
        env=tuple(sorted(environment.items())),
        # Grafana reads datasources and its password at start only (dashboards it rescans by itself).
        files_digest=digest(provisioning + files_digest([password])),
        volumes=tuple(volumes),
        health=HealthCheck(command=wget_command(port, "/api/health"), start_period="60s"),
    )


@operation()
def prometheus_reloaded(container_name: str, port: int, wanted: list[tuple[str, str]]):
    """
    Reload Prometheus's config through its lifecycle API, then wait until it scrapes WANTED again.

    + container_name: the Prometheus container (started with --web.enable-lifecycle)
    + port: Prometheus's port
    + wanted: (job, node) targets that must be up again (a reload rediscovers them from scratch)

    ``POST /-/reload`` answers once the reload is done: 200 when the new config is loaded, 500 with
    Prometheus's reason when it refused it and keeps the old one.
    """
    reload = (
        f"docker exec {shlex.quote(container_name)} wget -q -O - --post-data= http://127.0.0.1:{int(port)}/-/reload"
    )
    failed = f"{host.name}: Prometheus refused its new config and keeps the old one; see: docker logs {container_name}"
    yield f"{reload} || {{ echo {shlex.quote(failed)} >&2; exit 1; }}"
    yield _wait_targets_command(wanted, port, 120) + ' "$(date +%s)"'


@operation()
def prometheus_targets_up(wanted: list[tuple[str, str]], port: int, settle_s: int = 0, timeout_s: int = 120):
    """
    Wait until Prometheus scrapes every WANTED (job, node) target, and every other active target,
    successfully; fail naming the missing ones.

    + wanted: (job, node label) pairs, e.g. ("ray", "worker-1")
    + port: Prometheus's port
    + settle_s: a target found down is looked at again this much later before it counts (a scrape interval)
    + timeout_s: how long to wait (Ray's service discovery and the first scrape take a few seconds)
    """
    targets = host.get_fact(PrometheusTargets, container=PROMETHEUS, port=port, settle_s=settle_s)
    missing = [(job, node) for job, node in wanted if node not in targets["up"].get(job, [])]
    if not missing and not targets["down"]:
        host.noop(f"Prometheus scrapes all {len(wanted)} expected targets")
        return
    yield _wait_targets_command(wanted, port, timeout_s)


PROMETHEUS_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400}


def duration_s(text: str) -> float:
    """A Prometheus duration (the settings checked its form: 1m30s, 15s, 500ms) in seconds.

    >>> duration_s("1m30s"), duration_s("500ms")
    (90.0, 0.5)
    """
    return float(
        sum(int(count) * PROMETHEUS_UNITS[unit] for count, unit in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text))
    )


def _wait_targets_command(wanted: list[tuple[str, str]], port: int, timeout_s: int) -> str:
    arguments = [json.dumps(wanted), str(port), str(timeout_s)]
    return python_script(
        "deploys/scripts/wait_prometheus_targets.py",
        ("facts/prometheus_answers.py", "deploys/scripts/polling.py"),
        arguments,
    )


def _secret_of(settings: Settings):
    return lambda name: secret(settings.state_dir, name)


def _report_off(component: str, node: Node) -> None:
    reason = node.settings.monitoring_off_reason or f"{component.replace('-', '_')}_enabled is false in the inventory"
    host.log(f"monitoring-deployment: {component} is off: {reason}", logger.warning)


def _put(dest: str, text: str, mode: str = "644") -> object:
    return files.put(name=f"{dest}", src=StringIO(text), dest=dest, user="root", group="root", mode=mode)


@deploy("Prometheus")
def prometheus(node: Node, cluster: Cluster) -> None:
    """Prometheus with the cluster's scrape config and alert rules; reloaded when only they changed.

    + node: the monitoring host
    + cluster: the whole cluster
    """
    settings = node.settings
    files.directory(name=f"{PROMETHEUS_DIR}", path=PROMETHEUS_DIR, mode="755", user="root", group="root")
    files.directory(name=f"{PROMETHEUS_DIR}/rules", path=f"{PROMETHEUS_DIR}/rules", mode="755")
    changed = [
        _put(f"{PROMETHEUS_DIR}/prometheus.yml", prometheus_config(cluster)),
        _put(f"{PROMETHEUS_DIR}/rules/raydeploy.yml", alert_rules(cluster)),
    ]
    # Prometheus reads the token file at every scrape of Ray's service discovery: a change reloads it.
    changed += put_secret_files([prometheus_token_file(cluster.head.settings, settings, _secret_of(settings))])
    started = container(name="Prometheus container", spec=prometheus_spec(settings))
    wanted = [("ray", member.name) for member in cluster.nodes]
    wanted += [("node", member.name) for member in cluster.hosts if member.settings.node_exporter_enabled]
    wanted += [
        ("dcgm", member.name)
        for member in cluster.hosts
        if member.settings.gpu == "nvidia" and member.settings.dcgm_exporter_enabled
    ]
    wanted += [("cadvisor", member.name) for member in cluster.hosts if member.settings.cadvisor_enabled]
    if not started.will_change and any(op.will_change for op in changed):
        prometheus_reloaded(
            name="Reload Prometheus (config changed)",
            container_name=PROMETHEUS,
            port=settings.prometheus_port,
            wanted=wanted,
        )
    elif started.will_change:
        http_ready(name="Prometheus ready", container_name=PROMETHEUS, port=settings.prometheus_port, path="/-/ready")
    prometheus_targets_up(
        name="Prometheus scrapes every node and Ray node",
        wanted=wanted,
        port=settings.prometheus_port,
        settle_s=math.ceil(duration_s(settings.prometheus_scrape_interval)) + 2,
    )


@deploy("Grafana")
def grafana(node: Node, cluster: Cluster) -> None:
    """Grafana with the Prometheus datasource and the dashboards provisioned, anonymous access off.

    + node: the monitoring host
    + cluster: the whole cluster
    """
    settings = node.settings
    for directory in ("", "/provisioning", "/provisioning/datasources", "/provisioning/dashboards", "/dashboards"):
        files.directory(name=f"{GRAFANA_DIR}{directory}", path=f"{GRAFANA_DIR}{directory}", mode="755")
    datasources, providers = grafana_datasources(cluster), grafana_dashboard_providers(cluster)
    _put(f"{GRAFANA_DIR}/provisioning/datasources/raydeploy.yml", datasources)
    _put(f"{GRAFANA_DIR}/provisioning/dashboards/raydeploy.yml", providers)
    for name, text in dashboards().items():
        _put(f"{GRAFANA_DIR}/dashboards/{name}", text)
    password = grafana_password_file(settings, _secret_of(settings))
    put_secret_files([password])
    container(name="Grafana container", spec=grafana_spec(node, cluster, password, datasources + providers))
    old_env_files_absent((OLD_GRAFANA_ENV_FILE,))


def monitoring_images(settings: Settings, components: dict[str, bool]) -> list[str]:
    """The images of the components this host runs."""
    images = {
        NODE_EXPORTER: settings.node_exporter_image,
        CADVISOR: settings.cadvisor_image,
        PROMETHEUS: settings.prometheus_image,
        GRAFANA: settings.grafana_image,
        DCGM_EXPORTER: settings.dcgm_exporter_image,
        ALERTMANAGER: settings.alertmanager_image,
    }
    return [images[component] for component, enabled in components.items() if enabled]


@deploy("Monitoring stack")
def monitoring_stack(node: Node, cluster: Cluster) -> None:
    """This host's part of the monitoring stack; components turned off are removed and reported.

    + node: the node being deployed
    + cluster: the whole cluster
    """
    settings = node.settings
    files.directory(name=f"{CONFIG_DIR} (private)", path=CONFIG_DIR, mode="700", user="root", group="root")
    components = monitoring_components(node, cluster)
    for component, enabled in components.items():
        if not enabled:
            _report_off(component, node)
            container_absent(name=f"No {component} container (off)", container_name=component, component=component)
    # One operation for every host: all pull at once.
    images_present(name="Monitoring images", images=monitoring_images(settings, components))
    if components[NODE_EXPORTER]:
        container(name="node-exporter container", spec=node_exporter_spec(settings))
    if components[CADVISOR]:
        container(name="cAdvisor container", spec=cadvisor_spec(settings))
    if components.get(DCGM_EXPORTER):
        container(name="DCGM exporter container (GPU metrics)", spec=dcgm_exporter_spec(settings))
    # Before Prometheus, which sends it alerts as soon as its new config names it.
    if components.get(ALERTMANAGER):
        alertmanager(node, cluster)
    if components.get(PROMETHEUS):
        prometheus(node, cluster)
    if components.get(GRAFANA):
        grafana(node, cluster)
    for component in MONITORING_HOST_COMPONENTS:
        if component not in components:  # not the monitoring host (any more)
            container_absent(
                name=f"No {component} container (not the monitoring host)",
                container_name=component,
                component=component,
            )
