"""ray-deployment: the Ray head (with Redis for GCS fault tolerance) and the workers, in containers.

Every node runs the same Ray image with host networking, so each node's Ray address is its
cluster address. Secrets reach the containers through 0600 env files, never a command line we
write (Ray itself passes the Redis password to its GCS process on its command line).
"""

from __future__ import annotations

import json
import shlex

from pyinfra import host, logger
from pyinfra.api import deploy, operation
from pyinfra.operations import files

from deploys.components import RAY_HEAD, RAY_REDIS, RAY_WORKER
from deploys.containers import ContainerSpec, HealthCheck, container, images_present
from deploys.credentials import secret
from deploys.host_scripts import python_script
from deploys.monitoring_config import grafana_url, prometheus_url
from deploys.secret_files import digest, env_file_text, secret_file
from deploys.settings import Settings
from deploys.topology import Cluster, Node
from facts.ray import RayNodes, RayStatus

CONFIG_DIR = "/etc/raydeploy"
RAY_ENV_FILE = f"{CONFIG_DIR}/ray.env"
REDIS_CONF = f"{CONFIG_DIR}/redis.conf"
REDIS_ENV_FILE = f"{CONFIG_DIR}/redis.env"
REDIS_VOLUME = "raydeploy-redis-data"
# Workers keep retrying a restarted head's GCS this long before giving up (Ray's default is 60 s).
GCS_RECONNECT_TIMEOUT_S = 300


def ray_secrets(settings: Settings) -> dict[str, str]:
    """The secrets every Ray container gets in its env file."""
    values = {}
    if settings.ray_auth_mode == "token":
        values["RAY_AUTH_TOKEN"] = secret(settings.state_dir, "ray-auth-token")
    return values


def ray_environment(settings: Settings) -> dict[str, str]:
    environment = {"RAY_gcs_rpc_server_reconnect_timeout_s": str(GCS_RECONNECT_TIMEOUT_S)}
    if settings.ray_auth_mode == "token":
        environment["RAY_AUTH_MODE"] = "token"
    return environment | settings.ray_extra_env


def resource_flags(settings: Settings) -> list[str]:
    flags = []
    if settings.ray_num_cpus is not None:
        flags.append(f"--num-cpus={settings.ray_num_cpus}")
    if settings.ray_num_gpus is not None:
        flags.append(f"--num-gpus={settings.ray_num_gpus}")
    if settings.ray_resources:
        flags.append(f"--resources={json.dumps(settings.ray_resources, sort_keys=True)}")
    if settings.ray_object_store_memory_mb is not None:
        flags.append(f"--object-store-memory={settings.ray_object_store_memory_mb * 1024 * 1024}")
    return flags


def metrics_environment(cluster: Cluster) -> dict[str, str]:
    """Where the Ray dashboard finds Prometheus and Grafana, for its metrics charts (when they run)."""
    monitor = cluster.monitoring[0].settings
    environment = {}
    if monitor.prometheus_enabled:
        environment["RAY_PROMETHEUS_HOST"] = prometheus_url(cluster)
        environment["RAY_PROMETHEUS_NAME"] = "Prometheus"
    if monitor.grafana_enabled:
        environment["RAY_GRAFANA_HOST"] = grafana_url(cluster)
        environment["RAY_GRAFANA_IFRAME_HOST"] = monitor.grafana_iframe_host or grafana_url(cluster)
    return environment


