"""Who is the head, who are the workers, and each one's settings: read once from pyinfra's inventory.

Groups: `head` (exactly one host), `workers` (zero or more), `monitoring` (optional; defaults to
the head). Any other inventory group whose hosts are all workers is a worker group (`gpu`,
`bigmem`): pyinfra merges its data into its hosts' data, so its settings apply to them; a worker
is in at most one such group, and one outside any is in group `workers`. Every host's data is
checked here, and the inventory as a whole, before any operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyinfra import host as current_host
from pyinfra import inventory
from pyinfra.api.exceptions import DeployError
from pyinfra.context import ctx_inventory

from deploys.connection import send_without_delay
from deploys.settings import (
    Settings,
    SettingsError,
    check_cluster,
    node_label,
    settings_from_data,
    unknown_group_keys,
)

ROLE_GROUPS = ("head", "workers", "monitoring")


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    settings: Settings
    # The worker group (an inventory group under `workers`); the role's group for the others.
    group: str = ""

    @property
    def label(self) -> str:
        """How messages name this node: "gpu-1 (group gpu)" for a worker in a group of its own."""
        return node_label(self.name, self.group if self.group not in ROLE_GROUPS else None)


@dataclass(frozen=True)
class Cluster:
    head: Node
    workers: tuple[Node, ...]
    monitoring: tuple[Node, ...]
    # Hosts only in group 'monitoring' (role "monitoring"): no Ray, but exporters and the stack.
    monitoring_only: tuple[Node, ...] = ()

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The Ray nodes: the head and the workers."""
        return (self.head, *self.workers)

    @property
    def hosts(self) -> tuple[Node, ...]:
        """Every host of the inventory: the Ray nodes and any monitoring-only host."""
        return (*self.nodes, *self.monitoring_only)

    def node(self, name: str) -> Node:
        return next(node for node in self.hosts if node.name == name)

    @property
    def expected_cpus(self) -> int | None:
        """The CPUs Ray should report in total, when every node's count is set; else None."""
        counts = [node.settings.ray_num_cpus for node in self.nodes]
        return None if any(count is None for count in counts) else sum(counts)


_cache: dict[int, Cluster] = {}


def _group_names(name: str) -> list[str]:
    try:
        return [member.name for member in inventory.get_group(name)]
    except Exception:  # pyinfra raises NoGroupError; a missing group is an empty one here
        return []


WorkerGroups = dict[str, tuple[list[str], dict[str, Any]]]


def worker_group_of(names: Iterable[str], worker_groups: WorkerGroups) -> tuple[dict[str, str], list[str]]:
    """Each worker's group among WORKER_GROUPS (group -> (member names, group data)), `workers` for one in
    none; and a problem for each worker in more than one (which group's settings win would be a guess)."""
    groups, problems = {}, []
    for name in names:
        found = [group for group, (members, _) in worker_groups.items() if name in members]
        if len(found) > 1:
            problems.append(f"{name}: is in the worker groups {', '.join(found)}; a worker belongs to one group")
        groups[name] = found[0] if found else "workers"
    return groups, problems


def build_cluster(
    members: Iterable[tuple[str, dict[str, Any]]],
    groups: dict[str, list[str]],
    worker_groups: WorkerGroups | None = None,
) -> Cluster:
    """The checked cluster of MEMBERS (name, host data) in GROUPS (head/workers/monitoring -> names), with
    the WORKER_GROUPS under `workers` (group -> (member names, group data)).

    Raises SettingsError naming every problem of every host at once.
    """
    heads, workers, monitoring = (groups.get(name, []) for name in ROLE_GROUPS)
    worker_groups = worker_groups or {}
    group_of, problems = worker_group_of(workers, worker_groups)
    for group, (names, data) in worker_groups.items():
        problems += unknown_group_keys(group, names, data)
    entries: list[tuple[str, str, Settings]] = []
    for name, data in members:
        role = (
            "head+worker"
            if name in heads and name in workers
            else ("head" if name in heads else "worker" if name in workers else None)
        )
        if role is None and name in monitoring:
            role = "monitoring"
        if role is None:
            problems.append(f"{name}: is in none of the groups 'head', 'workers', 'monitoring'; put it in one")
            continue
        group = group_of.get(name) if role == "worker" else role
        label = node_label(name, group if group not in ROLE_GROUPS else None)
        try:
            settings = settings_from_data(name, data, data.get("ssh_hostname"), label)
        except SettingsError as error:
            problems.append(str(error))
            continue
        entries.append((name, role, settings))
    if not problems:
        try:
            check_cluster(entries, monitoring, {name: g for name, g in group_of.items() if g not in ROLE_GROUPS})
        except SettingsError as error:
            problems.append(str(error))
    if problems:
        raise SettingsError("\n".join(problems))
    nodes = {name: Node(name, role, settings, group_of.get(name, role)) for name, role, settings in entries}
    head = next(node for node in nodes.values() if node.role == "head")
    return Cluster(
        head=head,
        workers=tuple(node for node in nodes.values() if node.role == "worker"),
        monitoring=tuple(nodes[name] for name in monitoring if name in nodes) or (head,),
        monitoring_only=tuple(node for node in nodes.values() if node.role == "monitoring"),
    )


def worker_groups_in(
    groups: dict[str, list[str]], group_data: dict[str, dict[str, Any]], workers: list[str]
) -> WorkerGroups:
    """The groups under `workers` among GROUPS (name -> member names): every group but the role groups
    (and pyinfra's `all`) whose hosts are all workers, with its members and its own data (GROUP_DATA)."""
    return {
        name: (names, dict(group_data.get(name, {})))
        for name, names in groups.items()
        if name not in (*ROLE_GROUPS, "all") and names and set(names) <= set(workers)
    }


def inventory_worker_groups(workers: list[str]) -> WorkerGroups:
    """The worker groups of pyinfra's current inventory (group data from the inventory or group_data/)."""
    groups = {name: [member.name for member in members] for name, members in inventory.groups.items()}
    return worker_groups_in(groups, {name: inventory.get_group_data(name) for name in groups}, workers)


def load_cluster() -> Cluster:
    """The checked cluster of pyinfra's current inventory; DeployError naming every problem at once."""
    key = id(ctx_inventory.get())
    if key in _cache:
        return _cache[key]
    groups = {name: _group_names(name) for name in ROLE_GROUPS}
    try:
        cluster = build_cluster(
            ((member.name, member.data.dict()) for member in inventory),
            groups,
            inventory_worker_groups(groups["workers"]),
        )
    except SettingsError as error:
        raise DeployError(f"bad inventory data, nothing was changed:\n{error}") from None
    _cache[key] = cluster
    return cluster


def this_node() -> Node:
    """The node pyinfra is preparing operations for now; its commands from here on are sent at once."""
    send_without_delay(current_host)
    return load_cluster().node(current_host.name)
