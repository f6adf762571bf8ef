"""prerequisites-check: is every host fit to run its part of the cluster? Changes nothing.

Each host's problems are gathered while pyinfra prepares it; after the last host, every problem
of every host is reported at once and the run stops before any operation.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.facts.server import LinuxDistribution, Which

from deploys.cleanup import Leftover, find_leftovers
from deploys.gpus import gpu_problems
from deploys.host_facts import fact_since_last_change
from deploys.host_problems import report
from deploys.topology import Cluster, Node
from facts.containers import COMPONENT_LABEL, Containers
from facts.gpus import NvidiaGpus
from facts.resources import HostResources, ListeningPorts, Reachable, tcp_holders

SUPPORTED_OS = {"Debian": ("11", "12"), "Ubuntu": ("22.04", "24.04")}
# Which of our containers may already hold a port (a re-run finds its own cluster running).
PORT_OWNERS = {
    "ray_gcs_port": "ray-head",
    "ray_dashboard_port": "ray-head",
    "ray_client_port": "ray-head",
    "ray_metrics_export_port": ("ray-head", "ray-worker"),
    "redis_port": "ray-redis",
    "node_exporter_port": "node-exporter",
    "cadvisor_port": "cadvisor",
    "prometheus_port": "prometheus",
    "grafana_port": "grafana",
    "dcgm_exporter_port": "dcgm-exporter",
    "alertmanager_port": "alertmanager",
}


def problems_of(node: Node, cluster: Cluster) -> list[str]:
    """Every prerequisite NODE fails, each naming the setting to change or the fix."""
    settings = node.settings
    problems = []
    distribution = host.get_fact(LinuxDistribution)
    name = distribution.get("name") or "unknown"
    version = (distribution.get("release_meta") or {}).get("VERSION_ID", str(distribution.get("major") or "?"))
    if version not in SUPPORTED_OS.get(name, ()):
        supported = "; ".join(f"{os_name} {', '.join(versions)}" for os_name, versions in SUPPORTED_OS.items())
        problems.append(f"OS {name} {version} is not supported (supported: {supported})")
    resources = host.get_fact(HostResources, path=settings.docker_data_root or "/var/lib/docker")
    if resources["cpus"] < settings.min_cpus:
        problems.append(f"{resources['cpus']} CPUs, fewer than min_cpus={settings.min_cpus}")
    if settings.ray_num_cpus is not None and settings.ray_num_cpus > resources["cpus"]:
        problems.append(f"ray_num_cpus={settings.ray_num_cpus} but the host has {resources['cpus']} CPUs")
    if resources["memory_mb"] < settings.min_memory_mb:
        problems.append(f"{resources['memory_mb']} MiB of memory, less than min_memory_mb={settings.min_memory_mb}")
    if resources["disk_free_gb"] < settings.min_disk_free_gb:
        problems.append(
            f"{resources['disk_free_gb']} GiB free at {resources['disk_path']}, less than "
            f"min_disk_free_gb={settings.min_disk_free_gb}"
        )
    if resources["shm_mb"] < settings.min_shm_mb:
        problems.append(f"/dev/shm is {resources['shm_mb']} MiB, less than min_shm_mb={settings.min_shm_mb}")
    if not host.get_fact(Which, command="python3"):
        problems.append("python3 is missing: install it (apt-get install -y python3)")
    problems += port_conflicts(node, cluster)
    problems += gpu_prerequisites(node)
    if node.role == "worker":
        head_address = cluster.head.settings.cluster_address
        if not host.get_fact(Reachable, address=head_address):
            problems.append(
                f"cannot reach the head's cluster address {head_address} (no ping, no TCP 22); "
                f"check routes and firewalls, or the head's cluster_address"
            )
    return problems


def gpu_prerequisites(node: Node) -> list[str]:
    """On a host marked gpu: nvidia (or asking Ray for GPUs): the driver answers nvidia-smi, and has the GPUs
    the settings ask for. The driver's version is logged, for the operator to see which one runs."""
    settings = node.settings
    if settings.gpu != "nvidia" and not settings.ray_num_gpus and not settings.gpu_devices:
        return []
    found = host.get_fact(NvidiaGpus)
    if found["driver"]:
        names = ", ".join(f"{gpu['index']}: {gpu['name']}" for gpu in found["gpus"])
        host.log(f"NVIDIA driver {found['driver']}, {len(found['gpus'])} GPUs ({names})", logger.info)
    elif settings.gpu == "nvidia":
        host.log(f"nvidia-smi: {found['error']}", logger.warning)
    return gpu_problems(node.name, node.group, settings, found)


