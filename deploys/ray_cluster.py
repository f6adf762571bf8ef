"""ray-deployment: the Ray head (with Redis for GCS fault tolerance) and the workers, in containers.

Every node runs the same Ray image with host networking, so each node's Ray address is its
cluster address. Secrets reach the containers as read-only mounted 0600 files (deploys/host_secrets.py),
never in their environment or a command line we write; Ray itself then puts the Redis password on
the command lines of the processes it starts (README, "Secrets").
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime

from pyinfra import host, logger
from pyinfra.api import deploy, operation
from pyinfra.context import ctx_state
from pyinfra.operations import files

from deploys.components import RAY_HEAD, RAY_REDIS, RAY_WORKER
from deploys.containers import ContainerSpec, HealthCheck, container, images_present
from deploys.credentials import secret
from deploys.gpus import docker_gpu_args, gpu_problems, offered_gpus
from deploys.host_facts import fact_since_last_change, hosts_changed_by
from deploys.host_problems import report
from deploys.host_scripts import python_script
from deploys.host_secrets import (
    CONFIG_DIR,
    OLD_RAY_ENV_FILES,
    SecretFile,
    SecretOf,
    ray_token_file,
    redis_conf_file,
    redis_password_file,
)
from deploys.monitoring_config import grafana_url, prometheus_url
from deploys.ray_upgrade import old_gcs_state_removed, plan_release_change, ray_stopped, running_ray
from deploys.ray_versions import storage_namespace
from deploys.secret_files import digest, secret_file
from deploys.settings import Settings
from deploys.topology import Cluster, Node
from facts.containers import Containers
from facts.gpus import NvidiaGpus
from facts.ray import RayNodes, RayStatus

REDIS_VOLUME = "raydeploy-redis-data"
# Workers keep retrying a restarted head's GCS this long before giving up (Ray's default is 60 s).
GCS_RECONNECT_TIMEOUT_S = 300


# `ray start` takes the Redis password only as its --redis-password argument. This runs Ray's own CLI
# in a Python that adds that argument from the mounted file (argv[1]) after the process started, so
# the command line the container runs holds the file's path, not the password.
WITH_REDIS_PASSWORD = (
    "import sys; from ray.scripts.scripts import main; "
    "password = open(sys.argv.pop(1)).read().strip(); "
    "sys.argv = ['ray', *sys.argv[1:], '--redis-password=' + password]; "
    "sys.exit(main())"
)


# The head's wait for every node; when it gives up, the runner asks each node why (raydeploy/diagnose.py).
JOIN_WAIT = "Every Ray node alive and serving its metrics"
HEAD_CONTAINER, WORKER_CONTAINER, STOP_FOR_RESTART = (
    "Ray head container",
    "Ray worker container",
    "Stop Ray for the cluster-wide restart",
)
# The operations after which a host's Ray node is a new one, with a new node id.
RAY_NODE_RESTARTS = (HEAD_CONTAINER, WORKER_CONTAINER, STOP_FOR_RESTART)


def ray_environment(settings: Settings, token: SecretFile | None) -> dict[str, str]:
    """The Ray containers' environment: no secret, only where the token file is mounted."""
    environment = {"RAY_gcs_rpc_server_reconnect_timeout_s": str(GCS_RECONNECT_TIMEOUT_S)}
    if token:
        environment |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token.mounted}
    return environment | settings.ray_extra_env


def files_digest(files: list[SecretFile | None]) -> str:
    """A digest of the secret files a container reads at start: a changed secret recreates it."""
    return digest("\0".join(f"{file.path}={file.content}" for file in files if file))


def resource_flags(settings: Settings, gpus_found: int | None = None) -> list[str]:
    """What the node offers Ray: its settings, and on a GPU host the GPUs nvidia-smi found (GPUS_FOUND)
    unless ray_num_gpus or gpu_devices say how many."""
    flags = []
    if settings.ray_num_cpus is not None:
        flags.append(f"--num-cpus={settings.ray_num_cpus}")
    gpus = offered_gpus(settings, gpus_found)
    if gpus is not None:
        flags.append(f"--num-gpus={gpus}")
    if settings.ray_memory_mb is not None:
        flags.append(f"--memory={settings.ray_memory_mb * 1024 * 1024}")
    if settings.ray_resources:
        flags.append(f"--resources={json.dumps(settings.ray_resources, sort_keys=True)}")
    if settings.ray_labels:
        flags.append(f"--labels={','.join(f'{key}={value}' for key, value in sorted(settings.ray_labels.items()))}")
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


