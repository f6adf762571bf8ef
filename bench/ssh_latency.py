"""The `ssh-latency` scenario: one small SSH command to a lab host, with Nagle's algorithm on and off.

pyinfra sends every fact and check as its own SSH exec over paramiko, which leaves Nagle on; our
deploys turn it off (deploys/connection.py). This shows what that is worth per command.
"""

from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path

import paramiko

from bench.labs import fresh_lab
from bench.measure import figure

COMMANDS_PER_RUN = 50


def _client(lab, host: str) -> paramiko.SSHClient:
    address, port = next(entry["ssh"] for entry in lab.status["hosts"] if entry["name"] == host).rsplit(":", 1)
    client = paramiko.SSHClient()
    client.load_host_keys(str(Path(lab.ssh_key).parent / "known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        address, port=int(port), username="root", key_filename=lab.ssh_key, allow_agent=False, look_for_keys=False
    )
    return client


def command_ms(client: paramiko.SSHClient, command: str, nodelay: bool) -> list[float]:
    """Wall time in ms of COMMANDS_PER_RUN runs of COMMAND over one connection, Nagle on or off."""
    client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
    samples = []
    for _ in range(COMMANDS_PER_RUN):
        started = time.perf_counter()
        _, stdout, _ = client.exec_command(command)
        stdout.read()
        stdout.channel.recv_exit_status()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def scenario_ssh_latency(runs: int) -> dict:
    medians: dict[str, list[float]] = {"nagle_on": [], "nagle_off": []}
    with fresh_lab("rdbench-ssh", 1) as lab:
        client = _client(lab, "head")
        try:
            for index in range(runs):
                for nodelay, key in ((False, "nagle_on"), (True, "nagle_off")):
                    medians[key].append(statistics.median(command_ms(client, "true", nodelay)))
                print(
                    f"ssh-latency run {index + 1}: `true` median {medians['nagle_on'][-1]:.1f} ms with Nagle, "
                    f"{medians['nagle_off'][-1]:.1f} ms without ({COMMANDS_PER_RUN} commands each)",
                    flush=True,
                )
        finally:
            client.close()
    return {
        "figures": {
            "ssh_command_nagle_on": figure(medians["nagle_on"], unit="ms"),
            "ssh_command_nagle_off": figure(medians["nagle_off"], unit="ms"),
        },
        "commands_per_run": COMMANDS_PER_RUN,
    }
