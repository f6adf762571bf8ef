"""testinfra checks on one host, per checkpoint. Each takes a testinfra host and returns Results.

Commands are batched (one `docker inspect` for every container, one `ss` for every port) so that
a host costs a handful of round trips over one shared SSH connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from jinja2 import Environment, FileSystemLoader

from deploys.cleanup import is_legacy_container
from deploys.components import MONITORING_COMPONENTS, monitoring_components, wanted_ray_components
from deploys.containers import ContainerSpec
from deploys.prerequisites import PORT_OWNERS
from deploys.specs import container_specs
from deploys.topology import Cluster, Node
from facts.containers import COMPONENT_LABEL, SPEC_LABEL
from facts.processes import BareMetalRayProcesses
from templates import TEMPLATES
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


def docker_installation(host, node: Node) -> list[Result]:
    settings = node.settings
    package = "docker-ce" if settings.docker_source == "docker-ce" else "docker.io"
    results = []
    installed = host.package(package)
    if installed.is_installed:
        results.append(passed(DOCKER, f"package {package}", node.name, f"version {installed.version}"))
    else:
        results.append(failed(DOCKER, f"package {package}", node.name, "not installed: run docker-installation"))
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


def inspect_containers(host, names: list[str]) -> dict[str, dict]:
    """`docker inspect` of NAMES that exist, by name (one command)."""
    if not names:
        return {}
    output = host.run("docker inspect --type container " + " ".join(names) + " 2>/dev/null").stdout
    try:
        found = json.loads(output or "[]")
    except ValueError:
        return {}
    return {item["Name"].lstrip("/"): item for item in found}


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
    state = found["State"]
    labels = found["Config"].get("Labels") or {}
    problems = []
    if not state.get("Running"):
        problems.append(f"not running ({state.get('Status')}, exit code {state.get('ExitCode')})")
    health = (state.get("Health") or {}).get("Status")
    if health == "unhealthy":
        problems.append("unhealthy (docker inspect --format '{{json .State.Health}}' " + name + ")")
    if COMPONENT_LABEL not in labels:
        problems.append("not created by raydeploy (no raydeploy.component label)")
    if spec is not None:
        if found["Config"]["Image"] != spec.image:
            problems.append(f"image {found['Config']['Image']}, the inventory says {spec.image}")
        if labels.get(SPEC_LABEL) != spec.digest():
            problems.append("its spec differs from what the inventory would deploy now (re-run " + checkpoint + ")")
    policy = found["HostConfig"]["RestartPolicy"]["Name"]
    if policy != restart:
        problems.append(f"restart policy {policy}, the inventory says {restart}")
    detail = f"running {found['Config']['Image']}, restart {policy}" + (f", {health}" if health else "")
    if spec is None and why_no_spec:
        detail += f" (spec not compared: {why_no_spec})"
    return verdict(checkpoint, check, node.name, problems, detail)


def expected_specs(
    node: Node, cluster: Cluster, secret_of: Callable[[str], str]
) -> tuple[dict[str, ContainerSpec], str]:
    try:
        return container_specs(node, cluster, secret_of), ""
    except MissingSecret as error:
        return {}, f"secret {error} is not in the state directory {node.settings.state_dir}"


def listening_ports(host) -> set[int]:
    output = host.run("ss -ltnH 2>/dev/null || netstat -ltn 2>/dev/null").stdout
    ports = set()
    for line in output.splitlines():
        for field in line.split():
            if ":" in field:
                tail = field.rsplit(":", 1)[1]
                if tail.isdigit():
                    ports.add(int(tail))
                break
    return ports


def ray_deployment(host, node: Node, cluster: Cluster, secret_of: Callable[[str], str]) -> list[Result]:
    settings = node.settings
    wanted = sorted(wanted_ray_components(node))
    if not wanted:
        return [Result(RAY, "ray containers", node.name, NOT_DEPLOYED, "a monitoring-only host runs no Ray")]
    specs, why = expected_specs(node, cluster, secret_of)
    found = inspect_containers(host, wanted)
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
    found = inspect_containers(host, running)
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
    listing = host.run(
        f"docker ps -a --format '{{{{.Names}}}}\t{{{{.Image}}}}\t{{{{.Label \"{COMPONENT_LABEL}\"}}}}' 2>/dev/null"
    ).stdout
    problems = []
    for line in listing.splitlines():
        name, image, component = ([*line.split("\t"), "", ""])[:3]
        if not component and is_legacy_container(name, image):
            problems.append(f"container {name} ({image}) from an older deployment")
    bare = BareMetalRayProcesses()
    processes = bare.process(host.run(bare.command()).stdout.splitlines())
    problems += [f"process {pid} is Ray outside a container: {command[:80]}" for pid, command in processes.items()]
    if problems:
        problems.append("run the cleanup-existing checkpoint")
    return [verdict(CLEANUP, "no leftovers", node.name, problems, "none found")]
