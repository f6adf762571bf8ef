"""destroy: remove what raydeploy put on a host, found on the host itself; Docker stays.

What goes, per host, read from the host's own facts (never from a local record alone):
- every container carrying the `raydeploy.component` label (raydeploy made it); any other stays;
- the files and directories raydeploy writes under /etc/raydeploy (by path, CONFIG_ENTRIES), and
  /etc/raydeploy itself once nothing else is in it; anything else there stays;
- with purge_data, raydeploy's named volumes (by name, DATA_VOLUMES): Redis's data (the Ray
  GCS tables) and Prometheus's, Grafana's and Alertmanager's (its silences). Without it they stay,
  and a later deploy uses them again.
The secret files on hosts go with the deployment (they are under /etc/raydeploy); the control
host's secrets stay unless the wrapper is told to forget them (`raydeploy destroy --forget-secrets`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import deploy, operation

from deploys.alertmanager import ALERTMANAGER_VOLUME
from deploys.host_facts import fact_since_last_change
from deploys.host_secrets import CONFIG_DIR
from deploys.monitoring import GRAFANA_VOLUME, PROMETHEUS_VOLUME
from deploys.ray_cluster import REDIS_VOLUME
from facts.containers import COMPONENT_LABEL, Containers
from facts.installed import DirectoryEntries, VolumeNames

DATA_VOLUMES = (REDIS_VOLUME, PROMETHEUS_VOLUME, GRAFANA_VOLUME, ALERTMANAGER_VOLUME)
# Every entry a deploy of any version writes directly under /etc/raydeploy (deploys/host_secrets.py,
# deploys/monitoring.py), including the env files earlier versions used.
CONFIG_ENTRIES = (
    "ray-auth-token",
    "redis-password",
    "redis.conf",
    "grafana-admin-password",
    "prometheus",
    "grafana",
    "alertmanager",
    "alertmanager-candidate",
    "ray.env",
    "redis.env",
    "grafana.env",
)
TRUE_WORDS = ("1", "true", "yes", "on")


def is_true(value: object) -> bool:
    """Host data given on a command line (`--data purge_data=true`) arrives as text."""
    return value is True or str(value).strip().lower() in TRUE_WORDS


@dataclass(frozen=True)
class Teardown:
    """What destroy removes on one host, and what it leaves there on purpose."""

    containers: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    config_paths: tuple[str, ...] = ()
    config_dir_removed: bool = False
    kept: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.containers or self.volumes or self.config_paths or self.config_dir_removed)

    def notes(self) -> list[str]:
        """What will happen, for people: one line per kind of thing, then what stays."""
        lines = []
        if self.containers:
            lines.append(f"destroy will remove containers {', '.join(self.containers)}")
        if self.volumes:
            lines.append(f"destroy will remove volumes {', '.join(self.volumes)} (their data is lost)")
        if self.config_paths:
            lines.append(f"destroy will remove {', '.join(self.config_paths)}")
        if self.config_dir_removed:
            lines.append(f"destroy will remove {CONFIG_DIR} itself, left empty")
        if not lines:
            lines.append("destroy: nothing of raydeploy's is left on this host")
        return lines + [f"destroy keeps {what}" for what in self.kept]


def teardown_of(
    containers: dict[str, dict], volumes: list[str], config_entries: list[str], purge_data: bool
) -> Teardown:
    """What destroy removes given a host's CONTAINERS (the Containers fact), VOLUMES (names) and the entries
    of /etc/raydeploy.

    >>> teardown_of({"ray-head": {"labels": {"raydeploy.component": "ray-head"}}, "mine": {"labels": {}}},
    ...             ["raydeploy-redis-data"], ["redis.conf"], purge_data=False).containers
    ('ray-head',)
    """
    ours = tuple(name for name, found in sorted(containers.items()) if COMPONENT_LABEL in found["labels"])
    others = sorted(set(containers) - set(ours))
    data = tuple(name for name in DATA_VOLUMES if name in volumes)
    config = tuple(f"{CONFIG_DIR}/{entry}" for entry in CONFIG_ENTRIES if entry in config_entries)
    strangers = sorted(set(config_entries) - set(CONFIG_ENTRIES))
    kept = [f"containers raydeploy did not make: {', '.join(others)}"] if others else []
    if data and not purge_data:
        kept.append(f"volumes {', '.join(data)} (their data; --purge-data removes them)")
    if strangers:
        kept.append(f"{CONFIG_DIR} and what raydeploy did not put there: {', '.join(strangers)}")
    return Teardown(
        containers=ours,
        volumes=data if purge_data else (),
        config_paths=config,
        config_dir_removed=bool(config_entries) and not strangers,
        kept=tuple(kept),
    )


@operation()
def containers_removed(container_names: list[str]):
    """
    Remove the containers CONTAINER_NAMES, running or not, at once.

    + container_names: the containers' names

    **Example:**

    .. code:: python

        containers_removed(name="Remove raydeploy's containers", container_names=["ray-head", "redis"])
    """
    if not container_names:
        host.noop("no containers to remove")
        return
    yield "docker rm --force " + " ".join(shlex.quote(name) for name in container_names)


@operation()
def volumes_removed(volume_names: list[str]):
    """
    Remove Docker's volumes VOLUME_NAMES and the data in them (after the containers that used them are gone).

    + volume_names: the volumes' names

    **Example:**

    .. code:: python

        volumes_removed(name="Remove raydeploy's data", volume_names=["raydeploy-redis-data"])
    """
    if not volume_names:
        host.noop("no volumes to remove")
        return
    yield "docker volume rm " + " ".join(shlex.quote(name) for name in volume_names)


@operation()
def paths_removed(paths: list[str], empty_directory: str | None = None):
    """
    Remove the files and directories PATHS (with what is in them), then EMPTY_DIRECTORY if given.

    + paths: absolute paths
    + empty_directory: a directory removed afterwards only if nothing is left in it (`rmdir`)

    **Example:**

    .. code:: python

        paths_removed(name="Remove raydeploy's files", paths=["/etc/raydeploy/redis.conf"], empty_directory="/etc/raydeploy")
    """
    if not paths and not empty_directory:
        host.noop("no files to remove")
        return
    if paths:
        yield "rm -rf -- " + " ".join(shlex.quote(path) for path in paths)
    if empty_directory:
        yield f"rmdir {shlex.quote(empty_directory)}"


def host_teardown(purge_data: bool) -> Teardown:
    """What destroy removes on the current host, read from the host now."""
    return teardown_of(
        fact_since_last_change(Containers),
        host.get_fact(VolumeNames),
        host.get_fact(DirectoryEntries, path=CONFIG_DIR),
        purge_data,
    )


@deploy("Destroy raydeploy's deployment")
def destroy(purge_data: bool = False) -> None:
    """Remove raydeploy's containers, its files under /etc/raydeploy and, with PURGE_DATA, its data volumes.

    + purge_data: also remove the Redis, Prometheus and Grafana volumes
    """
    teardown = host_teardown(purge_data)
    for line in teardown.notes():
        host.log(line, logger.warning if line.startswith("destroy will") else logger.info)
    # One name per kind for every host (pyinfra merges the same call across hosts); the notes say what goes where.
    if teardown.containers:
        containers_removed(name="Remove raydeploy's containers", container_names=list(teardown.containers))
    if teardown.volumes:
        volumes_removed(name="Remove raydeploy's data volumes", volume_names=list(teardown.volumes))
    if teardown.config_paths or teardown.config_dir_removed:
        paths_removed(
            name=f"Remove raydeploy's files under {CONFIG_DIR}",
            paths=list(teardown.config_paths),
            empty_directory=CONFIG_DIR if teardown.config_dir_removed else None,
        )