def head_spec(
    node: Node,
    cluster: Cluster,
    token: SecretFile | None,
    redis_password: SecretFile | None,
    gpus_found: int | None = None,
) -> ContainerSpec:
    """The head; with REDIS_PASSWORD (Redis enabled) it keeps the GCS tables in Redis; GPUS_FOUND: how many
    GPUs nvidia-smi lists on a GPU host."""
    settings = node.settings
    start = [
        "ray", "start", "--head", "--block", "--disable-usage-stats",
        f"--node-ip-address={settings.cluster_address}",
        f"--port={settings.ray_gcs_port}",
        "--dashboard-host=0.0.0.0",
        f"--dashboard-port={settings.ray_dashboard_port}",
        f"--ray-client-server-port={settings.ray_client_port}",
        f"--metrics-export-port={settings.ray_metrics_export_port}",
        *resource_flags(settings, gpus_found),
    ]  # fmt: skip
    command = tuple(start)
    environment = ray_environment(settings, token) | metrics_environment(cluster)
    if redis_password:
        environment |= {
            "RAY_REDIS_ADDRESS": f"127.0.0.1:{settings.redis_port}",
            # One namespace per Ray release: a new release never reads the old cluster's tables.
            "RAY_external_storage_namespace": storage_namespace(settings.ray_image),
        }
        command = ("python3", "-c", WITH_REDIS_PASSWORD, redis_password.mounted, *start[1:])
    secrets = [file for file in (token, redis_password) if file]
    return ContainerSpec(
        name=RAY_HEAD,
        component=RAY_HEAD,
        image=settings.ray_image,
        command=command,
        restart=settings.container_restart_policy,
        env=tuple(sorted(environment.items())),
        files_digest=files_digest(secrets),
        volumes=(f"{settings.ray_temp_dir}:/tmp/ray", *(file.volume for file in secrets)),
        shm_size=settings.ray_shm_size,
        extra_args=docker_gpu_args(settings),
        # `ray health-check` is a Python CLI that imports Ray: seconds on an idle host, far more on a
        # busy one, where a 5 s timeout marked a healthy head unhealthy.
        health=HealthCheck(
            command=f"ray health-check --address 127.0.0.1:{settings.ray_gcs_port} && pgrep -x raylet >/dev/null",
            timeout="30s",
            start_period="60s",
        ),
    )


def worker_spec(node: Node, head: Node, token: SecretFile | None, gpus_found: int | None = None) -> ContainerSpec:
    """A worker of its group's settings, joined to HEAD; GPUS_FOUND: how many GPUs nvidia-smi lists on a GPU host."""
    settings = node.settings
    gcs = f"{head.settings.cluster_address}:{head.settings.ray_gcs_port}"
    start = [
        "ray", "start", "--block", "--disable-usage-stats",
        f"--address={gcs}",
        f"--node-ip-address={settings.cluster_address}",
        f"--metrics-export-port={settings.ray_metrics_export_port}",
        *resource_flags(settings, gpus_found),
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
        env=tuple(sorted(ray_environment(settings, token).items())),
        files_digest=files_digest([token]),
        volumes=(token.volume,) if token else (),
        shm_size=settings.ray_shm_size,
        extra_args=docker_gpu_args(settings),
        health=HealthCheck(command="pgrep -x raylet >/dev/null", start_period="120s"),
    )


# Redis's health check authenticates with the password from its config, read by root (docker exec's
# user) into redis-cli's environment: neither the check's text nor any command line holds it.
REDIS_AUTH_FROM_CONF = "REDISCLI_AUTH=\"$(sed -n 's/^requirepass //p' /usr/local/etc/redis/redis.conf)\""


def redis_spec(settings: Settings, conf: SecretFile) -> ContainerSpec:
    return ContainerSpec(
        name=RAY_REDIS,
        component=RAY_REDIS,
        image=settings.redis_image,
        command=("redis-server", "/usr/local/etc/redis/redis.conf"),
        restart=settings.container_restart_policy,
        files_digest=files_digest([conf]),
        volumes=(f"{conf.path}:/usr/local/etc/redis/redis.conf:ro", f"{REDIS_VOLUME}:/data"),
        health=HealthCheck(
            command=f"{REDIS_AUTH_FROM_CONF} redis-cli -p {settings.redis_port} ping | grep -q PONG",
            interval="5s",
            start_period="10s",
        ),
    )


def ray_images(node: Node) -> list[str]:
    """The images NODE runs for Ray: Ray itself, and Redis on a head that keeps its GCS there."""
    settings = node.settings
    with_redis = node.role == "head" and settings.redis_enabled
    return [settings.ray_image, settings.redis_image] if with_redis else [settings.ray_image]


