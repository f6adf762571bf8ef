"""remove-node (destructive): drain worker nodes through Ray, remove raydeploy's containers there, and
re-render and reload Prometheus without them.

Its arguments arrive as host data (`--data KEY=VALUE`, from `raydeploy remove-node` and the API):
`remove_hosts` (comma-separated inventory names), `drain_timeout` (seconds) and
`remove_on_drain_timeout` (yes/no: whether a drain that times out still removes the node). They
are part of the plan and its digest, so the approval binds them.

Order, one operation after the other for every host (the action runs with --fail-percent 0, so a
failed drain stops everything after it): drain each removed worker (on its host), remove its
containers, then reload Prometheus on the monitoring host with the remaining cluster.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace

from pyinfra import host, logger
from pyinfra.api import deploy, operation
from pyinfra.api.exceptions import DeployError

from deploys.components import PROMETHEUS, RAY_HEAD, RAY_WORKER, monitoring_components
from deploys.containers import container_absent
from deploys.host_facts import fact_since_last_change
from deploys.host_scripts import python_script
from deploys.monitoring import prometheus
from deploys.topology import Cluster, Node
from facts.containers import COMPONENT_LABEL, Containers
from facts.ray import RayJobs

REMOVE_HOSTS, DRAIN_TIMEOUT, REMOVE_ON_TIMEOUT = "remove_hosts", "drain_timeout", "remove_on_drain_timeout"
DEFAULT_DRAIN_TIMEOUT_S = 300


@dataclass(frozen=True)
class Removal:
    hosts: tuple[str, ...]
    drain_timeout_s: int = DEFAULT_DRAIN_TIMEOUT_S
    remove_on_timeout: bool = False


def removal_from_data(data: dict) -> Removal:
    """The action's arguments from host data; ValueError naming a bad one."""
    hosts = tuple(dict.fromkeys(name.strip() for name in str(data.get(REMOVE_HOSTS) or "").split(",") if name.strip()))
    if not hosts:
        raise ValueError(f"remove-node needs the hosts to remove: {REMOVE_HOSTS}=worker-2[,worker-3]")
    timeout = str(data.get(DRAIN_TIMEOUT) or DEFAULT_DRAIN_TIMEOUT_S)
    if not timeout.isdigit() or int(timeout) < 1:
        raise ValueError(f"{DRAIN_TIMEOUT}={timeout!r}: a whole number of seconds, at least 1")
    flag = str(data.get(REMOVE_ON_TIMEOUT) or "no").lower()
    if flag not in ("yes", "no"):
        raise ValueError(f"{REMOVE_ON_TIMEOUT}={flag!r}: yes or no")
    return Removal(hosts, int(timeout), flag == "yes")


def removal_problems(cluster: Cluster, hosts: tuple[str, ...]) -> list[str]:
    """Why HOSTS cannot be removed from CLUSTER, one line each; [] when they can."""
    known = {node.name: node for node in cluster.hosts}
    problems = []
    unknown = [name for name in hosts if name not in known]
    if unknown:
        problems.append(
            f"unknown host(s) {', '.join(unknown)}; the inventory's hosts are: {', '.join(sorted(known))} "
            "(a host is drained and removed through the inventory: put it back in group 'workers' to remove it)"
        )
    for name in hosts:
        node = known.get(name)
        if node is None:
            continue
        if node.role.startswith("head"):
            problems.append(f"{name} is the Ray head: removing it ends the cluster; that is `raydeploy destroy`")
        elif node.role != "worker":
            problems.append(f"{name} is not a Ray worker (role {node.role}): remove-node removes workers only")
        elif name == cluster.monitoring[0].name:
            problems.append(f"{name} runs Prometheus and Grafana: move the monitoring group to another host first")
    return problems


def remaining_cluster(cluster: Cluster, hosts: tuple[str, ...]) -> Cluster:
    """CLUSTER without the workers HOSTS: what Prometheus scrapes and alerts on afterwards."""
    return replace(cluster, workers=tuple(node for node in cluster.workers if node.name not in hosts))


def removal_warnings(cluster: Cluster, removal: Removal, jobs: list[dict[str, str]] | None) -> list[str]:
    """What the operator should know before approving: the Ray jobs running now (JOBS, from RayJobs; None
    when the head did not answer) and what happens to them, above all when the removal leaves no worker.
    The removal still goes ahead with the approval: the warning tells the approver whose work it touches."""
    removed = [node.name for node in cluster.workers if node.name in removal.hosts]
    remaining = remaining_cluster(cluster, removal.hosts)
    names = ", ".join(removed)
    if not removed or (remaining.workers and not jobs):
        return []
    if remaining.workers:
        others = ", ".join(node.name for node in remaining.nodes)
        return [f"{jobs_running(jobs, names, removal)}; their new tasks go to the remaining nodes ({others})"]
    return [
        f"removing {names} leaves no Ray worker. {jobs_running(jobs, names, removal)}. "
        f"Afterwards {head_capacity(cluster.head)}; a worker joins again with `raydeploy deploy` and a worker "
        "in the inventory"
    ]


def jobs_running(jobs: list[dict[str, str]] | None, names: str, removal: Removal) -> str:
    """The Ray jobs running now and what removing NAMES does to them."""
    if jobs is None:
        return "The Ray head did not say which jobs run now (its dashboard did not answer): ask `ray job list`"
    if not jobs:
        return "No Ray job runs now"
    return f"Ray jobs running now: {jobs_named(jobs)}; they lose {names}: {drain_words(removal)}"


