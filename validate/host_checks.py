"""testinfra checks on one host, per checkpoint. Each takes a testinfra host and returns Results.

Containers, ports and processes are read with the deploys' own facts (validate/probes.py): one
`docker inspect` for every container, one `ss` for every port, over one shared SSH connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from jinja2 import Environment, FileSystemLoader

from deploys.cleanup import is_legacy_container
from deploys.components import MONITORING_COMPONENTS, monitoring_components, wanted_ray_components
from deploys.containers import ContainerSpec
from deploys.gpus import TOOLKIT_PACKAGE
from deploys.prerequisites import PORT_OWNERS
from deploys.specs import container_specs
from deploys.topology import Cluster, Node
from facts.containers import COMPONENT_LABEL, SPEC_LABEL, Containers
from facts.gpus import NvidiaGpus
from facts.processes import BareMetalRayProcesses
from facts.resources import ListeningPorts, tcp_listeners
from templates import TEMPLATES
from validate.probes import read_fact
from validate.results import NOT_DEPLOYED, Result, failed, passed, verdict

DOCKER = "docker-installation"
RAY = "ray-deployment"
MONITORING = "monitoring-deployment"
PREREQUISITES = "prerequisites-check"
CLEANUP = "cleanup-existing"


class MissingSecret(Exception):
    pass


def rendered_daemon_json(node: Node) -> dict:
    """daemon.json as docker-installation renders it for NODE."""
    environment = Environment(loader=FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True)
    return json.loads(environment.get_template("docker/daemon.json.j2").render(settings=node.settings))


def toolkit_result(host, node: Node) -> Result:
    """On a GPU host: NVIDIA's Container Toolkit, which provides the runtime daemon.json registers."""
    toolkit = host.package(TOOLKIT_PACKAGE)
    if toolkit.is_installed:
        return passed(DOCKER, f"package {TOOLKIT_PACKAGE}", node.name, f"version {toolkit.version}")
    return failed(
        DOCKER, f"package {TOOLKIT_PACKAGE}", node.name, "not installed on a gpu: nvidia host: run docker-installation"
    )


def docker_installation(host, node: Node) -> list[Result]:
    settings = node.settings
    package = "docker-ce" if settings.docker_source == "docker-ce" else "docker.io"
    results = []
    installed = host.package(package)
    if installed.is_installed:
        results.append(passed(DOCKER, f"package {package}", node.name, f"version {installed.version}"))
    else:
        results.append(failed(DOCKER, f"package {package}", node.name, "not installed: run docker-installation"))
    if settings.gpu == "nvidia":
        results.append(toolkit_result(host, node))
    service = host.service("docker")
    problems = [] if service.is_running else ["not running (systemctl status docker)"]
    if not service.is_enabled:
        problems.append("not enabled at boot (systemctl enable docker)")
    results.append(verdict(DOCKER, "service docker", node.name, problems, "active, enabled at boot"))
    daemon = host.file("/etc/docker/daemon.json")
    if not daemon.exists:
        results.append(failed(DOCKER, "daemon.json", node.name, "/etc/docker/daemon.json is missing"))
    else:
        try:
            found = json.loads(daemon.content_string)
        except ValueError as error:
            found = {"<not JSON>": str(error)}
        wanted = rendered_daemon_json(node)
        differing = sorted(key for key in set(found) | set(wanted) if found.get(key) != wanted.get(key))
        results.append(
            verdict(
                DOCKER,
                "daemon.json",
                node.name,
                [f"differs from the rendered template in: {', '.join(differing)}"] if differing else [],
                "as rendered",
            )
        )
    return results


def container_result(
    checkpoint: str,
    node: Node,
    name: str,
    found: dict | None,
    spec: ContainerSpec | None,
    restart: str,
    why_no_spec: str,
) -> Result:
    check = f"container {name}"
    if found is None:
        return failed(checkpoint, check, node.name, "missing: run the checkpoint " + checkpoint)
    labels, health, policy = found["labels"], found["health"], found["restart_policy"]
    problems = []
    if not found["running"]:
        problems.append(f"not running ({found['status']}, exit code {found['exit_code']})")
    if health == "unhealthy":
        problems.append("unhealthy (docker inspect --format '{{json .State.Health}}' " + name + ")")
    if COMPONENT_LABEL not in labels:
        problems.append("not created by raydeploy (no raydeploy.component label)")
    if spec is not None:
        if found["image"] != spec.image:
            problems.append(f"image {found['image']}, the inventory says {spec.image}")
        if labels.get(SPEC_LABEL) != spec.digest():
            problems.append("its spec differs from what the inventory would deploy now (re-run " + checkpoint + ")")
    if policy != restart:
        problems.append(f"restart policy {policy}, the inventory says {restart}")
    detail = f"running {found['image']}, restart {policy}" + (f", {health}" if health else "")
    if spec is None and why_no_spec:
        detail += f" (spec not compared: {why_no_spec})"
    return verdict(checkpoint, check, node.name, problems, detail)


