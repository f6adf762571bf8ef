"""What a host offers: CPUs, memory, free disk at a path, /dev/shm, listening ports, reachability."""

from __future__ import annotations

import re
import shlex
from typing import Any

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


# ss lists a socket's processes as users:(("name",pid=N,fd=M),...).
SS_USER = re.compile(r'\("([^"]*)",pid=(\d+),')
HOLDERS_MARK = "# holders"


class ListeningPorts(Ports):
    """
    pyinfra's Ports, always asked with ``ss`` (every Debian and Ubuntu has it, iproute2), plus what
    holds each port: the holding process's id, the container it runs in (the 64-hex id in its
    cgroup) and its parent processes. Process names need root (the deploys run as root).

    pyinfra's parser keeps one process name per socket and drops the pid; which container holds a
    port is what tells an older deployment's leftover from a real conflict, so the entries add
    ``pid``, ``container`` (an id, or None on the host) and ``parents`` (pids up to init).

    .. code:: python

        [{"port": 8265, "ip": "0.0.0.0", "protocol": "tcp", "process": "python3", "pid": 1614,
          "container": "3f2c...", "parents": [1590, 1571]}]
    """

    def command(self) -> str:
        return (
            f"ss -lpuntn || true; echo '{HOLDERS_MARK}'; "
            "for pid in $(ss -lpuntnH 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un); do "
            "cid=$(grep -o -E '[0-9a-f]{64}' /proc/$pid/cgroup 2>/dev/null | tail -n1); "
            'chain=; p=$pid; while [ "${p:-1}" -gt 1 ]; do '
            "p=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -d' ' -f2); "
            '[ "${p:-1}" -gt 1 ] && chain="$chain,$p"; done; '
            'echo "$pid ${cid:--} ${chain#,}"; done'
        )

    def process(self, output: list[str]) -> list[dict[str, Any]]:
        lines = list(output)
        mark = lines.index(HOLDERS_MARK) if HOLDERS_MARK in lines else len(lines)
        holders = {}
        for line in lines[mark + 1 :]:
            pid, container, parents = [*line.split(" "), "", "", ""][:3]
            if pid.isdigit():
                chain = [int(parent) for parent in parents.split(",") if parent.isdigit()]
                holders[int(pid)] = (None if container == "-" else container, chain)
        entries = []
        for line in lines[:mark]:
            for entry in self._process_ss([line]):
                for name, pid in SS_USER.findall(line) or [(entry["process"], "0")]:
                    container, chain = holders.get(int(pid), (None, []))
                    entries.append(
                        {**entry, "process": name, "pid": int(pid), "container": container, "parents": chain}
                    )
        return entries


def tcp_listeners(ports: list[dict[str, Any]] | None) -> dict[int, list[str]]:
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


def tcp_holders(ports: list[dict[str, Any]] | None) -> dict[int, list[dict[str, Any]]]:
    """ListeningPorts' TCP entries by port, each holder once (a port on two addresses is one holder)."""
    holders: dict[int, list[dict[str, Any]]] = {}
    for entry in ports or []:
        if entry["protocol"] != "tcp":
            continue
        found = holders.setdefault(int(entry["port"]), [])
        if all(entry.get("pid") != known.get("pid") for known in found):
            found.append(entry)
    return holders


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