def port_conflicts(node: Node, cluster: Cluster) -> list[str]:
    """Each port NODE needs that something else holds, naming the holder and the fix.

    Our own running container for that port is a re-run, not a conflict; a holder cleanup-existing
    will remove (an older deployment's container, Ray outside a container) is not one either: it is
    logged, and cleanup-existing removes it once its plan is approved.
    """
    holders = tcp_holders(host.get_fact(ListeningPorts))
    containers = fact_since_last_change(Containers)
    running = {
        found["labels"][COMPONENT_LABEL]
        for found in containers.values()
        if found["running"] and COMPONENT_LABEL in found["labels"]
    }
    leftovers = find_leftovers(node)
    monitoring = node.name in {member.name for member in cluster.monitoring}
    problems = []
    for key, port in node.settings.ports(node.role, monitoring=monitoring).items():
        owners = PORT_OWNERS.get(key, ())
        if port not in holders or running.intersection((owners,) if isinstance(owners, str) else owners):
            continue
        found = [port_holder(entry, containers, leftovers) for entry in holders[port]]
        held_by = ", ".join(description for description, _ in found)
        if all(removed for _, removed in found):
            host.log(f"port {port} ({key}) is held by {held_by}: cleanup-existing will remove it after approval")
        else:
            problems.append(f"port {port} ({key}) is already in use by {held_by}; {port_fix(found, key)}")
    return problems


def port_holder(entry: dict, containers: dict[str, dict], leftovers: list[Leftover]) -> tuple[str, bool]:
    """Who holds a port (a container by name, else a process), and whether cleanup-existing removes it."""
    name = container_of(entry, containers)
    if name is not None:
        leftover = next((found for found in leftovers if found.kind == "container" and found.name == name), None)
        if leftover is not None:
            reason = leftover.reason if leftover.reason.startswith("from ") else f"({leftover.reason})"
            return f"container {name} {reason}", True
        return f"container {name} (image {containers[name]['image']}), which cleanup-existing leaves alone", False
    stopped = {int(found.name) for found in leftovers if found.kind == "process"}
    if stopped.intersection([entry["pid"], *entry.get("parents", [])]):
        return f"process {entry['process']} (pid {entry['pid']}, Ray outside a container)", True
    return f"process {entry['process']} (pid {entry['pid']})", False


def container_of(entry: dict, containers: dict[str, dict]) -> str | None:
    """The container whose process holds ENTRY's port: by the process's cgroup, or docker-proxy's published port."""
    for name, found in containers.items():
        if entry.get("container") and found["id"] == entry["container"]:
            return name
        if entry["process"] == "docker-proxy" and int(entry["port"]) in found.get("published", ()):
            return name
    return None


def port_fix(found: list[tuple[str, bool]], key: str) -> str:
    kept = [description for description, removed in found if not removed]
    if any(description.startswith("container ") for description in kept):
        return f"stop that container (docker stop NAME) if it is not needed, or change {key}"
    return f"free it or change {key}"


def check_prerequisites(node: Node, cluster: Cluster) -> None:
    """Record NODE's problems; once every active host is recorded, stop the run if any has one."""
    report("prerequisites-check", problems_of(node, cluster))