def jobs_named(jobs: list[dict[str, str]], most: int = 10) -> str:
    """JOBS in a line: 'raysubmit_4Lam (RUNNING: python train.py)', entrypoints cut at 60 characters."""

    def named(job: dict[str, str]) -> str:
        entrypoint = job["entrypoint"] if len(job["entrypoint"]) <= 60 else job["entrypoint"][:57] + "..."
        return f"{job['id']} ({job['status']}: {entrypoint})"

    more = f" and {len(jobs) - most} more" if len(jobs) > most else ""
    return ", ".join(named(job) for job in jobs[:most]) + more


def drain_words(removal: Removal) -> str:
    """What the drain does to the work running on the removed nodes."""
    then = (
        "then cuts off what still runs (the approval allows it)"
        if removal.remove_on_timeout
        else "and removes nothing if any still runs then"
    )
    return f"the drain waits up to {removal.drain_timeout_s} s for their tasks and actors there, {then}"


def head_capacity(head: Node) -> str:
    """Where tasks run once no worker is left: on the head, as far as ray_num_cpus lets them."""
    cpus = head.settings.ray_num_cpus
    if cpus == 0:
        return "tasks that need a CPU wait (PENDING): the head offers none (ray_num_cpus=0)"
    if cpus is None:
        return "tasks run on the head, on every CPU it sees (ray_num_cpus unset); those that do not fit wait (PENDING)"
    return f"tasks run on the head's {cpus} CPUs (ray_num_cpus={cpus}); those that do not fit wait (PENDING)"


@operation()
def ray_node_drained(node: Node, head: Node, timeout_s: int, remove_on_timeout: bool):
    """
    Drain NODE's Ray node through the GCS and wait until no task or actor runs there.

    + node: the worker being removed (this host)
    + head: the Ray head (its GCS and dashboard are asked from this host's ray-worker container)
    + timeout_s: the drain's deadline; after it the operation fails, unless REMOVE_ON_TIMEOUT
    + remove_on_timeout: the approval allows removing the node although its drain timed out

    Its container stops restarting first, so a raylet that leaves after the drain does not rejoin;
    a drain that fails gives it back the host's container_restart_policy (drain_commands).
    """
    if RAY_WORKER not in fact_since_last_change(Containers):
        host.noop(f"no {RAY_WORKER} container: nothing to drain")
        return
    arguments = [node.settings.cluster_address, head.settings.cluster_address, str(head.settings.ray_gcs_port)]
    arguments += [str(head.settings.ray_dashboard_port), str(timeout_s), "yes" if remove_on_timeout else "no"]
    script = python_script(
        "deploys/scripts/drain_ray_node.py",
        ("facts/ray_answers.py", "deploys/scripts/polling.py"),
        arguments,
    )
    yield from drain_commands(script, node.settings.container_restart_policy)


def drain_commands(drain_script: str, restart_policy: str) -> list[str]:
    """The drain's shell commands: the worker's container stops restarting, then DRAIN_SCRIPT runs; when it
    fails, the container gets back RESTART_POLICY (the host's `container_restart_policy`, as deployed), so a
    node that stays does not lose the restart the operator chose for it.

    >>> drain_commands("drain", "always")[1]
    '( drain ) || { docker update --restart=always ray-worker >/dev/null; exit 1; }'
    """
    worker, policy = shlex.quote(RAY_WORKER), shlex.quote(restart_policy)
    return [
        f"docker update --restart=no {worker} >/dev/null",
        f"( {drain_script} ) || {{ docker update --restart={policy} {worker} >/dev/null; exit 1; }}",
    ]


def our_containers() -> list[str]:
    """The containers raydeploy made on this host (they carry its component label)."""
    return sorted(
        name for name, info in fact_since_last_change(Containers).items() if COMPONENT_LABEL in info["labels"]
    )


@deploy("Remove nodes")
def remove_nodes(node: Node, cluster: Cluster, removal: Removal) -> None:
    """This host's part of removing REMOVAL's workers from CLUSTER.

    + node: the host being prepared
    + cluster: the whole cluster as the inventory has it
    + removal: the workers to remove and how to drain them
    """
    problems = removal_problems(cluster, removal.hosts)
    if problems:
        raise DeployError("remove-node: nothing was changed:\n" + "\n".join(problems))
    if node.name == cluster.head.name:
        jobs = host.get_fact(RayJobs, container=RAY_HEAD, port=node.settings.ray_dashboard_port)
        for warning in removal_warnings(cluster, removal, jobs):
            host.log(f"remove-node: {warning}", logger.warning)
    if node.name in removal.hosts:
        host.log(f"remove-node will drain {node.name} (up to {removal.drain_timeout_s} s)", logger.warning)
        ray_node_drained(
            name="Drain the Ray node",
            node=node,
            head=cluster.head,
            timeout_s=removal.drain_timeout_s,
            remove_on_timeout=removal.remove_on_timeout,
        )
        for name in our_containers():
            host.log(f"remove-node will remove container {name}", logger.warning)
            container_absent(name="Remove raydeploy's containers", container_name=name)
    remaining = remaining_cluster(cluster, removal.hosts)
    if monitoring_components(node, cluster).get(PROMETHEUS):
        prometheus(remaining.monitoring[0], remaining)
