"""final-validation, until the validate package lands: every expected container is running and healthy."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy, operation

from deploys.components import expected_containers
from deploys.topology import Cluster, Node
from facts.containers import Containers


@operation()
def containers_running(names: list[str]):
    """
    Fail, naming each one, when any of NAMES is missing, stopped or unhealthy; otherwise change nothing.

    + names: container names that must be running
    """
    found = host.get_fact(Containers)
    problems = []
    for name in sorted(names):
        current = found.get(name)
        if current is None:
            problems.append(f"{name}: missing")
        elif not current["running"]:
            problems.append(f"{name}: {current['status']}")
        elif current["health"] == "unhealthy":
            problems.append(f"{name}: unhealthy")
    if not problems:
        host.noop(f"running: {', '.join(sorted(names))}")
        return
    message = f"{host.name}: " + "; ".join(problems)
    yield f"echo {shlex.quote(message)} >&2; exit 1"


@deploy("Final validation")
def final_validation(node: Node, cluster: Cluster) -> None:
    """Every container this node should run is running and not unhealthy.

    + node: the node being checked
    + cluster: the whole cluster
    """
    containers_running(name="Expected containers running", names=sorted(expected_containers(node, cluster)))
