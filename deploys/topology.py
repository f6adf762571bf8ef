"""Who is the head, who are the workers, and each one's settings: read once from pyinfra's inventory.

Groups: `head` (exactly one host), `workers` (zero or more), `monitoring` (optional; defaults to
the head). Every host's data is checked here, and the inventory as a whole, before any operation.
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
from deploys.settings import Settings, SettingsError, check_cluster, settings_from_data


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    settings: Settings


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


def build_cluster(members: Iterable[tuple[str, dict[str, Any]]], groups: dict[str, list[str]]) -> Cluster:
    """The checked cluster of MEMBERS (name, host data) in GROUPS (head/workers/monitoring -> names).

    Raises SettingsError naming every problem of every host at once.
    """
    heads, workers, monitoring = (groups.get(name, []) for name in ("head", "workers", "monitoring"))
    problems: list[str] = []
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
        try:
            settings = settings_from_data(name, data, data.get("ssh_hostname"))
        except SettingsError as error:
            problems.append(str(error))
            continue
        entries.append((name, role, settings))
    if not problems:
        try:
            check_cluster(entries, monitoring)
        except SettingsError as error:
            problems.append(str(error))
    if problems:
        raise SettingsError("\n".join(problems))
    nodes = {name: Node(name, role, settings) for name, role, settings in entries}
    head = next(node for node in nodes.values() if node.role == "head")
    return Cluster(
        head=head,
        workers=tuple(node for node in nodes.values() if node.role == "worker"),
        monitoring=tuple(nodes[name] for name in monitoring if name in nodes) or (head,),
        monitoring_only=tuple(node for node in nodes.values() if node.role == "monitoring"),
    )


def load_cluster() -> Cluster:
    """The checked cluster of pyinfra's current inventory; DeployError naming every problem at once."""
    key = id(ctx_inventory.get())
    if key in _cache:
        return _cache[key]
    groups = {name: _group_names(name) for name in ("head", "workers", "monitoring")}
    try:
        cluster = build_cluster(((member.name, member.data.dict()) for member in inventory), groups)
    except SettingsError as error:
        raise DeployError(f"bad inventory data, nothing was changed:\n{error}") from None
    _cache[key] = cluster
    return cluster


def this_node() -> Node:
    """The node pyinfra is preparing operations for now; its commands from here on are sent at once."""
    send_without_delay(current_host)
    return load_cluster().node(current_host.name)