def expected_specs(
    node: Node, cluster: Cluster, secret_of: Callable[[str], str], host=None
) -> tuple[dict[str, ContainerSpec], str]:
    """The specs NODE's containers should have; on a GPU host HOST's nvidia-smi says how many GPUs Ray offers."""
    gpus_found = len(read_fact(host, NvidiaGpus)["gpus"]) if host and node.settings.gpu == "nvidia" else None
    try:
        return container_specs(node, cluster, secret_of, gpus_found), ""
    except MissingSecret as error:
        return {}, f"secret {error} is not in the state directory {node.settings.state_dir}"


def listening_ports(host) -> set[int]:
    """The TCP ports something listens on, read as prerequisites-check reads them."""
    return set(tcp_listeners(read_fact(host, ListeningPorts)))


def ray_deployment(host, node: Node, cluster: Cluster, secret_of: Callable[[str], str]) -> list[Result]:
    settings = node.settings
    wanted = sorted(wanted_ray_components(node))
    if not wanted:
        return [Result(RAY, "ray containers", node.name, NOT_DEPLOYED, "a monitoring-only host runs no Ray")]
    specs, why = expected_specs(node, cluster, secret_of, host)
    found = read_fact(host, Containers)
    results = [
        container_result(RAY, node, name, found.get(name), specs.get(name), settings.container_restart_policy, why)
        for name in wanted
    ]
    ports = listening_ports(host)
    expected = settings.ray_ports(node.role)
    closed = [f"{key}={port}" for key, port in sorted(expected.items()) if port not in ports]
    results.append(
        verdict(
            RAY,
            "ray ports listening",
            node.name,
            [f"nothing listens on {', '.join(closed)}"] if closed else [],
            ", ".join(str(port) for port in sorted(expected.values())),
        )
    )
    processes = ["raylet"] + (["gcs_server"] if node.role == "head" else [])
    missing = [name for name in processes if host.run(f"pgrep -x {name}").rc != 0]
    results.append(
        verdict(
            RAY,
            "ray processes",
            node.name,
            [f"no {name} process" for name in missing],
            ", ".join(processes) + " alive",
        )
    )
    return results


# Component -> the setting of its port, from the one table of who owns which port.
MONITORING_PORTS = {owner: key for key, owner in PORT_OWNERS.items() if owner in MONITORING_COMPONENTS}


def monitoring_deployment(host, node: Node, cluster: Cluster, secret_of: Callable[[str], str]) -> list[Result]:
    settings = node.settings
    components = monitoring_components(node, cluster)
    results = []
    for name, enabled in components.items():
        if not enabled:
            reason = settings.monitoring_off_reason or f"{name.replace('-', '_')}_enabled is false"
            results.append(Result(MONITORING, f"container {name}", node.name, NOT_DEPLOYED, reason))
    running = sorted(name for name, enabled in components.items() if enabled)
    if not running:
        return results
    specs, why = expected_specs(node, cluster, secret_of)
    found = read_fact(host, Containers)
    ports = listening_ports(host)
    for name in running:
        result = container_result(
            MONITORING, node, name, found.get(name), specs.get(name), settings.container_restart_policy, why
        )
        port = getattr(settings, MONITORING_PORTS[name])
        if result.status != NOT_DEPLOYED and port not in ports:
            result = failed(
                MONITORING, result.check, node.name, f"{result.detail}; nothing listens on {port}".lstrip("; ")
            )
        results.append(result)
    return results


def prerequisites(host, node: Node) -> list[Result]:
    problems = [] if host.exists("python3") else ["python3 is missing (apt-get install -y python3)"]
    return [verdict(PREREQUISITES, "python3", node.name, problems, "present")]


def cleanup(host, node: Node) -> list[Result]:
    """No leftovers cleanup-existing would remove: older deployments' containers, Ray outside containers."""
    problems = [
        f"container {name} ({found['image']}) from an older deployment"
        for name, found in read_fact(host, Containers).items()
        if COMPONENT_LABEL not in found["labels"] and is_legacy_container(name, found["image"])
    ]
    processes = read_fact(host, BareMetalRayProcesses)
    problems += [f"process {pid} is Ray outside a container: {command[:80]}" for pid, command in processes.items()]
    if problems:
        problems.append("run the cleanup-existing checkpoint")
    return [verdict(CLEANUP, "no leftovers", node.name, problems, "none found")]
