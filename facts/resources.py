"""What a host offers: CPUs, memory, free disk at a path, /dev/shm, listening ports, reachability."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase
from pyinfra.facts.server import Ports


class HostResources(FactBase):
    """
    CPUs, memory and /dev/shm of the host, and the free space of the filesystem that holds PATH
    (or its nearest existing parent, for a data directory not made yet).

    .. code:: python

        {"cpus": 16, "memory_mb": 64213, "shm_mb": 32106, "disk_free_gb": 812.4, "disk_path": "/var/lib"}
    """

    def command(self, path: str = "/var/lib/docker") -> str:
        quoted = shlex.quote(path)
        return (
            f'p={quoted}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
            "echo cpus $(nproc); "
            "echo memory_kb $(awk '/^MemTotal:/ {print $2}' /proc/meminfo); "
            "echo shm_kb $(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $2}'); "
            "echo disk_free_kb $(df -Pk \"$p\" | awk 'NR==2 {print $4}'); "
            'echo disk_path "$p"'
        )

    def process(self, output: list[str]) -> dict[str, float | int | str]:
        raw = dict(line.split(" ", 1) for line in output if " " in line)
        return {
            "cpus": int(raw.get("cpus") or 0),
            "memory_mb": int(raw.get("memory_kb") or 0) // 1024,
            "shm_mb": int(raw.get("shm_kb") or 0) // 1024,
            "disk_free_gb": round(int(raw.get("disk_free_kb") or 0) / 1024 / 1024, 1),
            "disk_path": raw.get("disk_path", "").strip(),
        }


class ListeningPorts(Ports):
    """
    pyinfra's Ports (its command and its parser), always asked with ``ss``: every Debian and Ubuntu
    has it (iproute2), and a command that needs no other fact first can also be run by validate and
    the API through testinfra. Process names need root (the deploys run as root).
    """

    def command(self) -> str:
        self._tool = "ss"
        return "ss -lpuntn || true"


def tcp_listeners(ports: list[dict[str, int | str]] | None) -> dict[int, list[str]]:
    """pyinfra's Ports list as ``{port: [process, ...]}`` for TCP ports (any address).

    .. code:: python

        {6379: ["gcs_server"], 22: ["sshd"]}
    """
    listening: dict[int, list[str]] = {}
    for entry in ports or []:
        if entry["protocol"] == "tcp":
            names = listening.setdefault(int(entry["port"]), [])
            if entry["process"] not in names:
                names.append(str(entry["process"]))
    return listening


class Reachable(FactBase):
    """
    Whether ADDRESS answers from this host: to ping, or on TCP PORT.
    """

    def command(self, address: str, port: int = 22) -> str:
        quoted = shlex.quote(address)
        return (
            f"if ping -c 1 -W 2 {quoted} >/dev/null 2>&1; then echo ping; "
            f"elif timeout 3 bash -c 'exec 3<>/dev/tcp/'{quoted}'/{int(port)}' 2>/dev/null; then echo tcp; "
            "else echo no; fi"
        )

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[0].strip() in ("ping", "tcp")
