"""cleanup-existing: remove what earlier installations left, exactly that, and nothing unrecognised.

Recognised leftovers:
- our own Ray containers (label raydeploy.component) that no longer belong on this node;
- containers of older deployments named like Ray or monitoring ones AND running such an image;
- Ray processes outside any container (a pip install's `ray start`).
Everything is listed per host before anything is removed (and in a dry run).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import deploy, operation

from deploys.components import RAY_COMPONENTS, wanted_ray_components
from deploys.containers import container_absent
from deploys.host_facts import fact_since_last_change
from deploys.topology import Node
from facts.containers import COMPONENT_LABEL, Containers
from facts.processes import BareMetalRayProcesses

# Names older deployments gave their containers, and the images such containers run.
LEGACY_NAME = re.compile(r"^(ray[-_](head|worker|redis)([-_]\d+)?|prometheus|grafana|node[-_]exporter|cadvisor)$")
LEGACY_IMAGE = re.compile(
    r"^(docker\.io/)?(rayproject/ray(-ml)?|prom/prometheus|grafana/grafana(-oss|-enterprise)?|prom/node-exporter"
    r"|gcr\.io/cadvisor/cadvisor|google/cadvisor|redis)(:|@|$)"
)


def is_legacy_container(name: str, image: str) -> bool:
    """Named like an older deployment's container and running that kind of image (Redis only as ray-redis)."""
    image_match = LEGACY_IMAGE.match(image)
    if not LEGACY_NAME.match(name) or not image_match:
        return False
    return image_match.group(2) != "redis" or name.replace("_", "-").startswith("ray-redis")


@dataclass(frozen=True)
class Leftover:
    kind: str  # "container" or "process"
    name: str
    reason: str


def find_leftovers(node: Node) -> list[Leftover]:
    """What cleanup would remove on NODE's host, each with the reason it was recognised."""
    found: list[Leftover] = []
    wanted = wanted_ray_components(node)
    for name, container in sorted(fact_since_last_change(Containers).items()):
        component = container["labels"].get(COMPONENT_LABEL)
        if component in RAY_COMPONENTS and component not in wanted:
            found.append(Leftover("container", name, f"our {component} container, not wanted on a {node.role}"))
        elif component is None and is_legacy_container(name, container["image"]):
            found.append(Leftover("container", name, f"from an older deployment (image {container['image']})"))
    for pid, command in sorted(host.get_fact(BareMetalRayProcesses).items()):
        found.append(Leftover("process", str(pid), f"Ray outside a container: {command[:100]}"))
    return found


@operation()
def processes_stopped(pids: list[int]):
    """
    Stop PIDS: SIGTERM, up to 10 s to exit, then SIGKILL.

    + pids: process ids to stop
    """
    alive = " ".join(str(pid) for pid in pids)
    yield (
        f"pids={shlex.quote(alive)}; kill -TERM $pids 2>/dev/null; "
        'for _ in $(seq 1 20); do left=; for p in $pids; do kill -0 $p 2>/dev/null && left="$left $p"; done; '
        '[ -z "$left" ] && exit 0; sleep 0.5; done; kill -KILL $left 2>/dev/null; true'
    )


@deploy("Clean up earlier installations")
def cleanup_existing(node: Node) -> None:
    """Remove NODE's recognised leftovers; log each one first.

    + node: the node being cleaned (its role decides which of our containers are leftovers)
    """
    leftovers = find_leftovers(node)
    if not leftovers:
        host.log("cleanup: nothing left from earlier installations", logger.info)
    for leftover in leftovers:
        host.log(f"cleanup will remove {leftover.kind} {leftover.name}: {leftover.reason}", logger.warning)
    for leftover in leftovers:
        if leftover.kind == "container":
            # One name for every host's removal (pyinfra merges the same call across hosts); the
            # log line above says exactly what goes where.
            container_absent(name="Remove a leftover container", container_name=leftover.name)
    pids = [int(leftover.name) for leftover in leftovers if leftover.kind == "process"]
    if pids:
        processes_stopped(name="Stop bare-metal Ray processes", pids=pids)