def ray_secret_files(node: Node, secret_of: SecretOf) -> dict[str, SecretFile | None]:
    """The secret files NODE's Ray containers read, by what they hold ("token", "redis-password",
    "redis-conf"), None where a secret is not used."""
    settings = node.settings
    files = {"token": ray_token_file(settings, secret_of)}
    if node.role == "head" and settings.redis_enabled:
        files |= {
            "redis-password": redis_password_file(settings, secret_of),
            "redis-conf": redis_conf_file(settings, secret_of),
        }
    return files


def put_secret_files(files: list[SecretFile | None]) -> list:
    """Each of FILES on the host, 0600 and owned by its reader; the operations, to see what changed."""
    return [
        secret_file(name=file.name, dest=file.path, content=file.content, owner=file.owner) for file in files if file
    ]


def old_env_files_absent(paths: tuple[str, ...]) -> None:
    """Env files an earlier version wrote secrets into: gone (their containers are recreated without them)."""
    for path in paths:
        files.file(name=f"No {path} (secrets now in files)", path=path, present=False)


@operation()
def ray_nodes_alive(
    expected: dict[str, tuple[str, int]],
    dashboard_port: int,
    timeout_s: int,
    before: dict[str, str] | None = None,
    stale: dict[str, str] | None = None,
):
    """
    Wait until the head reports every EXPECTED node alive, each node's metrics port answers and
    `ray status` lists every node; fail after TIMEOUT_S naming what is not ready.

    + expected: cluster address -> (node name, its metrics export port)
    + dashboard_port: the head's dashboard port
    + timeout_s: how long to wait
    + before: cluster address -> node id, as the head listed them before this run changed anything
    + stale: cluster address -> id of a node listed there that is already gone (stale_node_ids)

    A node whose Ray container this run recreated, or whose listed node is STALE, counts only with a
    new node id: the head lists a killed node ALIVE until its health checks miss. The wait runs
    deploys/scripts/wait_ray_nodes.py on the head host.

    .. code:: python

        ray_nodes_alive(
            name="Every Ray node alive",
            expected={"10.0.0.10": ("head", 44217), "10.0.0.11": ("worker-1", 44217)},
            dashboard_port=8265,
            timeout_s=300,
            before={"10.0.0.10": "76b0d466f3f2...", "10.0.0.11": "b7fbe6bb64a4..."},
        )
    """
    nodes = host.get_fact(RayNodes, container=RAY_HEAD, port=dashboard_port)
    listed = host.get_fact(RayStatus, container=RAY_HEAD, port=dashboard_port) or set()
    recreated = hosts_changed_by(RAY_NODE_RESTARTS)
    replaced = {
        address: (before or {})[address]
        for address, (name, _) in expected.items()
        if name in recreated and address in (before or {})
    } | (stale or {})

    def ready(address: str) -> bool:
        node_id = nodes.get(address, {}).get("node_id")
        return node_id in listed and node_id != replaced.get(address)

    missing = [name for address, (name, _) in expected.items() if not ready(address)]
    if not missing and listed == {node["node_id"] for node in nodes.values()}:
        host.noop(f"all {len(expected)} Ray nodes alive and listed by `ray status`")
        return
    host.log(f"waiting up to {timeout_s} s for Ray nodes: {', '.join(missing) or 'ray status'}", logger.info)
    arguments = [json.dumps(expected), str(dashboard_port), str(timeout_s), json.dumps(replaced)]
    yield python_script(
        "deploys/scripts/wait_ray_nodes.py", ("facts/ray_answers.py", "deploys/scripts/polling.py"), arguments
    )


def stale_node_ids(cluster: Cluster, listed: dict[str, dict]) -> dict[str, str]:
    """Cluster address -> id of the node the head LISTED there (RayNodes) that started before the Ray
    container on that host did, read on each host now: a container restarted outside raydeploy (by hand,
    by Docker after a crash) leaves its old node ALIVE in the head's table until its health checks miss.
    Both times come from that host's own clock (the raylet stamps its node's start). Each host's containers
    are read once for this and its own container operations (fact_since_last_change)."""
    stale = {}
    for member in cluster.nodes:
        node = listed.get(member.settings.cluster_address)
        name = RAY_HEAD if member.role == "head" else RAY_WORKER
        on = ctx_state.get().inventory.get_host(member.name)
        found = (fact_since_last_change(Containers, on=on) or {}).get(name)
        started = docker_time_ms(found["started_at"]) if found else None
        if node and started and node.get("start_time_ms", 0) < started - 1000:
            stale[member.settings.cluster_address] = node["node_id"]
    return stale