def head_spec(node: Node, cluster: Cluster, env_text: str) -> ContainerSpec:
    settings = node.settings
    start = [
        "ray", "start", "--head", "--block", "--disable-usage-stats",
        f"--node-ip-address={settings.cluster_address}",
        f"--port={settings.ray_gcs_port}",
        "--dashboard-host=0.0.0.0",
        f"--dashboard-port={settings.ray_dashboard_port}",
        f"--ray-client-server-port={settings.ray_client_port}",
        f"--metrics-export-port={settings.ray_metrics_export_port}",
        *resource_flags(settings),
    ]  # fmt: skip
    script = " ".join(shlex.quote(arg) for arg in start)
    environment = ray_environment(settings) | metrics_environment(cluster)
    if settings.redis_enabled:
        environment |= {
            "RAY_REDIS_ADDRESS": f"127.0.0.1:{settings.redis_port}",
            "RAY_external_storage_namespace": "raydeploy",
        }
        script += ' --redis-password="$REDIS_PASSWORD"'
    return ContainerSpec(
        name=RAY_HEAD,
        component=RAY_HEAD,
        image=settings.ray_image,
        command=("bash", "-c", f"exec {script}"),
        restart=settings.container_restart_policy,
        env=tuple(sorted(environment.items())),
        env_file=RAY_ENV_FILE,
        env_file_digest=digest(env_text),
        volumes=(f"{settings.ray_temp_dir}:/tmp/ray",),
        shm_size=settings.ray_shm_size,
        health=HealthCheck(
            command=f"ray health-check --address 127.0.0.1:{settings.ray_gcs_port} && pgrep -x raylet >/dev/null",
            start_period="60s",
        ),
    )


def worker_spec(node: Node, head: Node, env_text: str) -> ContainerSpec:
    settings = node.settings
    gcs = f"{head.settings.cluster_address}:{head.settings.ray_gcs_port}"
    start = [
        "ray", "start", "--block", "--disable-usage-stats",
        f"--address={gcs}",
        f"--node-ip-address={settings.cluster_address}",
        f"--metrics-export-port={settings.ray_metrics_export_port}",
        *resource_flags(settings),
    ]  # fmt: skip
    # Join only once the head's GCS answers, so a worker started first does not give up.
    script = (
        f"until ray health-check --address {shlex.quote(gcs)} >/dev/null 2>&1; do sleep 2; done; "
        f"exec {' '.join(shlex.quote(arg) for arg in start)}"
    )
    return ContainerSpec(
        name=RAY_WORKER,
        component=RAY_WORKER,
        image=settings.ray_image,
        command=("bash", "-c", script),
        restart=settings.container_restart_policy,
        env=tuple(sorted(ray_environment(settings).items())),
        env_file=RAY_ENV_FILE,
        env_file_digest=digest(env_text),
        shm_size=settings.ray_shm_size,
        health=HealthCheck(command="pgrep -x raylet >/dev/null", start_period="120s"),
    )


def redis_spec(settings: Settings, conf_text: str, env_text: str) -> ContainerSpec:
    return ContainerSpec(
        name=RAY_REDIS,
        component=RAY_REDIS,
        image=settings.redis_image,
        command=("redis-server", "/usr/local/etc/redis/redis.conf"),
        restart=settings.container_restart_policy,
        env_file=REDIS_ENV_FILE,
        env_file_digest=digest(conf_text + env_text),
        volumes=(f"{REDIS_CONF}:/usr/local/etc/redis/redis.conf:ro", f"{REDIS_VOLUME}:/data"),
        health=HealthCheck(
            command=f"redis-cli -p {settings.redis_port} ping | grep -q PONG", interval="5s", start_period="10s"
        ),
    )


def redis_conf_text(settings: Settings, password: str) -> str:
    # Loopback only: the head's GCS is Redis's one client.
    return (
        f"port {settings.redis_port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n"
        "appendonly yes\nappendfsync everysec\ndir /data\n"
    )


def ray_images(node: Node) -> list[str]:
    """The images NODE runs for Ray: Ray itself, and Redis on a head that keeps its GCS there."""
    settings = node.settings
    with_redis = node.role == "head" and settings.redis_enabled
    return [settings.ray_image, settings.redis_image] if with_redis else [settings.ray_image]


