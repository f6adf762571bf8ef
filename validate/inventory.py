"""The hosts to validate, read from the same pyinfra inventory file the deploys use (one source of truth).

`load(path)` returns the checked cluster and, for each host, the SSH settings pyinfra would use;
`write_ssh_config()` turns them into an OpenSSH config that testinfra's `ssh://` backend reads,
with a shared connection per host so that a hundred checks cost one handshake.
"""

from __future__ import annotations

import runpy
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploys.settings import SettingsError
from deploys.topology import Cluster, build_cluster, worker_groups_in

GROUPS = ("head", "workers", "monitoring")


class InventoryError(Exception):
    """The inventory cannot be read or is not a raydeploy cluster; the message says which and why."""


@dataclass(frozen=True)
class SSHTarget:
    name: str
    hostname: str
    port: int
    user: str | None
    key: str | None
    known_hosts: str | None
    strict: str | None


@dataclass(frozen=True)
class LoadedInventory:
    path: str
    cluster: Cluster
    ssh: dict[str, SSHTarget]


def _ssh_target(name: str, data: dict[str, Any]) -> SSHTarget:
    strict = data.get("ssh_strict_host_key_checking")
    return SSHTarget(
        name=name,
        hostname=str(data.get("ssh_hostname") or name),
        port=int(data.get("ssh_port") or 22),
        user=data.get("ssh_user"),
        key=data.get("ssh_key"),
        known_hosts=data.get("ssh_known_hosts_file"),
        strict=None if strict is None else str(strict),
    )


def read_inventory_file(path: str) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, list[str]]]:
    """Hosts (name, data) and groups of a pyinfra inventory file, read as pyinfra reads one.

    Groups are the module's public lists of hosts (a name, or a (name, data) tuple), or tuples of
    (hosts, group data); a host's own data overrides its groups'. pyinfra's own loader is not used
    because importing pyinfra's CLI monkey-patches the whole process for gevent.
    """
    namespace = runpy.run_path(path)
    groups: dict[str, list[str]] = {}
    data: dict[str, dict[str, Any]] = {}
    group_data: dict[str, dict[str, Any]] = {}
    for key, value in namespace.items():
        if key.startswith("_"):
            continue
        shared: dict[str, Any] = {}
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list) and isinstance(value[1], dict):
            value, shared = value
        if not isinstance(value, list) or not all(isinstance(item, str | tuple) for item in value):
            continue
        names = []
        for item in value:
            name, own = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]) if len(item) > 1 else {})
            names.append(name)
            data.setdefault(name, {}).update(own)
            group_data.setdefault(name, {}).update(shared)
        groups[key] = names
    return [(name, group_data[name] | own) for name, own in data.items()], groups


def read_group_data(path: str) -> dict[str, dict[str, Any]]:
    """Each group's own data in inventory file PATH (the data of its `(hosts, data)` tuple)."""
    return {
        key: dict(value[1])
        for key, value in runpy.run_path(path).items()
        if not key.startswith("_")
        and isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], list)
        and isinstance(value[1], dict)
    }


def load(path: str, state_dir: str | None = None) -> LoadedInventory:
    """Read inventory file PATH the way `pyinfra PATH ...` does (it contacts no host).

    STATE_DIR, when given, is the state directory of hosts whose data names none (the wrapper's).
    """
    if not Path(path).is_file():
        raise InventoryError(f"inventory {path}: no such file")
    try:
        members, groups = read_inventory_file(path)
    except SystemExit as error:  # an inventory may exit with its own message (the lab's does)
        raise InventoryError(f"inventory {path}: {error}") from None
    except Exception as error:
        raise InventoryError(f"inventory {path}: {type(error).__name__}: {error}") from None
    if not members:
        raise InventoryError(f"inventory {path}: defines no hosts")
    if state_dir:
        members = [(name, {"state_dir": str(state_dir)} | data) for name, data in members]
    try:
        worker_groups = worker_groups_in(groups, read_group_data(path), groups.get("workers", []))
        cluster = build_cluster(members, {group: groups.get(group, []) for group in GROUPS}, worker_groups)
    except SettingsError as error:
        raise InventoryError(f"inventory {path}: bad inventory data:\n{error}") from None
    return LoadedInventory(path=path, cluster=cluster, ssh={name: _ssh_target(name, data) for name, data in members})


def write_ssh_config(targets: dict[str, SSHTarget], directory: Path, connect_timeout_s: int = 5) -> Path:
    """An ssh_config for TARGETS in DIRECTORY (with its connection-sharing sockets)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = []
    for target in targets.values():
        lines += [f"Host {target.name}", f"  HostName {target.hostname}", f"  Port {target.port}"]
        if target.user:
            lines.append(f"  User {target.user}")
        if target.key:
            lines += [f"  IdentityFile {shlex.quote(target.key)}", "  IdentitiesOnly yes"]
        if target.known_hosts:
            lines.append(f"  UserKnownHostsFile {shlex.quote(target.known_hosts)}")
        if target.strict is not None:
            lines.append(f"  StrictHostKeyChecking {target.strict}")
        lines += [
            f"  ConnectTimeout {connect_timeout_s}",
            "  BatchMode yes",
            "  ServerAliveInterval 5",
            "  ServerAliveCountMax 2",
            "  ControlMaster auto",
            f"  ControlPath {directory}/%C",
            "  ControlPersist 30s",
            "  LogLevel ERROR",
            "",
        ]
    path = directory / "ssh_config"
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path