def docker_time_ms(stamp: str) -> int | None:
    """Docker's StartedAt (RFC 3339, nanoseconds, UTC) in ms since the epoch; None for "never" or no time.

    >>> docker_time_ms("2026-11-30T20:46:35.123456789Z"), docker_time_ms("0001-01-01T00:00:00Z")
    (1796071595123, None)
    """
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", stamp or "")
    if not match or stamp.startswith("0001-"):
        return None
    seconds = datetime.fromisoformat(match[1]).replace(tzinfo=UTC).timestamp()
    return int(seconds * 1000 + float(match[2] or 0) * 1000)


def checked_gpus(node: Node) -> int | None:
    """How many GPUs nvidia-smi lists on NODE (None on a host not marked gpu: nvidia, never asked); every
    host's GPU problems are reported together and stop the run before anything changes."""
    settings = node.settings
    asks = settings.gpu == "nvidia" or bool(settings.ray_num_gpus) or bool(settings.gpu_devices)
    found = host.get_fact(NvidiaGpus) if asks and node.role != "monitoring" else None
    # Every host reports (an empty list too): the report is complete only once every host has.
    report("ray-deployment GPU check", gpu_problems(node.name, node.group, settings, found) if found else [])
    return len(found["gpus"]) if found else None


@deploy("Ray cluster")
def ray_cluster(node: Node, cluster: Cluster) -> None:
    """This node's part of the Ray cluster; on the head, finally wait for every node.

    Each step common to the head and the workers is called from one line, so that pyinfra runs it
    as one operation on every node at once: above all the image pulls, the longest step of all.

    + node: the node being deployed
    + cluster: the whole cluster
    """
    gpus_found = checked_gpus(node)  # before any operation: a GPU count the host lacks stops the deploy
    if node.role == "monitoring":
        host.log("ray-deployment: no Ray on a monitoring-only host", logger.info)
        return
    settings, is_head = node.settings, node.role == "head"
    restarting = plan_release_change(node, cluster)  # before any operation: it may stop the deploy
    old_namespace = (running_ray(node) or {}).get("storage_namespace", "") if is_head else ""
    # As the head lists them now, before this run changes anything: which node ids are the old ones.
    ray_nodes_before = host.get_fact(RayNodes, container=RAY_HEAD, port=settings.ray_dashboard_port) if is_head else {}
    files.directory(name=f"{CONFIG_DIR} (private)", path=CONFIG_DIR, mode="700", user="root", group="root")
    if is_head:
        # No mode: Ray makes it 0777 itself at every start.
        files.directory(name=f"{settings.ray_temp_dir} for Ray's session files", path=settings.ray_temp_dir)
    images_present(name="Ray images", images=ray_images(node))
    secrets = ray_secret_files(node, lambda name: secret(settings.state_dir, name))
    put_secret_files(list(secrets.values()))
    if secrets.get("redis-conf"):
        container(name="Redis for GCS fault tolerance", spec=redis_spec(settings, secrets["redis-conf"]))
    if is_head:
        spec = head_spec(node, cluster, secrets["token"], secrets.get("redis-password"), gpus_found)
    else:
        spec = worker_spec(node, cluster.head, secrets["token"], gpus_found)
    if restarting:  # every node at once, after every pull, before any container is recreated
        ray_stopped(name=STOP_FOR_RESTART, container_name=spec.name)
    # Two lines, two operations (pyinfra names an operation once for every host): the head first, then
    # the workers, which wait for its GCS before they join.
    if is_head:
        container(name=HEAD_CONTAINER, spec=spec)
    else:
        container(name=WORKER_CONTAINER, spec=spec)
    old_env_files_absent(OLD_RAY_ENV_FILES)
    if is_head:  # after the worker containers: pyinfra orders operations by their line
        ray_nodes_alive(
            name=JOIN_WAIT,
            before={address: node["node_id"] for address, node in ray_nodes_before.items()},
            stale=stale_node_ids(cluster, ray_nodes_before),
            expected={
                member.settings.cluster_address: (member.name, member.settings.ray_metrics_export_port)
                for member in cluster.nodes
            },
            dashboard_port=settings.ray_dashboard_port,
            timeout_s=settings.ray_join_timeout_s,
        )
    new_namespace = dict(spec.env).get("RAY_external_storage_namespace", "")
    if is_head and old_namespace and new_namespace and old_namespace != new_namespace:
        old_gcs_state_removed(
            name=f"Remove the old cluster's GCS state from Redis (namespace {old_namespace})",
            namespace=old_namespace,
            redis_port=settings.redis_port,
            password_file=secrets["redis-password"].mounted,
        )