def redis(settings: Settings, env: dict[str, str]) -> None:
    """Redis for the head's GCS, its password added to the head's ENV.

    + settings: the head's settings
    + env: the Ray head's environment; gets REDIS_PASSWORD
    """
    password = secret(settings.state_dir, "redis-password")
    env["REDIS_PASSWORD"] = password
    conf_text = redis_conf_text(settings, password)
    redis_env = env_file_text({"REDISCLI_AUTH": password})
    secret_file(name=f"{REDIS_CONF} (holds the password)", dest=REDIS_CONF, content=conf_text, mode="644")
    secret_file(name=f"{REDIS_ENV_FILE}", dest=REDIS_ENV_FILE, content=redis_env)
    container(name="Redis for GCS fault tolerance", spec=redis_spec(settings, conf_text, redis_env))


@operation()
def ray_nodes_alive(expected: dict[str, tuple[str, int]], dashboard_port: int, timeout_s: int):
    """
    Wait until the head reports every EXPECTED node alive, each node's metrics port answers and
    `ray status` lists every node; fail after TIMEOUT_S naming what is not ready.

    + expected: cluster address -> (node name, its metrics export port)
    + dashboard_port: the head's dashboard port
    + timeout_s: how long to wait

    The wait runs deploys/scripts/wait_ray_nodes.py on the head host.
    """
    nodes = host.get_fact(RayNodes, container=RAY_HEAD, port=dashboard_port)
    listed = host.get_fact(RayStatus, container=RAY_HEAD, port=dashboard_port) or set()
    missing = [
        name
        for address, (name, _) in expected.items()
        if address not in nodes or nodes[address]["node_id"] not in listed
    ]
    if not missing and listed == {node["node_id"] for node in nodes.values()}:
        host.noop(f"all {len(expected)} Ray nodes alive and listed by `ray status`")
        return
    host.log(f"waiting up to {timeout_s} s for Ray nodes: {', '.join(missing) or 'ray status'}", logger.info)
    arguments = [json.dumps(expected), str(dashboard_port), str(timeout_s)]
    yield python_script(
        "deploys/scripts/wait_ray_nodes.py", ("facts/ray_answers.py", "deploys/scripts/polling.py"), arguments
    )


@deploy("Ray cluster")
def ray_cluster(node: Node, cluster: Cluster) -> None:
    """This node's part of the Ray cluster; on the head, finally wait for every node.

    Each step common to the head and the workers is called from one line, so that pyinfra runs it
    as one operation on every node at once: above all the image pulls, the longest step of all.

    + node: the node being deployed
    + cluster: the whole cluster
    """
    if node.role == "monitoring":
        host.log("ray-deployment: no Ray on a monitoring-only host", logger.info)
        return
    settings, is_head = node.settings, node.role == "head"
    files.directory(name=f"{CONFIG_DIR} (private)", path=CONFIG_DIR, mode="700", user="root", group="root")
    if is_head:
        # No mode: Ray makes it 0777 itself at every start.
        files.directory(name=f"{settings.ray_temp_dir} for Ray's session files", path=settings.ray_temp_dir)
    images_present(name="Ray images", images=ray_images(node))
    env = ray_secrets(settings)
    if is_head and settings.redis_enabled:
        redis(settings, env)
    env_text = env_file_text(env)
    secret_file(name=f"{RAY_ENV_FILE}", dest=RAY_ENV_FILE, content=env_text)
    if is_head:
        container(name="Ray head container", spec=head_spec(node, cluster, env_text))
    else:
        container(name="Ray worker container", spec=worker_spec(node, cluster.head, env_text))
    if is_head:  # after the worker containers: pyinfra orders operations by their line
        ray_nodes_alive(
            name="Every Ray node alive and serving its metrics",
            expected={
                member.settings.cluster_address: (member.name, member.settings.ray_metrics_export_port)
                for member in cluster.nodes
            },
            dashboard_port=settings.ray_dashboard_port,
            timeout_s=settings.ray_join_timeout_s,
        )
