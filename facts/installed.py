"""What raydeploy may have left on a host besides containers: Docker's named volumes, entries under /etc/raydeploy.

`destroy` reads these (and the Containers fact) to find what to remove from the host itself, never
from a record kept elsewhere.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


def names(output: list[str]) -> list[str]:
    """One name a line, as `docker volume ls --format` or `find -printf '%f\\n'` print them; sorted."""
    return sorted({line.strip() for line in output if line.strip()})


class VolumeNames(FactBase):
    """
    The names of Docker's volumes on the host; empty when Docker is not installed.

    pyinfra's DockerVolumes runs `docker volume inspect` with no argument (an error) when there are none.

    .. code:: python

        ["raydeploy-prometheus-data", "raydeploy-redis-data"]
    """

    default = list

    def requires_command(self) -> str:
        return "docker"

    def command(self) -> str:
        return "docker volume ls --format '{{.Name}}'"

    def process(self, output: list[str]) -> list[str]:
        return names(output)


class DirectoryEntries(FactBase):
    """
    The names of the entries (files, directories) directly inside PATH; empty when there is no PATH.

    .. code:: python

        ["grafana", "prometheus", "ray-auth-token", "redis-password", "redis.conf"]
    """

    default = list

    def command(self, path: str) -> str:
        quoted = shlex.quote(path)
        return f"! test -d {quoted} || find {quoted} -mindepth 1 -maxdepth 1 -printf '%f\\n'"

    def process(self, output: list[str]) -> list[str]:
        return names(output)
